"""A PEFT LoRA adapter written as a GGUF LoRA that llama.cpp loads over the base GGUF.

Why our own writer: llama.cpp's convert_lora_to_gguf.py is not on PyPI and needs the base's HF
config; the `gguf` package holds what it uses (GGUFWriter, the HF -> GGUF tensor-name maps), and the
base GGUF itself says the architecture and head counts. What the converter does, done here:
- `general.type` = adapter, `adapter.type` = lora, `adapter.lora.alpha` = PEFT's lora_alpha
  (llama.cpp scales by alpha / rank, as PEFT does);
- each pair `<module>.lora_A.weight` (rank x in) / `lora_B.weight` (out x rank) becomes
  `<gguf name>.weight.lora_a` / `.lora_b`, float32 (numpy shapes; ggml reverses them on disk);
- for the `llama` architecture the converter permutes the rows of q and k for llama.cpp's rotary
  layout (and transformers undoes that when it reads the GGUF), so B of q_proj / k_proj gets the
  same permutation here; A (the input side) is unchanged.
Reads safetensors with numpy: no torch needed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

PERMUTED_ARCHS = ("llama",)
PEFT_PREFIX = "base_model.model."


class ConvertError(ValueError):
    pass


_SCALARS = {0: "<B", 1: "<b", 2: "<H", 3: "<h", 4: "<I", 5: "<i", 6: "<f", 7: "<?", 10: "<Q", 11: "<q", 12: "<d"}
_STRING, _ARRAY = 8, 9


def read_metadata(path: Path, wanted: set[str]) -> dict[str, Any]:
    """The header values named in `wanted` (scalars and strings) of a GGUF file.

    Why not gguf.GGUFReader: it builds an object for every value and tensor, 6 s on SmolLM2 (the
    tokenizer's 49k strings) for four numbers; this walks the key/value section and skips arrays."""
    import struct

    found: dict[str, Any] = {}
    with open(path, "rb") as handle:
        def read(fmt: str) -> Any:
            size = struct.calcsize(fmt)
            data = handle.read(size)
            if len(data) != size:
                raise ConvertError(f"{path}: the GGUF header ends early")
            return struct.unpack(fmt, data)[0]

        def string() -> bytes:
            return handle.read(read("<Q"))

        def skip(kind: int) -> None:
            if kind == _STRING:
                handle.seek(read("<Q"), 1)
            elif kind == _ARRAY:
                inner, count = read("<I"), read("<Q")
                if inner in _SCALARS:
                    handle.seek(struct.calcsize(_SCALARS[inner]) * count, 1)
                else:
                    for _ in range(count):
                        skip(inner)
            elif kind in _SCALARS:
                handle.seek(struct.calcsize(_SCALARS[kind]), 1)
            else:
                raise ConvertError(f"{path}: unknown GGUF value type {kind}")

        if handle.read(4) != b"GGUF":
            raise ConvertError(f"{path} is not a GGUF file")
        read("<I"), read("<Q")  # version, tensor count
        for _ in range(read("<Q")):
            key, kind = string().decode("utf-8", "replace"), read("<I")
            if key in wanted and kind == _STRING:
                found[key] = string().decode("utf-8")
            elif key in wanted and kind in _SCALARS:
                found[key] = read(_SCALARS[kind])
            else:
                skip(kind)
    return found


def base_facts(base: Path) -> dict[str, Any]:
    """Architecture, block count and head counts of the base GGUF (read from its header)."""
    arch = read_metadata(base, {"general.architecture"}).get("general.architecture")
    if not arch:
        raise ConvertError(f"{base}: no general.architecture in its header")
    keys = {f"{arch}.block_count", f"{arch}.attention.head_count", f"{arch}.attention.head_count_kv"}
    values = read_metadata(base, keys)
    for key in (f"{arch}.block_count", f"{arch}.attention.head_count"):
        if key not in values:
            raise ConvertError(f"{base}: no {key} in its header")
    heads = int(values[f"{arch}.attention.head_count"])
    return {"arch": arch, "blocks": int(values[f"{arch}.block_count"]), "heads": heads,
            "kv_heads": int(values.get(f"{arch}.attention.head_count_kv", heads))}


def permute_rows(weights: Any, heads: int) -> Any:
    """convert_hf_to_gguf's llama q/k permutation, applied to the rows (the output side)."""
    rows = weights.shape[0]
    return (weights.reshape(heads, 2, rows // heads // 2, *weights.shape[1:]).swapaxes(1, 2)
            .reshape(weights.shape))


def lora_pairs(tensors: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """{hf base weight name: {"A": ..., "B": ...}} from a PEFT state dict."""
    pairs: dict[str, dict[str, Any]] = {}
    for name, tensor in tensors.items():
        for side in ("A", "B"):
            marker = f".lora_{side}.weight"
            if name.endswith(marker):
                base = name[len(PEFT_PREFIX):] if name.startswith(PEFT_PREFIX) else name
                pairs.setdefault(base[: -len(marker)] + ".weight", {})[side] = tensor
                break
        else:
            raise ConvertError(f"unexpected tensor '{name}' in the adapter (only LoRA A/B pairs are converted)")
    for base, pair in pairs.items():
        if set(pair) != {"A", "B"}:
            raise ConvertError(f"'{base}' has lora_{'A' if 'A' not in pair else 'B'} missing")
    return pairs


def convert_adapter(adapter_dir: Path, base: Path, out: Path) -> dict[str, Any]:
    """Write `out` (a GGUF LoRA for `base`) from the PEFT adapter in `adapter_dir`; returns its facts."""
    import gguf
    import numpy as np
    from safetensors.numpy import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text())
    if config.get("use_rslora") or config.get("use_dora"):
        raise ConvertError("rsLoRA and DoRA adapters are not converted (llama.cpp scales by alpha / rank)")
    facts = base_facts(base)
    archs = {name: arch for arch, name in gguf.MODEL_ARCH_NAMES.items()}
    if facts["arch"] not in archs:
        raise ConvertError(f"architecture '{facts['arch']}' is unknown to the gguf package")
    names = gguf.get_tensor_name_map(archs[facts["arch"]], facts["blocks"])
    pairs = lora_pairs(load_file(str(adapter_dir / "adapter_model.safetensors")))
    if not pairs:
        raise ConvertError(f"{adapter_dir}: the adapter holds no LoRA tensors")
    writer = gguf.GGUFWriter(str(out), facts["arch"])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config["lora_alpha"]))
    count = 0
    for hf_name in sorted(pairs):
        target = names.get_name(hf_name, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise ConvertError(f"no GGUF name for '{hf_name}' in architecture {facts['arch']}")
        a = np.ascontiguousarray(pairs[hf_name]["A"], dtype=np.float32)
        b = np.asarray(pairs[hf_name]["B"], dtype=np.float32)
        if facts["arch"] in PERMUTED_ARCHS and hf_name.endswith("q_proj.weight"):
            b = permute_rows(b, facts["heads"])
        elif facts["arch"] in PERMUTED_ARCHS and hf_name.endswith("k_proj.weight"):
            b = permute_rows(b, facts["kv_heads"])
        writer.add_tensor(f"{target}.lora_a", a)
        writer.add_tensor(f"{target}.lora_b", np.ascontiguousarray(b))
        count += 1
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return {"arch": facts["arch"], "tensors": 2 * count, "alpha": float(config["lora_alpha"]),
            "rank": int(config["r"]), "bytes": out.stat().st_size}


def check_loads(base: Path, adapter: Path) -> None:
    """llama.cpp loads the base with this LoRA applied, or ConvertError says why not."""
    from llama_cpp import Llama

    try:
        llm = Llama(model_path=str(base), lora_path=str(adapter), n_ctx=256, n_threads=1, verbose=False)
    except (ValueError, RuntimeError) as exc:
        raise ConvertError(f"llama.cpp does not load {adapter.name} over {base.name}: {exc}") from None
    llm.close()
