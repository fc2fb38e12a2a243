"""Tiny randomly initialised models built from configs (no hub), with the embedded
SmolLM2 tokenizer and its chat template."""

from pathlib import Path


def tiny_reward_model(folder: Path, hidden_size: int = 64) -> str:
    """A Llama sequence classifier with one label: the shape of a reward model."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from service.embedded import prepare_smollm2

    tokenizer = AutoTokenizer.from_pretrained(prepare_smollm2())
    torch.manual_seed(0)
    config = LlamaConfig(vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=2 * hidden_size,
                         num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2, num_labels=1,
                         pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id)
    LlamaForSequenceClassification(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)
