"""The `sequence-classifier` reward: a Hugging Face AutoModelForSequenceClassification
reward model (e.g. the Skywork-Reward-V2 family) from a local folder.

(prompt, completion) goes through the model's chat template as a user turn and an
assistant turn; the score is the raw logit of the first label. Batches are sorted
by length so padding stays small; inputs longer than `max_length` are truncated.
bf16 on CUDA when present, fp32 on CPU.
"""

from __future__ import annotations

from service.config import SequenceClassifierRewardConfig
from service.reward.base import DeviceRewardModel
from service.reward.encoder import pick_device
from service.types import Prompt


def conversation(prompt: Prompt, completion: str) -> list[dict[str, str]]:
    turns = [dict(m) for m in prompt.messages] if prompt.messages is not None else [{"role": "user", "content": prompt.text}]
    return turns + [{"role": "assistant", "content": completion}]


class SequenceClassifierReward(DeviceRewardModel):
    kind = "sequence-classifier"

    def __init__(self, config: SequenceClassifierRewardConfig):
        self.config = config
        self.model = None
        self.tokenizer = None
        self.device = "cpu"

    def load(self) -> None:
        import torch
        from transformers import AutoModelForSequenceClassification, AutoTokenizer

        self.device = pick_device(self.config.device)
        dtype = self.config.dtype
        if dtype == "auto":
            dtype = "bfloat16" if self.device == "cuda" else "float32"
        self.tokenizer = AutoTokenizer.from_pretrained(self.config.path)
        if self.tokenizer.pad_token is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.model = AutoModelForSequenceClassification.from_pretrained(
            self.config.path, dtype=getattr(torch, dtype)
        ).to(self.device).eval()
        if self.model.config.pad_token_id is None:
            self.model.config.pad_token_id = self.tokenizer.pad_token_id

    def token_ids(self, prompt: Prompt, completion: str) -> list[int]:
        chat = conversation(prompt, completion)
        if self.tokenizer.chat_template:
            text = self.tokenizer.apply_chat_template(chat, tokenize=False)
            ids = self.tokenizer(text, add_special_tokens=False)["input_ids"]
        else:  # a classifier without a template scores the plain text pair
            ids = self.tokenizer(prompt.last_user_text(), completion)["input_ids"]
        # Keep the end: the completion is what is being judged.
        return ids[-self.config.max_length :]

    def score_pairs(self, pairs: list[tuple[Prompt, str]]) -> list[float]:
        import torch

        sequences = [self.token_ids(prompt, completion) for prompt, completion in pairs]
        order = sorted(range(len(sequences)), key=lambda i: len(sequences[i]))
        values = [0.0] * len(sequences)
        pad = self.tokenizer.pad_token_id
        with torch.inference_mode():
            for start in range(0, len(order), self.config.batch_size):
                chunk = order[start : start + self.config.batch_size]
                width = max(len(sequences[i]) for i in chunk)
                # Right padding: the classification head reads the last non-pad token.
                ids = torch.full((len(chunk), width), pad, dtype=torch.long)
                mask = torch.zeros((len(chunk), width), dtype=torch.long)
                for row, i in enumerate(chunk):
                    ids[row, : len(sequences[i])] = torch.tensor(sequences[i])
                    mask[row, : len(sequences[i])] = 1
                logits = self.model(input_ids=ids.to(self.device), attention_mask=mask.to(self.device)).logits
                for row, i in enumerate(chunk):
                    values[i] = float(logits[row, 0].float())
        return values
