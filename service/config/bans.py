"""Named ban lists: words and phrases the engine never samples."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, PrivateAttr, model_validator

from service.config.base import Strict
from service.lexicon import BAN_WORDS


MAX_BAD_WORDS = 64


class BanListConfig(Strict):
    """Words and phrases candidates are never sampled with (vLLM's `bad_words`): slop
    banned at the source, so the reward model chooses among what is left."""

    lexicon: Literal["slop"] | None = Field(
        None, description="slop: the slop reward's 30 commonest single-word tells (service/lexicon.py BAN_WORDS)."
    )
    words: list[str] = Field(default_factory=list, description="More words or phrases to ban.")
    _resolved: tuple[str, ...] | None = PrivateAttr(None)

    @model_validator(mode="after")
    def _within_the_engines_limit(self) -> "BanListConfig":
        if len(self.resolve()) > MAX_BAD_WORDS:
            raise ValueError(f"at most {MAX_BAD_WORDS} words with their capitalised forms")
        return self

    def resolve(self) -> tuple[str, ...]:
        if self._resolved is None:  # every request asks: worked out once (the config is never changed)
            self._resolved = self._resolve()
        return self._resolved

    def _resolve(self) -> tuple[str, ...]:
        words = list(self.words)
        if self.lexicon == "slop":
            words += BAN_WORDS
        # Each as written and capitalised (a sentence may start with it); vLLM bans the token sequences.
        return tuple(dict.fromkeys(form for w in words if w.strip() for form in (w, w[:1].upper() + w[1:])))
