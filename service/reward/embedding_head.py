"""The `embedding-head` reward: a sentence encoder plus a small head trained on
preference pairs with a Bradley-Terry loss (see service/reward/train.py).

A head file is safetensors: the head's weights, plus metadata naming the encoder
and the held-out accuracy it reached. No pickle, so a head file cannot run code.
"""

from __future__ import annotations

import json
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


def features(encoder, prompts: Sequence[str], completions: Sequence[str], batch_size: int = 64):
    """What the head sees: the completion's embedding and its product with the prompt's
    (so the head can tell an on-topic answer from a generic one)."""
    import torch

    completion = encoder.encode(completions, batch_size)
    unique = sorted(set(prompts))
    by_prompt = dict(zip(unique, encoder.encode(unique, batch_size)))
    prompt = torch.stack([by_prompt[p] for p in prompts]) if prompts else torch.zeros_like(completion)
    return torch.cat([completion, completion * prompt], dim=-1)


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

    def __init__(self, config: EmbeddingHeadRewardConfig):
        self.config = config
        self.encoder = None
        self.head = None
        self.meta: dict = {}

    def load(self) -> None:
        from service.reward.encoder import SentenceEncoder

        self.head, self.meta = load_head(resolve_head_path(self.config.head))
        encoder_name = self.config.encoder
        if self.meta.get("encoder") and self.meta["encoder"] != encoder_name:
            raise ValueError(
                f"head {self.config.head} was trained on encoder {self.meta['encoder']!r}, "
                f"but the config names {encoder_name!r}"
            )
        self.encoder = SentenceEncoder(encoder_name, self.config.device)
        self.head.to(self.encoder.device)

    def score_pairs(self, pairs: list[tuple[Prompt, str]]) -> list[float]:
        import torch

        prompts = [prompt.last_user_text() for prompt, _ in pairs]
        with torch.inference_mode():
            x = features(self.encoder, prompts, [c for _, c in pairs], self.config.batch_size).to(self.encoder.device)
            return [round(v, 4) for v in self.head(x).squeeze(-1).float().cpu().tolist()]
