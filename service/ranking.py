"""The one ranking rule of candidates, wherever they are compared: selection (the
answer), the commit point (a stream's leaders) and pruning (who goes first).

Best first:
1. a degenerate text last: fewer than `min_chars` characters besides whitespace (empty,
   a stray token), or, when JSON was asked for and the text is final, JSON that does
   not parse (cut short: the grammar's promise broken);
2. then the higher reward, a cut text's adjusted by how much the reward model
   overrates cut texts (service.partials);
3. then the earlier candidate, so results are deterministic for a given set.
"""

from __future__ import annotations

import json
from typing import NamedTuple

from service.partials import PartialOffsets, adjustment


class Ranking(NamedTuple):
    """How to rank a request's candidates."""

    min_chars: int = 1
    offsets: PartialOffsets | None = None
    wants_json: bool = False  # texts still growing (commit, pruning) cannot parse yet: leave it False there

    def is_degenerate(self, text: str) -> bool:
        if self.wants_json and not parses_as_json(text):
            return True
        return len(text.strip()) < self.min_chars

    def key(self, index: int, text: str, score: float, finished: bool = True, tokens: int = 0) -> tuple:
        """Sort key, best first."""
        return self.is_degenerate(text), -(score + adjustment(self.offsets, finished, tokens)), index


def parses_as_json(text: str) -> bool:
    try:
        json.loads(text)
    except ValueError:
        return False
    return True
