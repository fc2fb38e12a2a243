"""The vLLM generator on CUDA in bf16, with a tiny randomly initialised model.

Skipped without a CUDA GPU and the CUDA vLLM build (`make install ENGINE=gpu`).
The model is built from a config (no hub); its tokenizer is the embedded one.
"""

import asyncio

import pytest

torch = pytest.importorskip("torch")
if not torch.cuda.is_available():
    pytest.skip("needs a CUDA GPU", allow_module_level=True)
pytest.importorskip("vllm")

from service.config import VLLMGeneratorConfig  # noqa: E402
from service.embedded import prepare_smollm2  # noqa: E402
from service.generator.vllm import VLLMGenerator  # noqa: E402
from service.types import Deadline, Prompt, SamplingSpec  # noqa: E402

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    folder = tmp_path_factory.mktemp("tiny-llama")
    tokenizer = AutoTokenizer.from_pretrained(prepare_smollm2())
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=256, intermediate_size=512, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=1024,
                         eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id)
    LlamaForCausalLM(config).to(torch.bfloat16).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def test_candidates_are_sampled_and_cut_at_the_deadline_on_cuda(tiny_model):
    async def scenario():
        gen = VLLMGenerator(VLLMGeneratorConfig(model=tiny_model, dtype="bfloat16", max_model_len=1024,
                                                gpu_memory_utilization=0.3, enforce_eager=True))
        await gen.start()
        try:
            full = [c async for c in gen.generate(Prompt(text="Hello"), SamplingSpec(max_tokens=16, seed=1), 4,
                                                  Deadline.after_ms(60000))]
            cut = [c async for c in gen.generate(Prompt(text="Hello"), SamplingSpec(max_tokens=1000, seed=1), 4,
                                                 Deadline.after_ms(50))]
        finally:
            gen.shutdown()
        return full, cut

    full, cut = asyncio.run(scenario())
    assert sorted(c.index for c in full) == [0, 1, 2, 3]
    assert all(c.finished and 0 < c.completion_tokens <= 16 for c in full)
    assert len(cut) == 4 and any(not c.finished for c in cut)
