"""Generators: the `Generator` interface and its implementations, picked by config."""

from __future__ import annotations

from service.config import FakeGeneratorConfig, GeneratorConfig, VLLMGeneratorConfig
from service.generator.base import Generator


def make_generator(config: GeneratorConfig) -> Generator:
    if isinstance(config, FakeGeneratorConfig):
        from service.generator.fake import FakeGenerator

        return FakeGenerator(config)
    if isinstance(config, VLLMGeneratorConfig):
        from service.generator.vllm import VLLMGenerator  # imports vllm: only where it runs

        return VLLMGenerator(config)
    raise TypeError(f"unknown generator config {type(config).__name__}")


__all__ = ["Generator", "make_generator"]
