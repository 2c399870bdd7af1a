"""ModelManager over both providers: the real embedded model and the Ollama stand-in."""

from __future__ import annotations

import json

import pytest

from a4ps.config import load_settings
from a4ps.models import ModelError, ModelManager, StructuredOutputError, select_provider
from a4ps.models.embedded import EmbeddedProvider
from a4ps.models.ollama_provider import OllamaProvider
from a4ps.models.structured import FieldStreamer
from a4ps.models.types import Sampling
from tests.support.config import free_port, plumbing_model
from tests.support.ollama_standin import OllamaStandIn

# Two answer shapes of the kind the graph and forge ask for: prose plus a score, and prose alone.
REPLY = {
    "type": "object",
    "properties": {"response": {"type": "string", "minLength": 1, "maxLength": 700},
                   "dissonance": {"type": "number", "minimum": 0, "maximum": 1}},
    "required": ["response", "dissonance"],
    "additionalProperties": False,
}
ANSWER = {
    "type": "object",
    "properties": {"answer": {"type": "string", "minLength": 1, "maxLength": 1200}},
    "required": ["answer"],
    "additionalProperties": False,
}


@pytest.fixture(scope="module")
def embedded():
    settings = plumbing_model(load_settings())
    manager = ModelManager(EmbeddedProvider(settings.models.embedded), json_retries=2)
    yield manager
    manager.unload()


def ollama_config(host):
    config = load_settings().models.model_copy(deep=True)
    config.ollama.host = host
    config.ollama.probe_timeout_s = 1.0
    return config


MESSAGES = [{"role": "system", "content": "You are ROBIN, warm and brief."},
            {"role": "user", "content": "BRICK says: boil water, add tea, steep 3 minutes. Reply and rate the dissonance."}]


# --- embedded ----------------------------------------------------------------------------------
def test_embedded_schema_answer_is_validated_and_streamed(embedded):
    tokens = []
    result = embedded.chat(MESSAGES, model="smollm2", schema=REPLY,
                           sampling=Sampling(0.7, 0.95, 300), on_token=tokens.append, stream_field="response")
    assert set(result.data) == {"response", "dissonance"}
    assert 0.0 <= result.data["dissonance"] <= 1.0
    assert "".join(tokens) == result.data["response"]  # only the readable field was streamed
    assert result.completion_tokens > 0 and result.seconds > 0


def test_embedded_bounds_hold_over_samples(embedded):
    for seed_text in ("tea", "taxes", "a lost dog", "the moon"):
        messages = [MESSAGES[0], {"role": "user", "content": f"Rate how troubling '{seed_text}' is."}]
        data = embedded.chat(messages, model="smollm2", schema=REPLY,
                             sampling=Sampling(1.0, 1.0, 300)).data
        assert 0.0 <= data["dissonance"] <= 1.0 and 1 <= len(data["response"]) <= 700


def test_embedded_free_text_without_schema(embedded):
    result = embedded.chat([{"role": "user", "content": "Say hello."}], model="smollm2",
                           sampling=Sampling(0.2, 0.9, 20))
    assert result.data is None and result.text


def test_an_answer_cut_off_by_its_token_limit_is_marked_truncated(embedded):
    """The real model: stopped by max_tokens mid-way is `truncated`; a JSON answer that closed is not."""
    cut = embedded.chat([{"role": "user", "content": "Count slowly from one to fifty in words."}], model="smollm2",
                        sampling=Sampling(0.0, 1.0, 6))
    assert cut.truncated and cut.completion_tokens == 6, cut
    whole = embedded.chat(MESSAGES, model="smollm2", schema=REPLY, sampling=Sampling(0.0, 1.0, 300))
    assert not whole.truncated and whole.data is not None


def test_ollama_answer_cut_off_by_num_predict_is_marked_truncated():
    long = "one, two, three, four, five, six, seven, eight, nine, ten"
    with OllamaStandIn(models=["gemma2:2b"], responder=scripted([long, "short"])) as server:
        manager = ModelManager(OllamaProvider(ollama_config(server.host).ollama))
        cut = manager.chat(MESSAGES, model="gemma2:2b", sampling=Sampling(0.3, 0.8, 3))
        assert cut.truncated and cut.text == long[:12]
        assert not manager.chat(MESSAGES, model="gemma2:2b", sampling=Sampling(0.3, 0.8, 99)).truncated


def test_embedded_embed_needs_an_embedding_model(embedded):
    with pytest.raises(ModelError, match="no embedding model"):
        embedded.embed(["hi"])


def test_missing_model_file_is_a_clear_error():
    config = load_settings().models.embedded.model_copy(update={"model_path": "/nonexistent/model.gguf"})
    with pytest.raises(ModelError, match="not found"):
        EmbeddedProvider(config).load()


# --- field streaming ---------------------------------------------------------------------------
def test_field_streamer_decodes_escapes_across_chunk_boundaries():
    text = json.dumps({"dissonance": 0.5, "nested": {"response": "no"}, "response": 'He said "hi" \u00e9\n\\ok'})
    for size in (1, 2, 3, 7, len(text)):
        streamer = FieldStreamer("response")
        out = "".join(streamer.feed(text[i:i + size]) for i in range(0, len(text), size))
        assert out == 'He said "hi" \u00e9\n\\ok'


# --- ollama stand-in ---------------------------------------------------------------------------
def scripted(answers):
    """A responder that returns the next scripted answer for each chat."""
    queue = list(answers)
    return lambda model, messages, fmt: queue.pop(0)


def test_auto_selection_and_reasons():
    closed = f"http://127.0.0.1:{free_port()}"
    provider, reason = select_provider(ollama_config(closed), {"phi3:mini"})
    assert provider.name == "embedded" and "no Ollama server answered" in reason
    with OllamaStandIn(models=["phi3:mini"]) as server:
        provider, reason = select_provider(ollama_config(server.host), {"phi3:mini"})
        assert provider.name == "ollama" and "all persona models present" in reason
        provider, reason = select_provider(ollama_config(server.host), {"phi3:mini", "gemma2:2b"})
        assert provider.name == "embedded" and "lacks gemma2:2b" in reason
    config = ollama_config(closed)
    config.provider = "ollama"
    with pytest.raises(ModelError, match="no Ollama server answered"):
        select_provider(config, set())


def test_ollama_chat_streams_with_schema_options_and_keep_alive():
    answer = json.dumps({"response": "I hear you; tea soothes.", "dissonance": 0.25})
    with OllamaStandIn(models=["gemma2:2b"], responder=scripted([answer])) as server:
        manager = ModelManager(OllamaProvider(ollama_config(server.host).ollama))
        tokens = []
        result = manager.chat(MESSAGES, model="gemma2:2b", schema=REPLY,
                              sampling=Sampling(0.3, 0.8, 99), on_token=tokens.append, stream_field="response")
        assert result.data == {"response": "I hear you; tea soothes.", "dissonance": 0.25}
        assert "".join(tokens) == "I hear you; tea soothes." and len(tokens) > 1
        path, body = [r for r in server.requests if r[0] == "/api/chat"][0]
        assert body["format"] == REPLY and body["stream"] is True
        assert body["options"]["temperature"] == 0.3 and body["options"]["num_predict"] == 99
        assert body["keep_alive"] == "5m" and body["messages"] == MESSAGES


def test_ollama_sequential_residency():
    ok = json.dumps({"answer": "fine"})
    with OllamaStandIn(models=["a:1", "b:1"], responder=lambda *a: ok) as server:
        manager = ModelManager(OllamaProvider(ollama_config(server.host).ollama))
        manager.chat(MESSAGES, model="a:1", schema=ANSWER)
        assert server.resident() == ["a:1"]
        manager.chat(MESSAGES, model="b:1", schema=ANSWER)
        assert server.resident() == ["b:1"]  # a:1 was unloaded before b:1 was used
        manager.chat(MESSAGES, model="b:1", schema=ANSWER)
        assert server.load_count == {"a:1": 1, "b:1": 1}
        manager.unload()
        assert server.resident() == []


def test_invalid_answer_is_retried_with_the_error_then_accepted():
    good = json.dumps({"answer": "done"})
    with OllamaStandIn(models=["m"], responder=scripted(["not json at all", '{"answer": ""}', good])) as server:
        manager = ModelManager(OllamaProvider(ollama_config(server.host).ollama), json_retries=2)
        retries = []
        result = manager.chat(MESSAGES, model="m", schema=ANSWER,
                              on_retry=lambda n, err: retries.append(err))
        assert result.data == {"answer": "done"} and result.attempts == 3
        assert "not valid JSON" in retries[0] and "answer" in retries[1]
        last_messages = [b for p, b in server.requests if p == "/api/chat"][-1]["messages"]
        assert "rejected" in last_messages[-1]["content"]


def test_garbage_after_all_retries_raises_structured_error():
    with OllamaStandIn(models=["m"], responder=lambda *a: '{"dissonance": 7}') as server:
        manager = ModelManager(OllamaProvider(ollama_config(server.host).ollama), json_retries=1)
        with pytest.raises(StructuredOutputError, match="no valid answer after 2 attempts"):
            manager.chat(MESSAGES, model="m", schema=REPLY)


def test_ollama_embed_and_errors():
    with OllamaStandIn(models=["nomic-embed-text", "m"]) as server:
        manager = ModelManager(OllamaProvider(ollama_config(server.host).ollama))
        vectors = manager.embed(["one", "two"])
        assert len(vectors) == 2 and len(vectors[0]) == 16 and vectors[0] != vectors[1]
        with pytest.raises(ModelError, match="not found"):
            manager.chat(MESSAGES, model="missing:1")


def test_field_streamer_joins_an_escaped_surrogate_pair():
    """An emoji arrives as two \\u escapes; emitting the halves apart would be invalid UTF-8."""
    text = json.dumps({"answer": "hi \U0001F600 there \u00e9", "x": 1})
    streamer = FieldStreamer("answer")
    shown = "".join(streamer.feed(ch) for ch in text)
    assert shown == "hi \U0001F600 there \u00e9"
    shown.encode("utf-8")  # raises on a lone surrogate


def test_a_prose_layout_shapes_the_embedded_answer():
    """A list layout grammar makes even the small model write exactly the asked number of items."""
    from a4ps.models.structured import list_layout

    settings = plumbing_model(load_settings())
    provider = EmbeddedProvider(settings.models.embedded)
    try:
        result = provider.chat("m", [{"role": "user", "content": "Name some fruits."}], None,
                               Sampling(0.7, 0.9, 120, 1.1, layout=list_layout(3)), None)
    finally:
        provider.unload()
    lines = result.text.strip().split("\n")
    assert [line[:3] for line in lines] == ["1. ", "2. ", "3. "], result.text
    assert result.prompt_tokens > 0


def test_the_prose_layout_keeps_code_blocks_out_of_words_about_code():
    """Asked outright for a code block, the model under prose_layout writes no backtick at all (the
    words below an answer's checked code must not add code of their own)."""
    from a4ps.models.structured import prose_layout

    settings = plumbing_model(load_settings())
    provider = EmbeddedProvider(settings.models.embedded)
    ask = [{"role": "user", "content": "Show a Python example in a ```python code block that prints hello."}]
    try:
        free = provider.chat("m", ask, None, Sampling(0.0, 0.9, 60, 1.1), None)
        shaped = provider.chat("m", ask, None, Sampling(0.0, 0.9, 60, 1.1, layout=prose_layout()), None)
    finally:
        provider.unload()
    assert "`" in free.text  # the prompt does draw one out unshaped, so the check below can fail
    assert "`" not in shaped.text and shaped.text.strip(), shaped.text


def test_a_stop_during_the_prompt_aborts_the_embedded_call_and_the_next_call_works():
    """No token callback runs while llama.cpp reads a prompt; the abort callback stops it there."""
    import threading
    import time

    from a4ps.models.types import ModelCancelled

    settings = plumbing_model(load_settings())
    provider = EmbeddedProvider(settings.models.embedded)
    long_prompt = "Summarise: " + " ".join(f"Sentence {i} is about the sea and the sky." for i in range(150))
    stop = threading.Event()
    try:
        provider.load()
        stop.set()
        started = time.perf_counter()
        with pytest.raises(ModelCancelled):
            provider.chat("m", [{"role": "user", "content": long_prompt}], None,
                          Sampling(0.3, 0.9, 20, 1.1, should_stop=stop.is_set), None)
        assert time.perf_counter() - started < 5.0
        result = provider.chat("m", [{"role": "user", "content": "Say hello."}], None, Sampling(0.3, 0.9, 8, 1.1), None)
        assert result.text.strip()
    finally:
        provider.unload()


# --- Stop: a cancelled call ends within a second, whatever phase the provider is in ------------------
def _chat_in_thread(manager, sampling, on_token=None, schema=ANSWER):
    """Start manager.chat on a thread; returns (thread, outcome) where outcome gets 'error'/'result'
    and 'ended' (monotonic time the call returned or raised)."""
    import threading
    import time

    outcome: dict = {}

    def call():
        try:
            outcome["result"] = manager.chat(MESSAGES, model="m", schema=schema, sampling=sampling,
                                             on_token=on_token, stream_field="answer" if on_token else None)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome["error"] = exc
        outcome["ended"] = time.monotonic()

    thread = threading.Thread(target=call, daemon=True)
    thread.start()
    return thread, outcome


def _wait_until(condition, timeout_s: float, what: str) -> None:
    import time

    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.01)


def test_a_stop_before_ollama_first_token_closes_the_stream_within_a_second():
    """Ollama may load a model or read a long prompt for a long time before it sends anything: the
    stand-in holds its first token for 60 s. A stop must end the call and the HTTP connection fast."""
    import threading
    import time

    from a4ps.models.types import ModelCancelled

    stop = threading.Event()
    with OllamaStandIn(models=["m"], responder=lambda *a: json.dumps({"answer": "late"}),
                       first_token_delay_s=60) as server:
        manager = ModelManager(OllamaProvider(ollama_config(server.host).ollama))
        thread, outcome = _chat_in_thread(manager, Sampling(0.3, 0.9, 50, should_stop=stop.is_set))
        _wait_until(lambda: server.chats_started, 10, "the chat request to reach the stand-in")
        time.sleep(0.3)  # well inside the 60 s wait for the first token
        stopped_at = time.monotonic()
        stop.set()
        thread.join(5)
        assert not thread.is_alive(), "the call did not return after the stop"
        assert isinstance(outcome.get("error"), ModelCancelled), outcome
        assert "before its first token" in str(outcome["error"])
        assert outcome["ended"] - stopped_at < 1.0, outcome["ended"] - stopped_at
        _wait_until(lambda: server.disconnects, 2, "the stand-in to see the connection closed")
        assert server.disconnects[0] - stopped_at < 1.0  # the HTTP stream was closed, not abandoned
        # the provider still works afterwards
        server.first_token_delay_s = 0
        assert manager.chat(MESSAGES, model="m", schema=ANSWER).data == {"answer": "late"}


def test_a_stop_between_ollama_chunks_closes_the_stream_within_a_second():
    import threading
    import time

    from a4ps.models.types import ModelCancelled

    stop, shown = threading.Event(), []
    long_answer = json.dumps({"answer": "a slow and careful answer " * 20})
    with OllamaStandIn(models=["m"], responder=lambda *a: long_answer, chunk_delay_s=0.5) as server:
        manager = ModelManager(OllamaProvider(ollama_config(server.host).ollama))
        thread, outcome = _chat_in_thread(manager, Sampling(0.3, 0.9, 500, should_stop=stop.is_set),
                                          on_token=shown.append)
        _wait_until(lambda: shown, 20, "the first streamed token")
        stopped_at = time.monotonic()
        stop.set()
        thread.join(5)
        assert not thread.is_alive() and isinstance(outcome.get("error"), ModelCancelled), outcome
        assert outcome["ended"] - stopped_at < 1.0, outcome["ended"] - stopped_at
        _wait_until(lambda: server.disconnects, 2, "the stand-in to see the connection closed")
        assert server.disconnects[0] - stopped_at < 1.0
        assert len("".join(shown)) < 100  # it stopped early, not at the end of the answer
        assert len([r for r in server.requests if r[0] == "/api/chat"]) == 1  # and was not asked again


class _CountingProvider:
    """Streams numbered pieces of a JSON answer; says how many it streamed before it was stopped."""

    name = "counting"

    def __init__(self, pieces: int):
        self.pieces, self.streamed = pieces, 0

    def chat(self, model, messages, schema, sampling, on_token):
        from a4ps.models.types import ChatResult

        text = ""
        for index in range(self.pieces):
            piece = '{"answer": "' if index == 0 else ("x" if index < self.pieces - 1 else '"}')
            self.streamed += 1
            if on_token is not None:
                on_token(piece)
            text += piece
        return ChatResult(text=text, model=model)

    def unload(self, model=None):
        pass

    def describe(self):
        return "counting"


@pytest.mark.parametrize("on_token", [None, "collect"])
def test_the_manager_stops_on_the_raw_piece_after_the_stop_even_when_nothing_is_shown(on_token):
    """The stop is asked on every raw piece the provider streams, not only on the pieces of the
    field that is shown (or when someone listens at all)."""
    from a4ps.models.types import ModelCancelled

    provider = _CountingProvider(pieces=100)
    shown: list[str] = []
    manager = ModelManager(provider, json_retries=2)
    stop_after = 5
    with pytest.raises(ModelCancelled):
        manager.chat(MESSAGES, model="m", schema=ANSWER, stream_field="answer",
                     on_token=shown.append if on_token else None,
                     sampling=Sampling(should_stop=lambda: provider.streamed > stop_after))
    assert provider.streamed == stop_after + 1


def test_a_stop_set_before_the_call_asks_no_model():
    from a4ps.models.types import ModelCancelled

    provider = _CountingProvider(pieces=10)
    with pytest.raises(ModelCancelled):
        ModelManager(provider).chat(MESSAGES, model="m", sampling=Sampling(should_stop=lambda: True))
    assert provider.streamed == 0
