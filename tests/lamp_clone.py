"""A small synthetic clone of LAMP (salesforce/creativity_eval) in its file layout.

No text of the real dataset is in the suite: the paragraphs are written here, and the
"expert" prefers the plain edit to the padded draft.
"""

import json
import random

from service.reward import lamp

COMMON = "the and was of to in".split()
STEMS = ("oak pier lamp coat fern rail jar mule kiln reed moth gate silt barn hull wick plum dusk tarn loam sail "
         "rope tide gull keel mast buoy cove reef wharf").split()
PADDING = ["a sense of", "the weight of", "palpable", "as if", "in that moment", "a testament to", "unspoken"]


def paragraph(rng: random.Random, topic: list[str], padded: bool) -> str:
    sentences = []
    for i in range(6):
        words = rng.sample(topic, 8) + rng.sample(COMMON, 2)
        rng.shuffle(words)
        if padded:
            words = [PADDING[(i + len(sentences)) % len(PADDING)], *words, "somehow", PADDING[i % len(PADDING)]]
        else:
            words = [*words, str(rng.randint(2, 90))]
        sentences.append(" ".join(words).capitalize() + ".")
    return " ".join(sentences)


def chat_record(text: str, score: int) -> str:
    user = f"You are given a paragraph.\n\nParagraph:\n{text}\n\nYou must produce your answer in JSON."
    return json.dumps({"messages": [{"role": "system", "content": "s"}, {"role": "user", "content": user},
                                    {"role": "assistant", "content": json.dumps({"score": score})}]})


def write_lamp_clone(root):
    """A directory shaped like salesforce/creativity_eval, with 60 source groups."""
    rng = random.Random(7)
    lines = []
    for g in range(60):
        topic = [f"{chr(97 + g % 26)}{chr(97 + g // 26)}{stem}" for stem in STEMS]
        lines.append(chat_record(paragraph(rng, topic, padded=True), rng.choice([2, 3, 4])))
        lines.append(chat_record(paragraph(rng, topic, padded=False), rng.choice([6, 7, 8])))
    ratings = root / lamp.RATINGS
    ratings.parent.mkdir(parents=True)
    ratings.write_text("\n".join(lines) + "\n")
    # Files the reader must never open: unreadable as JSON, so opening one would fail.
    for held_out in ("WritingRewards/WQ-benchmark-data/wq_benchmark.json",
                     "WritingRewards/training/Llama/data/lamp-R/test_dataset.json"):
        (root / held_out).parent.mkdir(parents=True, exist_ok=True)
        (root / held_out).write_text("not json")
    reannotation = root / lamp.REANNOTATION
    reannotation.mkdir(parents=True)
    topic = [f"zz{stem}" for stem in STEMS]
    reannotation.joinpath("W1_edits.json").write_text(json.dumps(
        [{"instruction": "Write", "preedit": paragraph(rng, topic, True), "postedit": paragraph(rng, topic, False)}]))
    batch = root / lamp.RANKINGS / "batch1"
    batch.mkdir(parents=True)
    versions = [paragraph(rng, topic, True), paragraph(rng, topic, False), paragraph(rng, topic, True) + " More."]
    batch.joinpath("w.json").write_text(json.dumps(
        [{"instruction_id": 1, "instruction": "Write", "responses": versions, "mapping": {}}]))
    batch.joinpath("w_rankings.json").write_text(json.dumps(
        [{"instruction_id": 1, "rank_1": "Response 2", "rank_2": "Response 1", "rank_3": "Response 3"}]))
    return root
