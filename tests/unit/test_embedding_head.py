"""The embedding-head reward's files and its training command's checks, without the encoder
(training and the shipped heads on the real MiniLM: tests/models)."""

import pytest

from service.reward.embedding_head import load_head
from service.reward.pairs import HARD_PAIRS, PairsError, read_pairs
from service.reward.train import main


@pytest.mark.parametrize(
    "content, message",
    [
        ("", "0 pairs"),
        ('{"prompt": "p", "chosen": "a"}\n', ":1: 'rejected' must be a non-empty string"),
        ('{"prompt": "p", "chosen": "a", "rejected": "b"}\nnot json\n', ":2: not JSON"),
        ('["a", "b"]\n', ":1: expected an object"),
        ('{"prompt": "p", "chosen": "same", "rejected": "same"}\n', "the same text"),
    ],
)
def test_bad_pair_files_get_a_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(PairsError, match=message):
        read_pairs(path)
    assert main(["--pairs", str(path), "--out", str(tmp_path / "h.safetensors")]) == 2


def test_missing_pairs_file(tmp_path):
    assert main(["--pairs", str(tmp_path / "nope.jsonl"), "--out", str(tmp_path / "h.safetensors")]) == 2


def test_a_head_file_that_is_not_a_head_is_refused(tmp_path):
    from safetensors.torch import save_file
    import torch

    path = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(2)}, str(path))
    with pytest.raises(ValueError, match="not a prune reward head"):
        load_head(path)


def test_the_hard_pairs_are_length_matched_and_not_a_length_game():
    for path in HARD_PAIRS:
        pairs = read_pairs(path)
        assert len(pairs) >= 50, path.name
        words = [(len(p.chosen.split()), len(p.rejected.split())) for p in pairs]
        assert all(abs(c - r) <= 0.15 * max(c, r) for c, r in words), path.name
        assert sum(c > r for c, r in words) == len(pairs) // 2, f"{path.name}: the better text longer in half"
    assert sum(len(read_pairs(p)) for p in HARD_PAIRS) >= 300


