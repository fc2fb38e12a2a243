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
- `scaffolding`:   markdown a short answer does not need: headings, bold labels
                   ("**Short answer:**"), summary lines that restate ("Conclusion:", "TL;DR")
- `verbosity`:     words beyond what the request asked for
- `repetition`:    repeated word trigrams (degenerate loops)
- `specificity`:   a small bonus for numbers and named things (concreteness)
- `empty`:         an empty or whitespace-only completion

Listed words used in their literal sense are not slop: "delve" next to miners
and a lode, a woven "tapestry", "robust" next to standard errors. A listed word
with a word of its literal sense within a few words of it (LITERAL_SENSES) is
not counted.
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
    "love this", "love that", "love the idea", "great idea", "great thinking", "great choice", "nice work",
    "you're on the right track", "you are on the right track", "smart move", "good thinking",
    "this is a fun one", "fun question", "good call", "excellent choice", "great plan",
]
# Openers in all their forms: "What a lovely prompt!", "Nice, this is...", "Ooh, ..."
OPENER_FORMS = [
    re.compile(r"^\W*what an? (?:\w+ ){0,2}?(?:lovely|wonderful|great|fun|nice|fantastic|fascinating|"
               r"beautiful|delightful|thoughtful|interesting|brilliant|charming)\b"),
    re.compile(r"^\W*(?:nice|ooh|oh|wow|yes|great|love it|perfect)[,!—–]"),
]

SERVICE_CLOSERS = [
    "i hope this helps", "hope this helps", "hope that helps", "let me know if", "feel free to",
    "don't hesitate to", "if you have any other questions", "if you have any questions", "happy writing",
    "good luck!", "happy to help", "enjoy!", "have fun!", "you've got this", "you got this",
]
FIRST_SENTENCE = re.compile(r"[^.!?\n]{1,160}[.!?]")
PRAISE = re.compile(r"\b(?:love|loved|great|nice|fun|smart|sweet|lovely|thoughtful|admire|admirable|impressive|"
                    r"romantic|exciting|excited|happy|glad|popular|right|appeal|ambitio\w*|fantastic|wonderful|"
                    r"awesome|cool|brilliant|clever|excellent|perfect|delight\w*|beautiful|charming|inspir\w*|"
                    r"ha|sure|good|fascinating|interesting|proud|kind|generous)\b")
# "Happy baking!", "Happy coding!", "Happy travels!"
CLOSER_FORMS = [re.compile(r"\bhappy \w+(?:ing|s)!\W*$")]

# Listed words in their literal sense: a word of that sense within WINDOW words makes
# the use literal. Keys are word stems of SLOP_PHRASES' first words.
LITERAL_SENSES = {
    "delv": "dig|digging|dug|mine|mines|miner|miners|mining|lode|shaft|ore|tin|coal|spade|soil|earth|burrow|"
            "tunnel|excavat\\w*|cave|drawer|pocket|bag",
    "tapestr": "woven|weav\\w*|loom|thread\\w*|wool|silk|embroider\\w*|bayeux|needlework|warp|weft|hang\\w*|"
               "wall|museum|textile|stitch\\w*|medieval",
    "robust": "standard errors?|regression|estimat\\w*|statistic\\w*|outliers?|variance|heterosked\\w*|"
              "median|sample|inference|model|control|controller|optimi[sz]ation",
    "landscape": "paint\\w*|painter|canvas|orientation|portrait|garden\\w*|terrain|photograph\\w*",
    "beacon": "lighthouse|ship|ships|signal\\w*|fire|fires|hill|radio|transmit\\w*|coast\\w*|bluetooth|aircraft",
    "nestled": "bird|birds|nest|nests|egg|eggs|chick\\w*|hedge|kitten|puppy|blanket",
    "testament": "will|wills|probate|estate|bequest|executor|bible|gospel|old|new|last",
    "harness": "horse|horses|mule|dog|dogs|sled|strap\\w*|climb\\w*|rope|saddle|wiring|cable",
    "navigat": "ship|boat|sail\\w*|stars?|compass|chart|sextant|map|maps|river|sea|pilot",
    "foster": "parent\\w*|child\\w*|care|carer|adopt\\w*|kitten|puppy|home|agency",
    "vibrant": "vibrat\\w*|string|strings|frequency|oscillat\\w*|membrane|reed",
    "myriad": "greek|ten thousand|10,000|10000|count\\w*|numeral",
    "seamless": "stocking\\w*|pipe|pipes|tube|tubes|garment|knit\\w*|steel|sock|socks|gutter\\w*",
    "leverag": "debt|equity|ratio|lever|fulcrum|margin|borrow\\w*|loan|loans|capital",
    "symphon": "orchestra\\w*|movement|movements|beethoven|mozart|haydn|mahler|concerto|composer|score",
    "resonat": "frequenc\\w*|acoustic|cavity|string|pitch|vibrat\\w*|circuit|chamber",
    "pivot": "hinge|pivot|axis|rotate\\w*|basketball|table|spreadsheet|foot",
    "embark": "ship|board\\w*|passengers?|port|vessel|ferry|cruise|deck",
    "journey": "miles|km|kilomet\\w*|train|route|hours|days|road|walk\\w*|drive|flight",
    "dive": "water|pool|swim\\w*|scuba|diver|ocean|reef|board|metres|meters|feet",
    "unlock": "door|key|lock|phone|bike|padlock|safe|screen|code",
    "elevat": "elevation|leg|legs|limb|ankle|altitude|heart|bed|lift",
    "intricat": "knot|lace|carving|clockwork|gear|gears|mechanism|filigree|pattern",
    "bustling": "market|street|port|station|square",
    "underscor": "underscore character|character|variable|keyboard|_",
    "realm": "king\\w*|queen|crown|medieval|monarch\\w*|sovereign",
    "paradigm": "kuhn|conjugat\\w*|declension|verb|verbs|noun",
    "holistic": "medicine|therap\\w*|patient",
    "showcas": "museum|glass|display|cabinet",
}
LITERAL_WINDOW = 12  # words either side

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

HEADING = re.compile(r"^ {0,3}#{1,6} +\S", re.M)
BOLD_LABEL = re.compile(r"\*\*[^*\n]{1,40}?:\*\*|\*\*[^*\n]{1,40}?\*\*:")
SUMMARY_LINE = re.compile(r"^\W*(?:in conclusion|conclusion|in short|in summary|summary|tl;?dr|bottom line|"
                          r"key takeaways?|the takeaway)\b\s*[:,—–-]", re.M | re.I)
SCAFFOLDING_WORDS = 150  # up to this length an answer needs no scaffolding; longer ones are charged less

WEIGHTS = {
    "slop_phrases": 0.6,
    "hedging": 0.4,
    "sycophancy": 2.0,
    "not_x_but_y": 1.0,
    "list_padding": 0.5,
    "scaffolding": 1.0,
    "verbosity": 2.0,
    "repetition": 3.0,
    "specificity": 0.15,
    "empty": 10.0,
}


def _phrase_patterns(phrases: Sequence[str]) -> list[re.Pattern]:
    """One pattern per phrase, matched as whole words; compiled once at import."""
    return [re.compile(r"(?<![a-z])" + re.escape(p) + r"(?![a-z])") for p in phrases]


SLOP_PATTERNS, HEDGE_PATTERNS = _phrase_patterns(SLOP_PHRASES), _phrase_patterns(HEDGES)
LITERAL_PATTERNS = {stem: re.compile(r"\b(?:" + senses + r")\b") for stem, senses in LITERAL_SENSES.items()}
# Each slop phrase's stem in LITERAL_SENSES, if it has a literal sense.
PHRASE_STEMS = [next((stem for word in phrase.split() for stem in LITERAL_SENSES if word.startswith(stem)), None)
                for phrase in SLOP_PHRASES]
OPENER_PATTERNS, CLOSER_PATTERNS = _phrase_patterns(SYCOPHANTIC_OPENERS), _phrase_patterns(SERVICE_CLOSERS)
FILLER_PATTERNS = _phrase_patterns(FILLER_CONNECTIVES)


def _count_phrases(text: str, patterns: Sequence[re.Pattern]) -> int:
    return sum(len(p.findall(text)) for p in patterns)


def _is_literal(lower: str, start: int, end: int, stem: str | None) -> bool:
    """A listed word with a word of its literal sense within LITERAL_WINDOW words."""
    if stem is None:
        return False
    context = lower[:start].split()[-LITERAL_WINDOW:] + lower[end:].split()[:LITERAL_WINDOW]
    return LITERAL_PATTERNS[stem].search(" ".join(context)) is not None


def count_slop(lower: str) -> int:
    """Slop phrases used as slop: literal uses ("delve" into a lode) are not counted."""
    return sum(1 for pattern, stem in zip(SLOP_PATTERNS, PHRASE_STEMS) for m in pattern.finditer(lower)
               if not _is_literal(lower, m.start(), m.end(), stem))


def _exclaimed_praise(lower: str) -> bool:
    """A short first sentence that exclaims about the asker or their idea ("Love the ambition!",
    "Smart to reuse what you have!", "That sounds so romantic!") before the answer."""
    first = FIRST_SENTENCE.match(lower.lstrip())
    return bool(first and first.group(0).endswith("!") and len(first.group(0).split()) <= 16
                and PRAISE.search(first.group(0)))


def count_flattery(lower: str) -> int:
    """Flattering openers (first 80 characters) and service-desk closers (last 120)."""
    opening, ending = lower[:80], lower[-120:].rstrip()
    openers = (_count_phrases(opening, OPENER_PATTERNS) or sum(1 for p in OPENER_FORMS if p.search(opening))
               or int(_exclaimed_praise(lower)))
    closers = _count_phrases(ending, CLOSER_PATTERNS) or sum(1 for p in CLOSER_FORMS if p.search(ending))
    return openers + closers


def count_scaffolding(text: str) -> int:
    return len(HEADING.findall(text)) + len(BOLD_LABEL.findall(text)) + len(SUMMARY_LINE.findall(text))


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
        trigrams = Counter(zip(words, words[1:], words[2:]))
        repeated = sum(c - 1 for c in trigrams.values() if c > 1)
        bullets = len(BULLET.findall(text))
        raw = {
            "slop_phrases": count_slop(lower) * per100,
            "hedging": _count_phrases(lower, HEDGE_PATTERNS) * per100,
            "sycophancy": float(count_flattery(lower)),
            "not_x_but_y": float(sum(len(p.findall(text)) for p in NOT_X_BUT_Y)),
            "list_padding": (bullets + _count_phrases(lower, FILLER_PATTERNS)) * per100 / 4,
            "scaffolding": count_scaffolding(text) * min(1.0, SCAFFOLDING_WORDS / n),
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
