"""Scoring throughput of each local reward kind, by batch size.

    python -m loadtests.bench_rewards                                  # slop, embedding-head, small classifier, CPU
    python -m loadtests.bench_rewards --kinds slop,style-head,style-human,style   # the default reward models
    python -m loadtests.bench_rewards --kinds style --config deploy/local.yaml      # a config's reward models
    python -m loadtests.bench_rewards --kinds sequence-classifier --preset llama-3.1-8b --device cuda

Candidates are real texts (the shipped preference pairs, ~20-120 words). For
`sequence-classifier` the model is randomly initialised from a config (forward
speed does not depend on the weights): `smollm2-135m` (the embedded base
model's shape) or `llama-3.1-8b` (the Skywork-Reward-V2-Llama-3.1-8B shape), in
bf16 on CUDA and fp32 on CPU. Prints candidates/s and batch efficiency
(throughput at batch b over throughput at batch 1) and optionally writes CSV.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time

from loadtests.report import write_csv

PRESETS = {
    "smollm2-135m": dict(hidden_size=576, intermediate_size=1536, num_hidden_layers=30, num_attention_heads=9,
                         num_key_value_heads=3),
    "llama-3.1-8b": dict(hidden_size=4096, intermediate_size=14336, num_hidden_layers=32, num_attention_heads=32,
                         num_key_value_heads=8),
}


def texts_for_bench(count: int) -> list[str]:
    from service.reward.pairs import SHIPPED_PAIRS, read_pairs

    pairs = read_pairs(SHIPPED_PAIRS)
    texts = [t for p in pairs for t in (p.chosen, p.rejected)]
    return [texts[i % len(texts)] for i in range(count)]


def random_classifier(preset: str, device: str, max_length: int):
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForSequenceClassification

    from service.config import SequenceClassifierRewardConfig
    from service.embedded import prepare_smollm2
    from service.reward.sequence_classifier import SequenceClassifierReward

    tokenizer = AutoTokenizer.from_pretrained(prepare_smollm2())
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    config = LlamaConfig(vocab_size=max(len(tokenizer), 49152), num_labels=1,
                         pad_token_id=tokenizer.pad_token_id or tokenizer.eos_token_id, **PRESETS[preset])
    with torch.device(device):
        model = LlamaForSequenceClassification(config).to(dtype).eval()
    reward = SequenceClassifierReward(SequenceClassifierRewardConfig(path="(random)", max_length=max_length,
                                                                     batch_size=64, device=device))
    reward.model, reward.tokenizer, reward.device, reward.loaded = model, tokenizer, device, True
    return reward


def build(kind: str, args):
    from service.config import EmbeddingHeadRewardConfig, SlopRewardConfig, default_reward_models, load_serve_file
    from service.reward import make_reward_model, make_reward_models

    if kind == "slop":
        return make_reward_model(SlopRewardConfig())
    if kind == "embedding-head":
        return make_reward_model(EmbeddingHeadRewardConfig(device=args.device))
    configured = load_serve_file(args.config)[1].reward_models if args.config else default_reward_models()
    if kind in configured:  # a configured reward model by name, e.g. the `style` ensemble
        return make_reward_models(configured)[kind]
    if kind == "sequence-classifier":
        return random_classifier(args.preset, "cuda" if args.device == "cuda" else "cpu", args.max_length)
    raise SystemExit(f"unknown kind {kind}")


async def measure(model, batch: int, texts: list[str], min_seconds: float) -> float:
    """Candidates/s scoring the same pool of texts in batches of `batch`, so that
    batch sizes are compared on the same work. Each pass marks the texts with its
    number: an encoder's memo of recent texts (shared by an ensemble's heads within
    one call) never serves a text from an earlier pass."""
    from service.types import Prompt

    prompt = Prompt(text="Answer the question well.", max_tokens=128)

    def jobs(number: int):
        marked = [f"{text} ({number})" for text in texts]
        return [[(prompt, marked[i : i + batch])] for i in range(0, len(marked), batch)]

    # Warm-up over every job, not one: weights load on first use, and on CUDA each new
    # shape (batch x padded length) loads or picks kernels the first time it is seen.
    for job in jobs(0):
        await model.score_many(job)
    done, started, number = 0, time.perf_counter(), 0
    while True:
        number += 1
        for job in jobs(number):
            await model.score_many(job)
            done += len(job[0][1])
        elapsed = time.perf_counter() - started
        if elapsed >= min_seconds:
            return done / elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--kinds", default="slop,embedding-head,sequence-classifier")
    parser.add_argument("--batch-sizes", default="1,2,4,8,16,32,64")
    parser.add_argument("--preset", choices=sorted(PRESETS), default="smollm2-135m")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    parser.add_argument("--max-length", type=int, default=512)
    parser.add_argument("--seconds", type=float, default=2.0, help="minimum time per measurement")
    parser.add_argument("--config", help="a deploy/*.yaml file whose reward models --kinds may name "
                        "(default: the built-in reward models)")
    parser.add_argument("--csv")
    args = parser.parse_args()
    sizes = [int(b) for b in args.batch_sizes.split(",")]
    texts = texts_for_bench(max(sizes))
    rows = []
    for kind in args.kinds.split(","):
        model = build(kind, args)
        base = None
        for batch in sizes:
            rate = asyncio.run(measure(model, batch, texts, args.seconds))
            base = base or rate
            row = {"kind": kind, "device": args.device, "preset": args.preset if kind == "sequence-classifier" else "",
                   "batch": batch, "candidates_per_s": round(rate, 1), "batch_efficiency": round(rate / base, 2)}
            rows.append(row)
            print(row, flush=True)
    if args.csv:
        write_csv(rows, args.csv)
    return 0


if __name__ == "__main__":
    sys.exit(main())
