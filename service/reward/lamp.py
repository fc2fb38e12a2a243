"""Read LAMP's public human judgements of writing from a local clone of its repository.

LAMP ("Language model Authored, Manually Polished"; Chakrabarty, Laban, Wu, 2024-2025,
github.com/salesforce/creativity_eval, BSD-3-Clause): paragraphs written by LLMs and
the same paragraphs after a professional writer's edit, each scored 1-10 by experts.
prune ships none of its text: `python -m service.reward.train --lamp PATH` reads it
from a clone at PATH.

What is read, and only this (the repository's evaluation sets stay unread:
`WritingRewards/WQ-benchmark-data/`, `WritingRewards/content_quality_experiment/`
and every `test_dataset.json`):
- `RATINGS`: lamp-R's training split, one paragraph and its expert score a line;
- `REANNOTATION`: 50 drafts, each edited by three more writers (draft -> edit pairs);
- `RANKINGS`: writers' rankings of one draft, its expert edit and an LLM's edit.

lamp-R does not say which paragraphs belong together, so paragraphs are grouped by
shared vocabulary (a draft and its edit share most words; two different stories do
not), and the validation split is drawn by group: no draft and its own edit fall on
different sides.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

RATINGS = "WritingRewards/training/Llama/data/lamp-R/train_dataset.json"
REANNOTATION = "Writing_Alignment/LAMP/reannotation"
RANKINGS = "Writing_Alignment/preference_ranking"
HELD_OUT = ("WritingRewards/WQ-benchmark-data", "WritingRewards/content_quality_experiment", "test_dataset.json")
# A paragraph and its edit share at least this share of their vocabulary (measured on lamp-R:
# nearest neighbours within a group are at 0.4-0.95, across groups below 0.3).
SAME_SOURCE_JACCARD = 0.3
VALIDATION = 0.2  # share of lamp-R's groups kept for validation: never trained on


class LampError(ValueError):
    """A path that is not a LAMP clone, or a file in an unexpected shape; the message names it."""


@dataclass(frozen=True)
class Rated:
    text: str
    score: float  # the expert score 1-10 (mean of a paragraph's scores if it appears twice)
    group: str  # the source paragraph's group: a draft and its edits share it


@dataclass(frozen=True)
class Judged:
    """One human judgement between two texts of the same source."""

    chosen: str
    rejected: str
    source: str  # which file said so: "lamp-R", "reannotation", "rankings"
    prompt: str = ""


def vocabulary(text: str) -> frozenset[str]:
    return frozenset(re.findall(r"[a-z']+", text.lower()))


def same_source(a: frozenset[str], b: frozenset[str]) -> bool:
    """Two texts' vocabularies overlap as a draft's and its edit's do (Jaccard index)."""
    union = len(a | b)
    return bool(union) and len(a & b) / union >= SAME_SOURCE_JACCARD


def _paragraph(line: str, where: str) -> tuple[str, float]:
    try:
        messages = json.loads(line)["messages"]
        user = next(m["content"] for m in messages if m["role"] == "user")
        answer = next(m["content"] for m in messages if m["role"] == "assistant")
        text = user.split("Paragraph:\n", 1)[1].split("\n\nYou must", 1)[0].strip()
        return text, float(json.loads(answer)["score"])
    except (KeyError, IndexError, StopIteration, TypeError, ValueError) as exc:
        raise LampError(f"{where}: not a lamp-R chat record ({exc.__class__.__name__})") from None


def group_by_source(texts: list[str]) -> list[int]:
    """A group number per text: texts sharing SAME_SOURCE_JACCARD of their words, transitively."""
    words = [vocabulary(t) for t in texts]
    parent = list(range(len(texts)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for i in range(len(texts)):
        for j in range(i + 1, len(texts)):
            if same_source(words[i], words[j]):
                parent[root(i)] = root(j)
    return [root(i) for i in range(len(texts))]


def read_ratings(root: Path) -> list[Rated]:
    """lamp-R's training split: each distinct paragraph with its expert score and source group."""
    path = Path(root) / RATINGS
    if not path.exists():
        raise LampError(f"{path}: not found; --lamp takes a clone of github.com/salesforce/creativity_eval")
    scores: dict[str, list[float]] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.strip():
            text, score = _paragraph(line, f"{path}:{number}")
            scores.setdefault(text, []).append(score)
    texts = sorted(scores)
    groups = group_by_source(texts)
    # A group's name is a hash of its first text: stable across runs and machines.
    first = {}
    for text, group in zip(texts, groups):
        first.setdefault(group, text)
    name = {g: hashlib.sha256(t.encode()).hexdigest()[:12] for g, t in first.items()}
    return [Rated(t, sum(scores[t]) / len(scores[t]), name[g]) for t, g in zip(texts, groups)]


def is_validation(group: str, share: float = VALIDATION) -> bool:
    return int(group[:8], 16) / 0xFFFFFFFF < share


def rated_pairs(rated: list[Rated]) -> list[Judged]:
    """Within each group, every pair of texts whose expert scores differ: the higher is chosen."""
    by_group: dict[str, list[Rated]] = {}
    for r in rated:
        by_group.setdefault(r.group, []).append(r)
    out = []
    for members in by_group.values():
        for i, a in enumerate(members):
            for b in members[i + 1:]:
                if a.score != b.score:
                    hi, lo = (a, b) if a.score > b.score else (b, a)
                    out.append(Judged(hi.text, lo.text, "lamp-R"))
    return out


def _load(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise LampError(f"{path}: {exc}") from None


def read_reannotation(root: Path) -> list[Judged]:
    """Three more writers' edits of 50 drafts: each edit is chosen over its draft."""
    out = []
    for path in sorted((Path(root) / REANNOTATION).glob("*.json")):
        for row in _load(path):
            if row.get("preedit") and row.get("postedit") and row["preedit"].strip() != row["postedit"].strip():
                out.append(Judged(row["postedit"], row["preedit"], "reannotation", row.get("instruction", "")))
    return out


def read_rankings(root: Path) -> list[Judged]:
    """Writers ranked three versions of a paragraph (the LLM draft, its expert edit, an LLM's
    edit); each ranking gives three pairs, the better-ranked chosen."""
    out = []
    for worker_file in sorted((Path(root) / RANKINGS).glob("batch*/*_rankings.json")):
        responses = worker_file.with_name(worker_file.name.replace("_rankings.json", ".json"))
        shown = {row["instruction_id"]: row for row in _load(responses)}
        for ranking in _load(worker_file):
            row = shown.get(ranking.get("instruction_id"))
            if row is None:
                continue
            order = [ranking.get(f"rank_{k}") for k in (1, 2, 3)]
            try:
                texts = [row["responses"][int(label.split()[-1]) - 1] for label in order]
            except (AttributeError, IndexError, ValueError):
                continue  # an incomplete ranking
            for i in range(3):
                for j in range(i + 1, 3):
                    if texts[i].strip() != texts[j].strip():
                        out.append(Judged(texts[i], texts[j], "rankings", row.get("instruction", "")))
    return out


def spearman(xs: list[float], ys: list[float]) -> float:
    """Spearman's rank correlation, ties given their average rank."""

    def ranks(values: list[float]) -> list[float]:
        order = sorted(range(len(values)), key=values.__getitem__)
        out = [0.0] * len(values)
        i = 0
        while i < len(order):
            j = i
            while j + 1 < len(order) and values[order[j + 1]] == values[order[i]]:
                j += 1
            for k in range(i, j + 1):
                out[order[k]] = (i + j) / 2
            i = j + 1
        return out

    rx, ry = ranks(xs), ranks(ys)
    mx, my = sum(rx) / len(rx), sum(ry) / len(ry)
    cov = sum((a - mx) * (b - my) for a, b in zip(rx, ry))
    norm = (sum((a - mx) ** 2 for a in rx) * sum((b - my) ** 2 for b in ry)) ** 0.5
    return cov / norm if norm else 0.0


def length_matched(chosen: str, rejected: str, within: float = 0.1) -> bool:
    """Lengths in characters within `within` of the longer one."""
    return abs(len(chosen) - len(rejected)) <= within * max(len(chosen), len(rejected))
