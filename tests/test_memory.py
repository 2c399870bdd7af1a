"""H-MEM: real MiniLM embeddings, real LanceDB rows, hierarchical recall, episodes and the CLI."""

from __future__ import annotations

import argparse
import json
import time

import lancedb
import numpy as np
import pytest

from a4ps.config import load_settings
from a4ps.memory import EmbedderError, MemoryStore, MiniLMEmbedder, OllamaEmbedder, make_embedder
from a4ps.memory.commands import add_commands
from a4ps.memory.table import DB_DIRNAME

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def embedder() -> MiniLMEmbedder:
    return MiniLMEmbedder()


def memory_settings(**update):
    return load_settings().memory.model_copy(update={"embedder": "minilm", **update})


def _utter(persona: str, text: str, turn: int = 1) -> dict:
    return {"persona": persona, "text": text, "node": persona.lower(), "turn": turn}


EPISODES = {
    "cooking": ("Bake a loaf of sourdough bread", "Fed the starter, proofed overnight, baked at 250C.",
                "1. feed starter 2. mix dough 3. bake",
                [_utter("BRICK", "Mix flour, water, salt and the active starter; knead ten minutes."),
                 _utter("ROBIN", "A long cold proof in the fridge gives the crumb its tang."),
                 _utter("BRICK", "Bake in a preheated dutch oven with the lid on for twenty minutes.", 2)]),
    "python": ("Write a Python function that reverses a string", "Used slicing s[::-1]; the tests passed.",
               "1. write the function 2. test it",
               [_utter("BRICK", "def reverse(s): return s[::-1]"),
                _utter("ROBIN", "Slicing reverses code points, not grapheme clusters; emoji may break."),
                _utter("BRICK", "Added unit tests for empty strings and palindromes.", 2)]),
    "garden": ("Plan a vegetable garden for spring", "Tomatoes, beans and lettuce in raised beds.",
               "pick crops; draw beds; schedule sowing",
               [_utter("BRICK", "Raised beds of 1.2 m width drain well and warm up early."),
                _utter("ROBIN", "Marigolds between the tomatoes keep pests away and look cheerful.")]),
}


@pytest.fixture()
def store(tmp_path, embedder) -> MemoryStore:
    memory = MemoryStore(tmp_path, memory_settings(), embedder)
    for key, (task, summary, plan, utterances) in EPISODES.items():
        memory.remember_task(f"task-{key}", task, summary, plan, utterances)
    return memory


# -- embedders ---------------------------------------------------------------------------------
def test_minilm_vectors_are_unit_length_and_semantic(embedder):
    vectors = embedder.embed(["A man is playing a guitar.", "Someone plays a musical instrument.",
                              "The stock market fell sharply today."])
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    paraphrase, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert paraphrase > 0.5 and unrelated < 0.2


def test_minilm_batching_and_padding_do_not_change_vectors(embedder):
    texts = [("word " * n).strip() + f" number {n}" for n in range(1, 70, 3)]
    batched = embedder.embed(texts)
    single = np.stack([embedder.embed([t])[0] for t in texts])
    np.testing.assert_allclose(batched, single, atol=2e-5)


def test_minilm_truncates_at_256_tokens(embedder):
    head = "memory " * 300
    a, b = embedder.embed([head + "apples and pears", head + "rockets to the moon"])
    assert float(a @ b) > 0.9999
    c, d = embedder.embed(["memory apples and pears", "memory rockets to the moon"])
    assert float(c @ d) < 0.9


def test_minilm_empty_input(embedder):
    assert embedder.embed([]).shape == (0, 384)


def test_ollama_embedder_wraps_the_injected_call():
    calls = []

    def embed(texts):
        calls.append(list(texts))
        return [[3.0, 4.0, 0.0] for _ in texts]

    wrapped = OllamaEmbedder(embed, "nomic-embed-text")
    assert wrapped.id == "ollama-nomic-embed-text"
    assert wrapped.dim == 3 and len(calls) == 1
    np.testing.assert_allclose(wrapped.embed(["a", "b"]), [[0.6, 0.8, 0.0]] * 2, atol=1e-6)
    with pytest.raises(EmbedderError, match="shape"):
        OllamaEmbedder(lambda texts: [[1.0, 0.0]], "m").embed(["a", "b"])
    grows = iter([[[1.0, 0.0]], [[1.0, 0.0, 0.0]]])
    changing = OllamaEmbedder(lambda texts: next(grows), "m")
    changing.embed(["a"])
    with pytest.raises(EmbedderError, match="changed dimension"):
        changing.embed(["a"])


def test_make_embedder_choices():
    assert isinstance(make_embedder("auto"), MiniLMEmbedder)
    with pytest.raises(EmbedderError, match="no Ollama embed function"):
        make_embedder("ollama")
    assert isinstance(make_embedder("ollama", lambda t: [[1.0]] * len(t), "m"), OllamaEmbedder)


# -- storage layout ----------------------------------------------------------------------------
def test_rows_are_summaries_and_linked_chunks_with_indexes(store, tmp_path):
    table = lancedb.connect(str(tmp_path / DB_DIRNAME)).open_table(store.table.name)
    rows = table.to_arrow().to_pylist()
    summaries = [r for r in rows if r["parent_id"] is None]
    assert {r["task_id"] for r in summaries} == {"task-cooking", "task-python", "task-garden"}
    assert all(r["kind"] == "summary" and r["persona"] == "ALFRED" for r in summaries)
    for head in summaries:
        chunks = sorted((r for r in rows if r["parent_id"] == head["id"]), key=lambda r: r["seq"])
        _, summary, plan, utterances = EPISODES[head["task_id"].removeprefix("task-")]
        assert head["summary"] == summary
        assert [c["text"] for c in chunks] == [plan] + [u["text"] for u in utterances]
        assert [c["kind"] for c in chunks] == ["plan"] + ["utterance"] * len(utterances)
        assert [c["persona"] for c in chunks] == ["ALFRED"] + [u["persona"] for u in utterances]
        assert all(c["task_id"] == head["task_id"] and c["timestamp"] == head["timestamp"] for c in chunks)
        assert all(len(c["vector"]) == 384 for c in chunks)
    indexes = {ix.name: ix.index_type for ix in table.list_indices()}
    assert indexes["parent_id_idx"] == "BTree"
    assert indexes["text_idx"] == "FTS" and indexes["summary_idx"] == "FTS"


def test_remember_rejects_bad_input_without_writing(store):
    before = store.stats().rows
    with pytest.raises(ValueError, match="summary is empty"):
        store.remember_task("t", "task", "  ", "plan", [])
    with pytest.raises(ValueError, match="no 'text'"):
        store.remember_task("t", "task", "sum", "plan", [{"persona": "BRICK"}])
    assert store.stats().rows == before


def test_plan_may_be_structured_and_empty_texts_are_skipped(tmp_path, embedder):
    memory = MemoryStore(tmp_path, memory_settings(), embedder)
    memory.remember_task("t1", "task", "summary", {"steps": ["a", "b"]}, [_utter("BRICK", "  "), _utter("ROBIN", "ok")])
    (episode,) = memory.recent_episodes(5)
    assert [c.text for c in episode.chunks] == ['{"steps": ["a", "b"]}', "ok"]


# -- recall ------------------------------------------------------------------------------------
def test_recall_finds_the_relevant_episode_first(store):
    hits = store.recall("how do I reverse text in python?", k=3)
    assert len(hits) == 3
    assert all(h.task_id == "task-python" for h in hits)
    assert hits[0].text == "def reverse(s): return s[::-1]"
    assert hits[0].summary == "Used slicing s[::-1]; the tests passed."
    assert hits[0].task_text == EPISODES["python"][0]
    assert hits[0].persona == "BRICK" and hits[0].node == "brick" and hits[0].turn == 1
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert 0.3 < hits[0].score <= 1.0 and hits[0].episode_score > 0.3


def test_recall_caps_chunks_per_episode_and_episodes(tmp_path, embedder):
    memory = MemoryStore(tmp_path, memory_settings(top_summaries=2, chunks_per_summary=1), embedder)
    for key, (task, summary, plan, utterances) in EPISODES.items():
        memory.remember_task(f"task-{key}", task, summary, plan, utterances)
    hits = memory.recall("sourdough bread baking", k=10)
    assert len(hits) == 2
    assert hits[0].task_id == "task-cooking"
    assert len({h.episode_id for h in hits}) == 2


def test_chunk_search_is_prefiltered_to_the_top_summaries(tmp_path, embedder):
    """A chunk that matches the query word for word is not returned when its episode is off-topic."""
    memory = MemoryStore(tmp_path, memory_settings(top_summaries=1), embedder)
    memory.remember_task("physics", "Explain quantum entanglement", "Entangled photons share one quantum state.",
                         "define; give an experiment", [_utter("BRICK", "Bell tests show correlations beyond "
                                                                         "any local hidden variable theory.")])
    memory.remember_task("cooking", "Cook a risotto", "Stirred arborio rice with stock for 18 minutes.",
                         "toast rice; add stock", [_utter("ROBIN", "quantum entanglement of photons")])
    hits = memory.recall("quantum entanglement of photons", k=5)
    assert hits and all(h.task_id == "physics" for h in hits)
    flat = memory.table.vector_search(embedder.embed(["quantum entanglement of photons"])[0],
                                      "parent_id IS NOT NULL", 1, exact=True)
    assert flat[0]["task_id"] == "cooking"


def test_episode_without_chunks_is_recalled_by_its_summary(tmp_path, embedder):
    memory = MemoryStore(tmp_path, memory_settings(), embedder)
    memory.remember_task("t", "Name the largest planet", "Jupiter is the largest planet.", "", [])
    (hit,) = memory.recall("biggest planet in the solar system", k=3)
    assert hit.kind == "summary" and hit.text == "Name the largest planet" and hit.id == hit.episode_id


def test_hybrid_recall_fuses_vector_and_full_text(store):
    hits = store.recall("palindromes unit tests", k=3, hybrid=True)
    assert hits[0].text == "Added unit tests for empty strings and palindromes."
    # Ranked first in both lists: 1/61 + 1/61 under reciprocal rank fusion.
    assert hits[0].score == pytest.approx(2 / 61)
    assert store.recall("", k=3) == [] and store.recall("bread", k=0) == []


def test_empty_store_recalls_nothing(tmp_path, embedder):
    memory = MemoryStore(tmp_path, memory_settings(), embedder)
    assert memory.recall("anything", 5) == []
    assert memory.recent_episodes(5) == []
    stats = memory.stats()
    assert (stats.rows, stats.summaries, stats.chunks, stats.vector_index) == (0, 0, 0, "none")


# -- episodes and stats ------------------------------------------------------------------------
def test_recent_episodes_newest_first_with_ordered_chunks(tmp_path, embedder):
    memory = MemoryStore(tmp_path, memory_settings(), embedder)
    stamps = []
    for key, (task, summary, plan, utterances) in EPISODES.items():
        memory.remember_task(f"task-{key}", task, summary, plan, utterances)
        stamps.append(time.time())
        time.sleep(0.02)
    episodes = memory.recent_episodes(limit=2)
    assert [e.task_id for e in episodes] == ["task-garden", "task-python"]
    python = episodes[1]
    assert python.summary == EPISODES["python"][1] and python.task_text == EPISODES["python"][0]
    assert [c.seq for c in python.chunks] == [1, 2, 3, 4]
    assert [c.kind for c in python.chunks] == ["plan", "utterance", "utterance", "utterance"]
    assert python.chunks[3].turn == 2 and python.chunks[2].persona == "ROBIN"
    assert [e.task_id for e in memory.recent_episodes(10, since=stamps[0])] == ["task-garden", "task-python"]
    assert memory.recent_episodes(10, since=time.time() + 60) == []


def test_stats_counts(store):
    stats = store.stats()
    assert (stats.rows, stats.summaries, stats.chunks) == (3 + 4 + 4 + 3, 3, 11)
    assert stats.vector_index == "none" and stats.embedder == "minilm-l6-v2-int8" and stats.dim == 384


def test_memory_persists_and_other_handles_see_new_writes(tmp_path, embedder):
    first = MemoryStore(tmp_path, memory_settings(), embedder)
    second = MemoryStore(tmp_path, memory_settings(), embedder)
    first.remember_task("t1", "Feed the cat", "Gave the cat tuna.", "open tin", [_utter("BRICK", "Tin opened.")])
    assert second.stats().rows == 3
    assert second.recall("cat food", 1)[0].task_id == "t1"
    reopened = MemoryStore(tmp_path, memory_settings(), embedder)
    assert [e.task_id for e in reopened.recent_episodes(5)] == ["t1"]


def test_a_different_embedder_gets_its_own_table(tmp_path, embedder):
    MemoryStore(tmp_path, memory_settings(), embedder).remember_task("t", "task", "sum", "plan", [])
    other = MemoryStore(tmp_path, memory_settings(), OllamaEmbedder(lambda t: [[1.0, 0.0, 0.0]] * len(t), "m", dim=3))
    assert other.stats().rows == 0 and other.table.name != MemoryStore(tmp_path, memory_settings(), embedder).table.name


# -- CLI ---------------------------------------------------------------------------------------
def _cli(argv, data_dir, capsys):
    settings = load_settings()
    settings.data_dir = str(data_dir)
    settings.memory = memory_settings()
    parser = argparse.ArgumentParser(prog="a4ps")
    add_commands(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    code = args.func(args, settings)
    return code, capsys.readouterr().out


def test_cli_search_prints_hits_with_scores(store, tmp_path, capsys):
    code, out = _cli(["memory", "search", "reverse a string in python", "-k", "2"], tmp_path, capsys)
    assert code == 0
    assert "2 hit(s) for 'reverse a string in python' (cosine score)" in out
    assert "def reverse(s): return s[::-1]" in out and "task task-python" in out
    first_score = float(out.splitlines()[1].split()[1])
    assert 0.3 < first_score <= 1.0


def test_cli_stats_text_and_json(store, tmp_path, capsys):
    code, out = _cli(["memory", "stats"], tmp_path, capsys)
    assert code == 0 and "rows 14: 3 task summaries, 11 chunks" in out and "vector index: none" in out
    code, out = _cli(["memory", "stats", "--json"], tmp_path, capsys)
    data = json.loads(out)
    assert code == 0 and data["rows"] == 14 and data["embedder"] == "minilm-l6-v2-int8"


def test_cli_on_missing_memory_says_so(tmp_path, capsys):
    for argv in (["memory", "search", "anything"], ["memory", "stats"]):
        code, out = _cli(argv, tmp_path / "nowhere", capsys)
        assert code == 0 and "No memory yet" in out
    assert not (tmp_path / "nowhere").exists()
    code, out = _cli(["memory", "search", "x", "-k", "0"], tmp_path, capsys)
    assert code == 2 and "-k must be at least 1" in out
