"""Reward models on CUDA: bf16 sequence classifier and the embedding head. Skipped without a GPU."""

import asyncio

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)

from service.config import EmbeddingHeadRewardConfig, SequenceClassifierRewardConfig  # noqa: E402
from service.reward.embedding_head import EmbeddingHeadReward  # noqa: E402
from service.reward.sequence_classifier import SequenceClassifierReward  # noqa: E402
from service.types import Prompt  # noqa: E402
from tests.tiny_models import tiny_reward_model  # noqa: E402

pytestmark = pytest.mark.gpu
PROMPT = Prompt(text="How do I keep bread fresh?")
TEXTS = ["Freeze it sliced.", "Great question! It depends.", "Paper bag, two days, then the freezer."]


@pytest.fixture(scope="module")
def tiny_classifier(tmp_path_factory):
    return tiny_reward_model(tmp_path_factory.mktemp("tiny-rm"), hidden_size=128)


def test_sequence_classifier_runs_bf16_on_cuda_and_batches_consistently(tiny_classifier):
    model = SequenceClassifierReward(SequenceClassifierRewardConfig(path=tiny_classifier, batch_size=2))
    together = asyncio.run(model.score(PROMPT, TEXTS)).values
    assert model.device == "cuda" and model.model.dtype == torch.bfloat16
    alone = [asyncio.run(model.score(PROMPT, [t])).values[0] for t in TEXTS]
    assert together == pytest.approx(alone, abs=0.05)  # bf16: padding changes rounding, not the answer


def test_embedding_head_on_cuda_scores_as_on_the_cpu():
    texts = ["Great question! It's worth noting it depends. I hope this helps!",
             "Keep it in a paper bag for two days, then freeze it sliced.", *TEXTS]
    on_cuda = EmbeddingHeadReward(EmbeddingHeadRewardConfig(device="auto"))
    on_cpu = EmbeddingHeadReward(EmbeddingHeadRewardConfig(device="cpu"))
    cuda_scores = asyncio.run(on_cuda.score(PROMPT, texts)).values
    assert on_cuda.encoder.device == "cuda"
    # Same encoder in fp32 on both: the GPU ranks as the CPU does (fp32 kernels differ in rounding only).
    assert cuda_scores == pytest.approx(asyncio.run(on_cpu.score(PROMPT, texts)).values, abs=0.02)
    assert len(set(cuda_scores)) == len(texts)
