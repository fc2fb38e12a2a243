"""prune: best-of-N reranking of LLM completions with a style reward model."""

__version__ = "0.1.0"
