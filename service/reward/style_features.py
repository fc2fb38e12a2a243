"""Interpretable style features of a text, after the LAMP taxonomy of what editors fix.

Each feature is a rate or a ratio a reader can check by hand, so a learned weight on
it says something: "this judge dislikes clichés per 100 words". The categories are
LAMP's (Chakrabarty et al. 2025): clichés, unnecessary exposition, purple prose,
poor sentence structure, lack of specificity, awkward word choice. None depends on
length alone: every count is per 100 words or per sentence, so two texts of the same
style and different lengths get the same features.
"""

from __future__ import annotations

import math
import re
from typing import Sequence

from service.reward.slop import HEDGES, SLOP_PHRASES, _count_phrases, _phrase_patterns

# Phrases editors cut as cliché in LLM fiction and prose (beyond the slop lexicon's words).
CLICHES = [
    "a sense of", "the weight of", "couldn't help but", "could not help but", "sent shivers", "a wave of",
    "a flicker of", "a pang of", "a surge of", "a mix of", "a mixture of", "as if", "as though",
    "little did", "in that moment", "in the moment", "for what felt like", "a reminder that", "a reminder of",
    "the air was thick", "hung in the air", "heart raced", "heart pounded", "breath caught", "eyes widened",
    "a smile tugged", "tugged at", "lingered", "echoed", "every fiber", "time seemed to", "the silence",
    "a newfound", "a deep breath", "their eyes met", "unspoken", "the world around", "a stark contrast",
    "in stark contrast", "the intricate dance", "dance of", "the promise of", "a glimmer of", "a beacon",
]
# Closing moves that tell the reader what the scene meant (LAMP: unnecessary exposition).
EXPOSITION = [
    "in the end", "it was a reminder", "he realized", "she realized", "they realized", "i realized",
    "it was clear that", "he knew that", "she knew that", "for the first time", "it wasn't just",
    "it was not just", "more than just", "it was about", "this was", "somehow", "finally understood",
    "which meant", "in a way", "a testament", "was a symbol", "symbolized", "represented",
]
ABSTRACT_SUFFIX = re.compile(r"\b[a-z]{4,}(?:ness|ity|tion|sion|ment|ance|ence|hood|ship|ism)s?\b")
ADVERB = re.compile(r"\b[a-z]{3,}ly\b")
NOT_ADVERBS = {"only", "family", "early", "likely", "reply", "apply", "supply", "belly", "holy", "ugly", "daily",
               "fly", "july", "italy", "lovely", "friendly", "lonely", "silly", "jelly", "rely", "ally", "bully"}
SENTENCE = re.compile(r"[^.!?]+[.!?]+[\"')\]]*|[^.!?]+$")
WORD = re.compile(r"[A-Za-z][A-Za-z'\-]*|\d+(?:[.,]\d+)*")
PROPER_MID = re.compile(r"(?<=[a-z,;] )[A-Z][a-z]+")
PARTICIPLE_TAIL = re.compile(r", [a-z]+ing\b")

NAMES = [
    "cliches", "slop_words", "hedges", "exposition", "abstract_nouns", "adverbs", "similes", "participle_tails",
    "em_dashes", "semicolons", "mean_sentence_words", "sentence_length_cv", "short_sentences", "long_sentences",
    "type_token_ratio", "long_words", "specifics", "dialogue", "first_person", "questions",
]
_CLICHES, _EXPOSITION = _phrase_patterns(CLICHES), _phrase_patterns(EXPOSITION)
_SLOP, _HEDGES = _phrase_patterns(SLOP_PHRASES), _phrase_patterns(HEDGES)


def features(text: str) -> list[float]:
    """One value per name in NAMES; an empty text gives zeros."""
    words = WORD.findall(text)
    n = len(words)
    if n == 0:
        return [0.0] * len(NAMES)
    lower = text.lower()
    per100 = 100.0 / n
    sentences = [s for s in (m.group().strip() for m in SENTENCE.finditer(text)) if WORD.search(s)]
    lengths = [len(WORD.findall(s)) for s in sentences] or [n]
    mean = sum(lengths) / len(lengths)
    std = math.sqrt(sum((x - mean) ** 2 for x in lengths) / len(lengths))
    lowered = [w.lower() for w in words]
    values = {
        "cliches": _count_phrases(lower, _CLICHES) * per100,
        "slop_words": _count_phrases(lower, _SLOP) * per100,
        "hedges": _count_phrases(lower, _HEDGES) * per100,
        "exposition": _count_phrases(lower, _EXPOSITION) * per100,
        "abstract_nouns": len(ABSTRACT_SUFFIX.findall(lower)) * per100,
        "adverbs": sum(1 for w in ADVERB.findall(lower) if w not in NOT_ADVERBS) * per100,
        "similes": (lower.count(" like a ") + lower.count(" like the ")) * per100,
        "participle_tails": len(PARTICIPLE_TAIL.findall(lower)) * per100,
        "em_dashes": (text.count("\u2014") + text.count(" - ") + text.count("--")) * per100,
        "semicolons": text.count(";") * per100,
        "mean_sentence_words": mean / 10.0,
        "sentence_length_cv": std / mean if mean else 0.0,
        "short_sentences": sum(1 for x in lengths if x <= 6) / len(lengths),
        "long_sentences": sum(1 for x in lengths if x >= 30) / len(lengths),
        # Vocabulary variety on the first 100 words, so that length does not lower it.
        "type_token_ratio": len(set(lowered[:100])) / min(n, 100),
        "long_words": sum(1 for w in words if len(w) >= 9) * per100 / 10.0,
        "specifics": (len(PROPER_MID.findall(text)) + sum(1 for w in words if w[0].isdigit())) * per100 / 10.0,
        "dialogue": min(text.count('"') + text.count("\u201c"), 20) * per100,
        "first_person": sum(1 for w in lowered if w in ("i", "me", "my", "we", "our")) * per100 / 10.0,
        "questions": text.count("?") * per100,
    }
    return [round(values[name], 4) for name in NAMES]


def feature_rows(texts: Sequence[str]) -> list[list[float]]:
    return [features(t) for t in texts]
