"""The README's first request and the answer it shows, from a running service (the
embedded default, `make serve`):

    python -m loadtests.readme_example                      # prints the answer as the README shows it
    python -m loadtests.readme_example --write README.md    # and puts it in the README

The e2e suite sends the same request to the embedded default and checks that the
README shows what it answers (tests/e2e), so the two cannot drift apart.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import httpx

FIRST_REQUEST = {
    "model": "smollm2-135m-instruct",
    "messages": [{"role": "user", "content": "Give me one tip for writing a clear email."}],
    "max_tokens": 48,
    "best_of": 4,
    "seed": 7,
    "return_candidates": True,
}
START, END = "<!-- first-answer -->", "<!-- /first-answer -->"
VOLATILE = ("id", "created")  # and reranking's clock readings:
VOLATILE_RERANKING = ("elapsed_ms", "deadline_ms", "timings")


def shown(answer: dict) -> dict:
    """The answer as the README shows it: without what changes on every call."""
    view = {k: v for k, v in answer.items() if k not in VOLATILE}
    view["reranking"] = {k: v for k, v in answer["reranking"].items() if k not in VOLATILE_RERANKING}
    return view


def ask(url: str) -> dict:
    response = httpx.post(f"{url}/v1/chat/completions", json=FIRST_REQUEST, timeout=120)
    response.raise_for_status()
    return shown(response.json())


def block(view: dict) -> str:
    return f"{START}\n```json\n{json.dumps(view, indent=2, ensure_ascii=False)}\n```\n{END}"


def readme_answer(readme: str) -> dict:
    """The answer the README shows."""
    found = re.search(re.escape(START) + r"\n```json\n(.*?)\n```\n" + re.escape(END), readme, re.S)
    if found is None:
        raise ValueError(f"no {START} block")
    return json.loads(found.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m loadtests.readme_example", description=__doc__.split("\n")[0])
    parser.add_argument("--url", default="http://127.0.0.1:8000")
    parser.add_argument("--write", type=Path, help="the README to put the answer in (between its markers)")
    args = parser.parse_args(argv)
    view = ask(args.url)
    print(block(view))
    if args.write:
        text = args.write.read_text()
        if START not in text or END not in text:
            raise SystemExit(f"{args.write}: no {START} ... {END} markers to put the answer between")
        start, end = text.index(START), text.index(END) + len(END)
        args.write.write_text(text[:start] + block(view) + text[end:])
    return 0


if __name__ == "__main__":
    sys.exit(main())
