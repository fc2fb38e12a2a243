"""Train the `style-human` head on LAMP's expert judgements, and fit the `style` ensemble's weights.

    python -m service.reward.train --lamp PATH [--out HEAD.safetensors]

PATH is a local clone of github.com/salesforce/creativity_eval (service/reward/lamp.py
says what is read, and what never is). The head reads the MiniLM embedding of a text
and its interpretable style features (service/reward/style_features.py), and is fit
with two losses at once: Bradley-Terry on pairs of the same source paragraph (the
higher expert score chosen) and a squared error on the standardised expert score
(so scores compare across paragraphs, not only within a pair).

Then the ensemble: each member's score difference on a pair, standardised as the
ensemble standardises it, is a feature of a logistic regression with no intercept;
its coefficients are the member weights. It is fit on the training side of every
judged set: LAMP's training groups and the project's own easy and hard training
prompts, each set weighted equally. Nothing on the validation side is read.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from pathlib import Path

from service.reward import lamp
from service.reward.embedding_head import HeadInputs, make_head
from service.reward.encoder import EMBEDDED_MINILM

HUMAN_INPUTS = HeadInputs(("completion", "style", "ngrams"))
# Weight of the rating loss beside the pairwise one. Measured on the validation split with weights
# 0, 0.25, 0.5 and 1: none raised the Spearman correlation (0.25-0.32 in every case) and each above 0
# lowered pairwise accuracy by 2-5 points, so the shipped head is fit on pairs alone.
RATING_LOSS = 0.0


@dataclass
class LampSplit:
    """LAMP's judgements, split by source paragraph: `val` is never trained on."""

    train: list[lamp.Rated]
    val: list[lamp.Rated]
    train_pairs: list[lamp.Judged]
    val_pairs: list[lamp.Judged]
    # Other writers' judgements of texts unrelated to any training paragraph.
    cross: list[lamp.Judged] = field(default_factory=list)


def split_lamp(root: Path, share: float = lamp.VALIDATION) -> LampSplit:
    rated = lamp.read_ratings(root)
    train = [r for r in rated if not lamp.is_validation(r.group, share)]
    val = [r for r in rated if lamp.is_validation(r.group, share)]
    group = {r.text: r.group for r in rated}
    pairs = lamp.rated_pairs(rated)
    seen = [lamp._words(r.text) for r in train]

    def unrelated(text: str) -> bool:
        words = lamp._words(text)
        return all(len(words & w) / max(len(words | w), 1) < lamp.SAME_SOURCE_JACCARD for w in seen)

    others = lamp.read_reannotation(root) + lamp.read_rankings(root)
    verdict: dict[str, bool] = {}
    cross = [p for p in others
             if verdict.setdefault(p.chosen, unrelated(p.chosen)) and verdict.setdefault(p.rejected, unrelated(p.rejected))]
    return LampSplit(train, val,
                     [p for p in pairs if not lamp.is_validation(group[p.chosen], share)],
                     [p for p in pairs if lamp.is_validation(group[p.chosen], share)], cross)


def fit_head(x, chosen, rejected, rated=None, scores=None, *, hidden: int = 0, epochs: int = 400,
             lr: float = 0.01, weight_decay: float = 0.01, rating_loss: float = RATING_LOSS, seed: int = 0):
    """A head over rows of `x`: Bradley-Terry on (chosen[i], rejected[i]) row pairs, plus a squared
    error to the standardised `scores` of rows `rated` when given. Deterministic for a seed."""
    import torch

    torch.manual_seed(seed)
    head = make_head(x.shape[1], hidden)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    chosen, rejected = torch.as_tensor(chosen), torch.as_tensor(rejected)
    if rated is not None:
        rated, target = torch.as_tensor(rated), torch.as_tensor(scores, dtype=torch.float32)
        target = (target - target.mean()) / target.std().clamp(min=1e-6)
    for _ in range(epochs):
        optimizer.zero_grad()
        out = head(x).squeeze(-1)
        loss = -torch.nn.functional.logsigmoid(out[chosen] - out[rejected]).mean()
        if rated is not None:
            loss = loss + rating_loss * ((out[rated] - target) ** 2).mean()
        loss.backward()
        optimizer.step()
    return head.eval()


def pair_accuracy(score: dict[str, float], pairs) -> float:
    if not pairs:
        return float("nan")
    return sum(score[p.chosen] > score[p.rejected] for p in pairs) / len(pairs)


def train_human_head(split: LampSplit, *, encoder_name: str = EMBEDDED_MINILM, epochs: int = 400, seed: int = 0,
                     log=print):
    """The `style-human` head and its figures on the validation and cross-source judgements."""
    import torch

    from service.reward.encoder import SentenceEncoder

    started = time.time()
    encoder = SentenceEncoder(encoder_name, "auto")
    texts = sorted({r.text for r in split.train + split.val} | {t for p in split.cross for t in (p.chosen, p.rejected)})
    row = {t: i for i, t in enumerate(texts)}
    inputs = HUMAN_INPUTS.fit_style_scale([r.text for r in split.train])
    log(f"encoding {len(texts)} texts on {encoder.device}")
    x = inputs.build(encoder, [""] * len(texts), texts)
    head = fit_head(x, [row[p.chosen] for p in split.train_pairs], [row[p.rejected] for p in split.train_pairs],
                    [row[r.text] for r in split.train], [r.score for r in split.train], epochs=epochs, seed=seed)
    with torch.inference_mode():
        values = head(x).squeeze(-1).tolist()
    score = {t: values[row[t]] for t in texts}
    result = {
        "encoder": encoder_name, "in_dim": x.shape[1], "hidden": 0, **inputs.meta(),
        "pairs_train": len(split.train_pairs), "pairs_heldout": len(split.val_pairs),
        "train_accuracy": round(pair_accuracy(score, split.train_pairs), 4),
        "heldout_accuracy": round(pair_accuracy(score, split.val_pairs), 4),
        "heldout_spearman": round(lamp.spearman([score[r.text] for r in split.val], [r.score for r in split.val]), 4),
        "cross_source_accuracy": round(pair_accuracy(score, split.cross), 4),
        "source": "LAMP lamp-R training split (salesforce/creativity_eval, BSD-3-Clause), 80% of source groups",
        "seed": seed, "epochs": epochs, "seconds": round(time.time() - started, 1),
    }
    return head, result


# --- the ensemble's weights --------------------------------------------------


def _fit_weights(diffs: list[list[float]], sets: list[int], l2: float = 0.01, steps: int = 2000) -> list[float]:
    """Logistic regression without intercept, each set's pairs weighted to count equally."""
    import torch

    x = torch.tensor(diffs)
    sizes = torch.bincount(torch.tensor(sets)).float()
    weight = 1.0 / sizes[torch.tensor(sets)]
    w = torch.zeros(x.shape[1], requires_grad=True)
    optimizer = torch.optim.LBFGS([w], max_iter=steps, line_search_fn="strong_wolfe")

    def closure():
        optimizer.zero_grad()
        loss = -(weight * torch.nn.functional.logsigmoid(x @ w)).sum() / len(sizes) + l2 * (w ** 2).sum()
        loss.backward()
        return loss

    optimizer.step(closure)
    return [round(v, 3) for v in w.detach().tolist()]


async def _member_diffs(models: dict, members: list[str], stats: dict, pairs) -> list[list[float]]:
    from service.types import Prompt

    jobs = [(Prompt(text=p.prompt), [p.chosen, p.rejected]) for p in pairs]
    out = [[0.0] * len(members) for _ in pairs]
    for m, name in enumerate(members):
        for i, scores in enumerate(await models[name].score_many(jobs)):
            out[i][m] = (scores.values[0] - scores.values[1]) / stats[name][1]
    return out


def fit_ensemble(head_path: Path, split: LampSplit, members=("slop", "style-head", "style-human")) -> list[dict]:
    """The `style` ensemble's members with fitted weights and their reference scale."""
    from service.config import EmbeddingHeadRewardConfig, SlopRewardConfig
    from service.reward import make_reward_models
    from service.reward.ensemble import REFERENCE_TEXTS, measure_stats, reference_batch
    from service.reward.train import HARD_PAIRS, HOLDOUT, SHIPPED_PAIRS, is_held_out, read_pairs

    configs = {"slop": SlopRewardConfig(), "style-head": EmbeddingHeadRewardConfig(),
               "style-human": EmbeddingHeadRewardConfig(head=str(head_path))}
    models = make_reward_models({name: configs[name] for name in members})
    own = [[lamp.Judged(p.chosen, p.rejected, path.stem, p.prompt) for p in read_pairs(path)
            if not is_held_out(p.prompt, HOLDOUT)] for path in (SHIPPED_PAIRS, *HARD_PAIRS)]
    judged = [split.train_pairs, [p for pairs in own[:1] for p in pairs], [p for pairs in own[1:] for p in pairs]]

    async def run():
        batch = reference_batch(REFERENCE_TEXTS)
        stats = {name: await measure_stats(models[name], batch) for name in members}
        diffs, sets = [], []
        for number, pairs in enumerate(judged):
            diffs += await _member_diffs(models, list(members), stats, pairs)
            sets += [number] * len(pairs)
        return stats, _fit_weights(diffs, sets)

    stats, weights = asyncio.run(run())
    return [{"name": name, "weight": weight, "mean": stats[name][0], "std": stats[name][1]}
            for name, weight in zip(members, weights)]
