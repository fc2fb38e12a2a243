"""Generators: the `Generator` interface and its implementations, picked by config."""

from __future__ import annotations

from service.config import FakeGeneratorConfig, GeneratorConfig, OpenAIGeneratorConfig, VLLMGeneratorConfig
from service.generator.base import Generator
from service.reward.catalog import RewardCatalog


def make_generator(config: GeneratorConfig, judge: RewardCatalog | None = None) -> Generator:
    """The configured generator; `judge` scores partial texts when requests prune."""
    if isinstance(config, FakeGeneratorConfig):
        from service.generator.fake import FakeGenerator

        return FakeGenerator(config, judge)
    if isinstance(config, VLLMGeneratorConfig):
        from service.generator.vllm import VLLMGenerator  # imports vllm: only where it runs

        return VLLMGenerator(config, judge)
    if isinstance(config, OpenAIGeneratorConfig):
        from service.generator.openai import OpenAIGenerator

        return OpenAIGenerator(config, judge)
    raise TypeError(f"unknown generator config {type(config).__name__}")


__all__ = ["Generator", "make_generator"]
