"""Ban lists resolved into the words the engine bans, and the slop lexicon's single-word
tells they may name (plain data, no configuration)."""

from __future__ import annotations

from typing import Iterable

# The single-word tells banned at the source by a `lexicon: slop` ban list (service.config.bans.BanListConfig).
# The engine bans at most 128 token sequences per request, each word twice (with and without a leading
# space), and the ban list adds each word capitalised: 30 words leave room for a request's own. Chosen
# from slop.SLOP_PHRASES by what models reach for: `python -m loadtests.mine_tells` on the embedded SmolLM2
# (320 candidates, docs/perf/tells_smollm2.csv) found vibrant, nestled, bustling, intricate, testament,
# remarkable and additionally the commonest, so nestled, remarkable, ultimately and additionally took
# the places of four it never used (synergy, holistic, plethora, leveraging).
BAN_WORDS = [
    "delve", "delves", "delving", "tapestry", "testament", "realm", "embark", "unleash", "elevate", "seamless",
    "seamlessly", "robust", "leverage", "nestled", "pivotal", "multifaceted", "intricate", "showcasing",
    "underscores", "fostering", "resonate", "vibrant", "bustling", "myriad", "remarkable", "ultimately",
    "additionally", "paradigm", "transformative", "meticulous",
]

LEXICONS = {"slop": BAN_WORDS}


def ban_words(words: Iterable[str], lexicon: str | None = None) -> tuple[str, ...]:
    """A ban list's words and its lexicon's, each as written and capitalised (a sentence may
    start with it), once each; vLLM bans their token sequences."""
    every = [*words, *LEXICONS.get(lexicon, [])] if lexicon else list(words)
    return tuple(dict.fromkeys(form for w in every if w.strip() for form in (w, w[:1].upper() + w[1:])))
