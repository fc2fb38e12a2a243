"""Named ban lists: words and phrases the engine never samples."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from service.config.base import Strict
from service.lexicon import ban_words

MAX_BAD_WORDS = 64


class BanListConfig(Strict):
    """Words and phrases candidates are never sampled with (vLLM's `bad_words`): slop
    banned at the source, so the reward model chooses among what is left."""

    lexicon: Literal["slop"] | None = Field(
        None, description="slop: the slop reward's 30 commonest single-word tells (service/lexicon.py BAN_WORDS)."
    )
    words: list[str] = Field(default_factory=list, description="More words or phrases to ban.")

    @model_validator(mode="after")
    def _within_the_engines_limit(self) -> "BanListConfig":
        if len(ban_words(self.words, self.lexicon)) > MAX_BAD_WORDS:
            raise ValueError(f"at most {MAX_BAD_WORDS} words with their capitalised forms")
        return self
