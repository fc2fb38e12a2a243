"""A lexical style reward: penalise AI slop, reward plain specific prose.

In the spirit of published slop indexes (EQ-Bench's slop score, antislop
sampling): count the tells of machine prose per word and subtract them. Each
component is a penalty (or bonus) already weighted, so `components` add up to
the score and a reader can see why one candidate beat another.

Components, per completion:
- `slop_phrases`:  over-used words and phrases ("delve", "rich tapestry"), per 100 words
- `hedging`:       hedges and qualifiers ("it's worth noting", "arguably"), per 100 words
- `sycophancy`:    flattering openers and service-desk closers ("Great question!")
- `not_x_but_y`:   "it's not X, it's Y" / "not just X but Y" constructions
- `list_padding`:  bullet lists and filler connectives where prose would do
- `verbosity`:     words beyond what the request asked for
- `repetition`:    repeated word trigrams (degenerate loops)
- `specificity`:   a small bonus for numbers and named things (concreteness)
- `empty`:         an empty or whitespace-only completion
"""

from __future__ import annotations

import re
from collections import Counter
from typing import Sequence

from service.config import SlopRewardConfig
from service.reward.base import RewardModel
from service.types import Prompt, Scores

SLOP_PHRASES = [
    "delve", "delves", "delving", "tapestry", "testament to", "in today's fast-paced world",
    "in the ever-evolving", "ever-evolving", "ever-changing landscape", "navigate the complexities",
    "navigating the complexities", "the realm of", "embark on", "embarking on", "a journey",
    "unleash", "unlock the", "unlocking", "elevate", "game-changer", "game changer", "seamless",
    "seamlessly", "robust", "leverage", "leveraging", "pivotal", "multifaceted", "intricate",
    "intricacies", "landscape of", "symphony of", "beacon of", "nestled", "showcasing", "underscores",
    "underscore the", "fostering", "foster a", "resonate", "resonates", "vibrant", "bustling",
    "a myriad of", "myriad", "plethora", "holistic", "synergy", "paradigm", "cutting-edge",
    "state-of-the-art", "harness the power", "the power of", "dive into", "dive deep", "deep dive",
    "at the end of the day", "in conclusion", "to sum up", "in summary", "all in all",
    "plays a crucial role", "plays a vital role", "crucial role", "vital role", "key role",
    "it is important to", "it's important to", "it is essential to", "it's essential to",
    "stands as", "serves as a", "a rich", "rich history", "rich tapestry", "treasure trove",
    "whispers", "shimmering", "palpable", "unwavering", "indelible", "profound", "captivating",
    "boundless", "transformative", "revolutionize", "revolutionizing", "empower", "empowering",
    "meticulous", "meticulously", "commendable", "noteworthy", "invaluable", "remarkable",
    "ultimately", "furthermore", "moreover", "additionally", "in essence", "essentially",
]

HEDGES = [
    "it's worth noting", "it is worth noting", "it's important to note", "it is important to note",
    "it should be noted", "arguably", "perhaps", "possibly", "potentially", "it seems", "it appears",
    "may or may not", "to some extent", "in some cases", "in many cases", "generally speaking",
    "generally", "typically", "somewhat", "relatively", "it depends", "i think", "i believe",
    "could be argued", "might be", "may be", "can be seen as", "various", "a variety of",
    "a number of", "as an ai", "as a language model", "i'm not able to", "i cannot",
]

SYCOPHANTIC_OPENERS = [
    "great question", "what a great", "what a fascinating", "excellent question", "good question",
    "certainly!", "certainly,", "absolutely!", "absolutely,", "of course!", "of course,", "sure!",
    "i'd be happy to", "i would be happy to", "i'd be delighted", "happy to help", "you're absolutely right",
    "you are absolutely right", "thank you for asking", "that's a great", "that is a great",
]

SERVICE_CLOSERS = [
    "i hope this helps", "hope this helps", "let me know if", "feel free to", "don't hesitate to",
    "if you have any other questions", "if you have any questions", "happy writing", "good luck!",
]

FILLER_CONNECTIVES = ["firstly", "secondly", "thirdly", "lastly", "finally,", "overall,", "in addition,"]

NOT_X_BUT_Y = [
    re.compile(r"\bnot (?:just|only|merely|simply) [^.;!?]{1,80}?\bbut\b", re.I),
    # "it's not X, it's Y", "this isn't about X; it's about Y", "they are not X — they are Y"
    re.compile(
        r"\b(?:it|this|that|they)(?:'s| is| was| are|'re)? ?(?:not|n't) [^.;!?,—–]{1,60}[,;—–] ?"
        r"(?:it|this|that|they)(?:'s| is| was| are|'re)\b",
        re.I,
    ),
]

BREVITY_CUES = re.compile(
    r"\b(briefly|brief|short|concise|concisely|one sentence|a sentence|one word|in a word|tl;?dr|one line|few words)\b",
    re.I,
)
WORD = re.compile(r"[A-Za-z0-9']+")
BULLET = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+", re.M)
# Numbers, and capitalised words inside a sentence (names, places), not at its start.
SPECIFIC = re.compile(r"\b\d[\d,.:%]*\b|(?<=[a-z,;:] )[A-Z][a-z]{2,}\b")

WEIGHTS = {
    "slop_phrases": 0.6,
    "hedging": 0.4,
    "sycophancy": 2.0,
    "not_x_but_y": 1.0,
    "list_padding": 0.5,
    "verbosity": 2.0,
    "repetition": 3.0,
    "specificity": 0.15,
    "empty": 10.0,
}


def _phrase_patterns(phrases: Sequence[str]) -> list[re.Pattern]:
    """One pattern per phrase, matched as whole words; compiled once at import."""
    return [re.compile(r"(?<![a-z])" + re.escape(p) + r"(?![a-z])") for p in phrases]


SLOP_PATTERNS, HEDGE_PATTERNS = _phrase_patterns(SLOP_PHRASES), _phrase_patterns(HEDGES)
OPENER_PATTERNS, CLOSER_PATTERNS = _phrase_patterns(SYCOPHANTIC_OPENERS), _phrase_patterns(SERVICE_CLOSERS)
FILLER_PATTERNS = _phrase_patterns(FILLER_CONNECTIVES)


def _count_phrases(text: str, patterns: Sequence[re.Pattern]) -> int:
    return sum(len(p.findall(text)) for p in patterns)


class SlopReward(RewardModel):
    kind = "slop"

    def __init__(self, config: SlopRewardConfig | None = None):
        self.config = config or SlopRewardConfig()

    def target_words(self, prompt: Prompt) -> int:
        if self.config.target_words:
            return self.config.target_words
        # A token is ~0.75 words; an answer that needs all of max_tokens is not verbose.
        target = int(0.75 * (prompt.max_tokens or 256))
        if BREVITY_CUES.search(prompt.last_user_text()):
            target = min(target, 40)
        return max(target, 8)

    def components(self, text: str, target_words: int) -> dict[str, float]:
        lower = text.lower()
        words = WORD.findall(lower)
        n = len(words)
        if n == 0:
            return {name: 0.0 for name in WEIGHTS} | {"empty": -WEIGHTS["empty"]}
        per100 = 100.0 / max(n, 20)  # short texts are not punished more per hit than 20-word ones
        opening, ending = lower[:80], lower[-120:]
        trigrams = Counter(zip(words, words[1:], words[2:]))
        repeated = sum(c - 1 for c in trigrams.values() if c > 1)
        bullets = len(BULLET.findall(text))
        raw = {
            "slop_phrases": _count_phrases(lower, SLOP_PATTERNS) * per100,
            "hedging": _count_phrases(lower, HEDGE_PATTERNS) * per100,
            "sycophancy": float(_count_phrases(opening, OPENER_PATTERNS) + _count_phrases(ending, CLOSER_PATTERNS)),
            "not_x_but_y": float(sum(len(p.findall(text)) for p in NOT_X_BUT_Y)),
            "list_padding": (bullets + _count_phrases(lower, FILLER_PATTERNS)) * per100 / 4,
            "verbosity": max(0.0, n / target_words - 1.0),
            "repetition": repeated / max(n - 2, 1),
            "specificity": min(len(SPECIFIC.findall(text)) * per100, 10.0),
            "empty": 0.0,
        }
        out = {name: -WEIGHTS[name] * value for name, value in raw.items()}
        out["specificity"] = WEIGHTS["specificity"] * raw["specificity"]
        return out

    def score_texts(self, prompt: Prompt, completions: Sequence[str]) -> Scores:
        target = self.target_words(prompt)
        per_text = [self.components(c, target) for c in completions]
        components = {name: [round(p[name], 4) for p in per_text] for name in WEIGHTS}
        values = [round(sum(p.values()), 4) for p in per_text]
        return Scores(values, components)

    async def score(self, prompt: Prompt, completions: Sequence[str]) -> Scores:
        return self.score_texts(prompt, completions)
