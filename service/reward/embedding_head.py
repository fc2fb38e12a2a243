"""The `embedding-head` reward: a sentence encoder plus a small head trained on
preference pairs with a Bradley-Terry loss (see service/reward/train.py).

A head file is safetensors: the head's weights, plus metadata naming the encoder
and the held-out accuracy it reached. No pickle, so a head file cannot run code.
"""

from __future__ import annotations

import json
import re
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from service.config import EmbeddingHeadRewardConfig
from service.reward.base import DeviceRewardModel
from service.types import Prompt

SHIPPED_HEADS = Path(__file__).parent / "heads"
SHIPPED_PREFIX = "shipped:"


def resolve_head_path(head: str) -> Path:
    if head.startswith(SHIPPED_PREFIX):
        return SHIPPED_HEADS / f"{head[len(SHIPPED_PREFIX):]}.safetensors"
    return Path(head)


NGRAM_DIM = 4096
WORDS = re.compile(r"[a-z']+")


def hashed_ngrams(text: str, dim: int = NGRAM_DIM) -> list[float]:
    """Words and adjacent word pairs, counted per 100 words (divided by 10), in `dim` CRC-32 buckets."""
    words = WORDS.findall(text.lower())
    out = [0.0] * dim
    if not words:
        return out
    step = 10.0 / len(words)
    for gram in words + [f"{a} {b}" for a, b in zip(words, words[1:])]:
        out[zlib.crc32(gram.encode()) % dim] += step
    return out


# What a head can read, per completion. Heads written before `inputs` existed read the first two.
INPUT_BLOCKS = ("completion", "prompt_product", "style", "ngrams")
LEGACY_INPUTS = INPUT_BLOCKS[:2]


@dataclass(frozen=True)
class HeadInputs:
    """The head's input vector, block by block:
    - `completion`: the completion's embedding;
    - `prompt_product`: its product with the prompt's (an on-topic answer from a generic one);
    - `style`: the interpretable style features (service/reward/style_features.py), standardised
      with the training texts' mean and std, stored in the head file;
    - `ngrams`: counts of its words and word pairs per 100 words, hashed into NGRAM_DIM buckets
      (which phrasings editors cut, beyond the features' lists).
    """

    blocks: tuple[str, ...] = LEGACY_INPUTS
    style_mean: tuple[float, ...] = ()
    style_std: tuple[float, ...] = ()

    @classmethod
    def from_meta(cls, meta: dict) -> "HeadInputs":
        blocks = tuple(meta.get("inputs", LEGACY_INPUTS))
        unknown = [b for b in blocks if b not in INPUT_BLOCKS]
        if unknown:
            raise ValueError(f"the head reads inputs this version does not know: {', '.join(unknown)}")
        return cls(blocks, tuple(meta.get("style_mean", ())), tuple(meta.get("style_std", ())))

    def meta(self) -> dict:
        out: dict = {"inputs": list(self.blocks)}
        if "style" in self.blocks:
            out |= {"style_mean": list(self.style_mean), "style_std": list(self.style_std)}
        return out

    def fit_style_scale(self, completions: Sequence[str]) -> "HeadInputs":
        """The same inputs, with the style features' scale measured on `completions`."""
        import torch

        from service.reward.style_features import feature_rows

        rows = torch.tensor(feature_rows(completions))
        mean, std = rows.mean(0), rows.std(0).clamp(min=1e-3)
        return HeadInputs(self.blocks, tuple(round(v, 5) for v in mean.tolist()),
                          tuple(round(v, 5) for v in std.tolist()))

    def build(self, encoder, prompts: Sequence[str], completions: Sequence[str], batch_size: int = 64):
        import torch

        completion = encoder.encode(completions, batch_size)
        parts = []
        for block in self.blocks:
            if block == "completion":
                parts.append(completion)
            elif block == "prompt_product":
                unique = sorted(set(prompts))
                by_prompt = dict(zip(unique, encoder.encode(unique, batch_size)))
                prompt = torch.stack([by_prompt[p] for p in prompts]) if prompts else torch.zeros_like(completion)
                parts.append(completion * prompt)
            elif block == "style":
                from service.reward.style_features import feature_rows

                rows = torch.tensor(feature_rows(completions)).reshape(len(completions), -1)
                parts.append((rows - torch.tensor(self.style_mean)) / torch.tensor(self.style_std))
            else:  # ngrams
                parts.append(torch.tensor([hashed_ngrams(c) for c in completions]).reshape(len(completions), -1))
        return torch.cat(parts, dim=-1)


def features(encoder, prompts: Sequence[str], completions: Sequence[str], batch_size: int = 64,
             inputs: HeadInputs = HeadInputs()):
    """What the head sees (see HeadInputs)."""
    return inputs.build(encoder, prompts, completions, batch_size)


def make_head(in_dim: int, hidden: int):
    import torch

    if hidden <= 0:
        return torch.nn.Linear(in_dim, 1)
    return torch.nn.Sequential(torch.nn.Linear(in_dim, hidden), torch.nn.GELU(), torch.nn.Linear(hidden, 1))


def save_head(head, path: Path, meta: dict) -> None:
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().contiguous().cpu() for k, v in head.state_dict().items()}
    save_file(tensors, str(path), metadata={"prune": json.dumps(meta)})


def load_head(path: Path):
    from safetensors import safe_open
    from safetensors.torch import load_file

    if not path.exists():
        raise FileNotFoundError(f"reward head file {path} does not exist")
    with safe_open(str(path), "pt") as f:
        meta = json.loads((f.metadata() or {}).get("prune", "{}"))
    if "in_dim" not in meta:
        raise ValueError(f"{path} is not a prune reward head (no metadata)")
    head = make_head(meta["in_dim"], meta.get("hidden", 0))
    head.load_state_dict(load_file(str(path)))
    return head.eval(), meta


class EmbeddingHeadReward(DeviceRewardModel):
    kind = "embedding-head"

    def __init__(self, config: EmbeddingHeadRewardConfig, encoders=None):
        from service.reward.encoder import ENCODERS

        self.config = config
        self.encoders = encoders or ENCODERS
        self.encoder = None
        self.head = None
        self.meta: dict = {}
        self.inputs = HeadInputs()

    def load(self) -> None:
        self.head, self.meta = load_head(resolve_head_path(self.config.head))
        self.inputs = HeadInputs.from_meta(self.meta)
        encoder_name = self.config.encoder
        if self.meta.get("encoder") and self.meta["encoder"] != encoder_name:
            raise ValueError(
                f"head {self.config.head} was trained on encoder {self.meta['encoder']!r}, "
                f"but the config names {encoder_name!r}"
            )
        self.encoder = self.encoders.get(encoder_name, self.config.device)
        self.head.to(self.encoder.device)

    def score_pairs(self, pairs: list[tuple[Prompt, str]]) -> list[float]:
        import torch

        prompts = [prompt.last_user_text() for prompt, _ in pairs]
        with torch.inference_mode():
            x = features(self.encoder, prompts, [c for _, c in pairs], self.config.batch_size,
                         self.inputs).to(self.encoder.device)
            return [round(v, 4) for v in self.head(x).squeeze(-1).float().cpu().tolist()]
