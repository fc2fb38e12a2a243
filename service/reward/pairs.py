"""Preference pair files: the project's shipped pairs, the length-matched hard pairs, and
the one held-out split every trainer and evaluator uses (by prompt, stably)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

SHIPPED_PAIRS = Path(__file__).parent / "data" / "style_pairs.jsonl"
# Length-matched pairs of subtle flaws (hedges, generic, sycophancy, padding, voice, slop-word traps).
HARD_PAIRS = sorted((Path(__file__).parent / "data" / "hard").glob("*.jsonl"))
HOLDOUT = 0.3  # share of prompts never trained on: the held-out accuracy in docs/configuration.md


class PairsError(ValueError):
    """A pairs file that cannot train a head; the message names the line."""


@dataclass(frozen=True)
class Pair:
    prompt: str
    chosen: str
    rejected: str


def read_pairs(path: Path) -> list[Pair]:
    if not path.exists():
        raise PairsError(f"{path}: no such file")
    pairs = []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise PairsError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict):
            raise PairsError(f"{path}:{number}: expected an object with prompt, chosen, rejected")
        for key in ("prompt", "chosen", "rejected"):
            if not isinstance(row.get(key), str) or not row[key].strip():
                raise PairsError(f"{path}:{number}: '{key}' must be a non-empty string")
        if row["chosen"].strip() == row["rejected"].strip():
            raise PairsError(f"{path}:{number}: chosen and rejected are the same text")
        pairs.append(Pair(row["prompt"], row["chosen"], row["rejected"]))
    if len(pairs) < 10:
        raise PairsError(f"{path}: {len(pairs)} pairs; at least 10 are needed to train and hold some out")
    return pairs


def is_held_out(prompt: str, share: float) -> bool:
    """Split by prompt, stably: the same prompt is always on the same side."""
    digest = int(hashlib.sha256(prompt.encode()).hexdigest()[:8], 16)
    return digest / 0xFFFFFFFF < share
