"""Train the `style-human` head on LAMP's expert judgements, and fit the `style` ensemble's weights.

    python -m service.reward.train --lamp PATH [--out HEAD.safetensors]

PATH is a local clone of github.com/salesforce/creativity_eval (service/reward/lamp.py
says what is read, and what never is). The head reads a text's MiniLM embedding, its
interpretable style features (service/reward/style_features.py) and its hashed word
n-grams, and is fit with the Bradley-Terry loss on two sets that count equally:
LAMP's pairs of one source paragraph (the higher expert score chosen), and the
project's own training pairs (service/reward/data, the prompts `train` holds in).
LAMP alone is fiction and essays: a head fit on it alone preferred the hedged and the
padded answer of the project's chat pairs (35% right), because in literary prose the
same features (adverbs, short sentences) mark a human editor's hand.

Then the ensemble: each member's score difference on a pair, standardised as the
ensemble standardises it, is a feature of a logistic regression with no intercept;
its coefficients are the member weights. It is fit on the training side of every
judged set (LAMP's training groups, the project's easy and the hard training pairs),
each set weighted equally, with each head's scores on its own training pairs taken
out of fold. Nothing on a validation side is read.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
from dataclasses import dataclass, field
from pathlib import Path

from service.reward import lamp
from service.reward.embedding_head import HeadInputs, make_head
from service.reward.encoder import EMBEDDED_MINILM

HUMAN_INPUTS = HeadInputs(("completion", "style", "ngrams"))
# The head is fit on pairs alone. A squared error on the 1-10 scores beside the pairwise loss was
# measured on the validation split (weights 0.25, 0.5, 1): it raised the Spearman correlation by
# 0.02 at most (0.23-0.32) and moved pairwise accuracy from 4 points lower to 3 higher.


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
    seen = [lamp.vocabulary(r.text) for r in train]

    def unrelated(text: str) -> bool:
        words = lamp.vocabulary(text)
        return not any(lamp.same_source(words, w) for w in seen)

    others = lamp.read_reannotation(root) + lamp.read_rankings(root)
    verdict: dict[str, bool] = {}

    def kept(text: str) -> bool:
        if text not in verdict:
            verdict[text] = unrelated(text)
        return verdict[text]

    cross = [p for p in others if kept(p.chosen) and kept(p.rejected)]
    return LampSplit(train, val,
                     [p for p in pairs if not lamp.is_validation(group[p.chosen], share)],
                     [p for p in pairs if lamp.is_validation(group[p.chosen], share)], cross)


def fit_head(x, chosen, rejected, sets=None, *, hidden: int = 0, epochs: int = 400, lr: float = 0.01,
             weight_decay: float = 0.01, seed: int = 0):
    """A head over rows of `x`: Bradley-Terry on (chosen[i], rejected[i]) row pairs, each set of pairs
    (`sets[i]`) counting equally. Deterministic for a seed."""
    import torch

    torch.manual_seed(seed)
    head = make_head(x.shape[1], hidden)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    chosen, rejected = torch.as_tensor(chosen), torch.as_tensor(rejected)
    sets = torch.as_tensor(sets if sets is not None else [0] * len(chosen))
    share = 1.0 / torch.bincount(sets).float()[sets] / len(sets.unique())  # each set's pairs sum to 1/#sets
    for _ in range(epochs):
        optimizer.zero_grad()
        out = head(x).squeeze(-1)
        loss = -(share * torch.nn.functional.logsigmoid(out[chosen] - out[rejected])).sum()
        loss.backward()
        optimizer.step()
    return head.eval()


def pair_accuracy(score: dict[str, float], pairs) -> float:
    if not pairs:
        return float("nan")
    return sum(score[p.chosen] > score[p.rejected] for p in pairs) / len(pairs)


def own_training_pairs(paths: list[Path]) -> list[lamp.Judged]:
    """Pairs files' pairs of the prompts `python -m service.reward.train` trains on (not held out).
    Their source is the file's name, or "hard" for the shipped hard pairs (one set in the ensemble fit)."""
    from service.reward.pairs import HARD_PAIRS, HOLDOUT, is_held_out, read_pairs

    return [lamp.Judged(p.chosen, p.rejected, "hard" if path in HARD_PAIRS else path.stem, p.prompt)
            for path in paths for p in read_pairs(path) if not is_held_out(p.prompt, HOLDOUT)]


@dataclass
class FitData:
    """What a head was fit on: feature rows by text, and the training pairs with their set and fold."""

    x: object  # a tensor [texts, features]
    row: dict[str, int]
    pairs: list[lamp.Judged]
    sets: list[int]  # 0: LAMP, 1: the project's pairs
    folds: list[int]  # by source group (LAMP) or prompt (the project's): the out-of-fold split

    def rows(self, pairs) -> tuple[list[int], list[int]]:
        return [self.row[p.chosen] for p in pairs], [self.row[p.rejected] for p in pairs]


def train_human_head(split: LampSplit, own: list[lamp.Judged], *, encoder_name: str = EMBEDDED_MINILM,
                     epochs: int = 400, seed: int = 0, log=print):
    """The `style-human` head, its figures on LAMP's validation and cross-source judgements, and
    what it was fit on (for the ensemble's out-of-fold scores)."""
    import torch

    from service.reward.encoder import ENCODERS

    started = time.time()
    encoder = ENCODERS.get(encoder_name, "auto")
    texts = sorted({r.text for r in split.train + split.val}
                   | {t for p in split.cross + own for t in (p.chosen, p.rejected)})
    row = {t: i for i, t in enumerate(texts)}
    inputs = HUMAN_INPUTS.fit_style_scale([r.text for r in split.train])
    log(f"encoding {len(texts)} texts on {encoder.device}")
    x = inputs.build(encoder, [""] * len(texts), texts)
    group = {r.text: r.group for r in split.train}
    data = FitData(x, row, split.train_pairs + own, [0] * len(split.train_pairs) + [1] * len(own),
                   [_fold(group[p.chosen]) for p in split.train_pairs] + [_fold(p.prompt) for p in own])
    head = fit_head(x, *data.rows(data.pairs), data.sets, epochs=epochs, seed=seed)
    with torch.inference_mode():
        values = head(x).squeeze(-1).tolist()
    score = {t: values[row[t]] for t in texts}
    result = {
        "encoder": encoder_name, "in_dim": x.shape[1], "hidden": 0, **inputs.meta(),
        "pairs_train": len(split.train_pairs), "pairs_heldout": len(split.val_pairs), "pairs_own": len(own),
        "train_accuracy": round(pair_accuracy(score, split.train_pairs), 4),
        "heldout_accuracy": round(pair_accuracy(score, split.val_pairs), 4),
        "heldout_spearman": round(lamp.spearman([score[r.text] for r in split.val], [r.score for r in split.val]), 4),
        "cross_source_accuracy": round(pair_accuracy(score, split.cross), 4),
        "source": "LAMP lamp-R training split (salesforce/creativity_eval, BSD-3-Clause), 80% of source groups; "
                  "the project's easy and hard training pairs",
        "seed": seed, "epochs": epochs, "seconds": round(time.time() - started, 1),
    }
    return head, result, data


# --- the ensemble's weights --------------------------------------------------
# A member scores pairs it was trained on far better than new ones (style-human: 99.7% on its
# training pairs, 83% on validation), so weights fit on those scores would trust it too much.
# Each head scores its own training pairs out of fold instead: FOLDS heads, each fit without one
# fold of the source groups (LAMP) or prompts (the project's pairs), score that fold.
FOLDS = 5


def _fold(key: str) -> int:
    return int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) % FOLDS


def out_of_fold(x, chosen: list[int], rejected: list[int], folds: list[int], sets: list[int] | None = None, *,
                epochs: int = 400, seed: int = 0) -> list[tuple[float, float]]:
    """(chosen, rejected) scores of each pair from the head fit without the pair's fold."""
    import torch

    sets = sets or [0] * len(chosen)
    out: list[tuple[float, float]] = [(0.0, 0.0)] * len(chosen)
    for fold in range(FOLDS):
        keep = [i for i, f in enumerate(folds) if f != fold]
        head = fit_head(x, [chosen[i] for i in keep], [rejected[i] for i in keep], [sets[i] for i in keep],
                        epochs=epochs, seed=seed)
        with torch.inference_mode():
            values = head(x).squeeze(-1).tolist()
        for i, f in enumerate(folds):
            if f == fold:
                out[i] = (values[chosen[i]], values[rejected[i]])
    return out


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


MEMBERS = ("slop", "style-head", "style-human")


def fit_ensemble(head_path: Path, data: FitData, *, epochs: int = 400, seed: int = 0, log=print) -> list[dict]:
    """The `style` ensemble's members with weights fit on the training sides of LAMP and of the
    project's easy and hard pairs, each set counting equally."""
    import torch

    from service.config import EmbeddingHeadRewardConfig, SlopRewardConfig
    from service.reward import make_reward_models
    from service.reward.embedding_head import features
    from service.reward.ensemble import REFERENCE_TEXTS, measure_stats, reference_batch
    from service.types import Prompt

    models = make_reward_models({"slop": SlopRewardConfig(), "style-head": EmbeddingHeadRewardConfig(),
                                 "style-human": EmbeddingHeadRewardConfig(head=str(head_path))})
    pairs = data.pairs
    kinds = sorted({"lamp" if s == 0 else p.source for p, s in zip(pairs, data.sets)})

    async def run():
        stats = {name: await measure_stats(models[name], reference_batch(REFERENCE_TEXTS)) for name in MEMBERS}
        jobs = [(Prompt(text=p.prompt), [p.chosen, p.rejected]) for p in pairs]
        return stats, {name: [tuple(s.values) for s in await models[name].score_many(jobs)] for name in MEMBERS}

    stats, scores = asyncio.run(run())
    log("out-of-fold scores of style-human on its training pairs, and of style-head on the project's")
    scores["style-human"] = out_of_fold(data.x, *data.rows(pairs), data.folds, data.sets, epochs=epochs, seed=seed)
    own = [i for i, s in enumerate(data.sets) if s == 1]
    prompts = [pairs[i].prompt for i in own]
    encoder = models["style-head"].encoder
    own_x = torch.cat([features(encoder, prompts, [pairs[i].chosen for i in own]),
                       features(encoder, prompts, [pairs[i].rejected for i in own])])
    n = len(own)
    for i, value in zip(own, out_of_fold(own_x, list(range(n)), list(range(n, 2 * n)), [data.folds[i] for i in own],
                                         epochs=epochs, seed=seed)):
        scores["style-head"][i] = value
    diffs = [[(scores[name][i][0] - scores[name][i][1]) / stats[name][1] for name in MEMBERS]
             for i in range(len(pairs))]
    sets = [kinds.index("lamp" if s == 0 else p.source) for p, s in zip(pairs, data.sets)]
    weights = _fit_weights(diffs, sets)
    return [{"name": name, "weight": weight, "mean": stats[name][0], "std": stats[name][1]}
            for name, weight in zip(MEMBERS, weights)]
