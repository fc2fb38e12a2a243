"""Train an `embedding-head` style reward from your own preference pairs, or from LAMP's.

    python -m service.reward.train --pairs PAIRS.jsonl --out HEAD.safetensors
    python -m service.reward.train --lamp PATH      # the shipped `style-human` head + `style` weights

With `--lamp`, PATH is a local clone of github.com/salesforce/creativity_eval: see
service/reward/train_lamp.py. Otherwise:

PAIRS.jsonl has one JSON object per line: {"prompt", "chosen", "rejected"} (other
keys are kept as-is and ignored). A held-out share of the prompts (never seen in
training) measures pairwise accuracy: how often the head scores `chosen` above
`rejected`. Point a config at the result:

    reward_models:
      mine: {kind: embedding-head, head: /path/to/HEAD.safetensors}
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from service.reward.embedding_head import features, make_head, save_head
from service.reward.encoder import EMBEDDED_MINILM
from service.reward.pairs import HARD_PAIRS, HOLDOUT, SHIPPED_PAIRS, Pair, PairsError, is_held_out, read_pairs

def pairwise_accuracy(head, chosen_x, rejected_x) -> float:
    import torch

    if len(chosen_x) == 0:
        return float("nan")
    with torch.inference_mode():
        margin = head(chosen_x).squeeze(-1) - head(rejected_x).squeeze(-1)
    return (margin > 0).float().mean().item()


def train(
    pairs: list[Pair],
    *,
    encoder_name: str = EMBEDDED_MINILM,
    holdout: float = HOLDOUT,
    hidden: int = 0,
    epochs: int = 400,
    lr: float = 0.01,
    weight_decay: float = 0.01,
    seed: int = 0,
    log=print,
):
    """Fit a head with the Bradley-Terry loss -log sigmoid(r(chosen) - r(rejected))."""
    import torch

    from service.reward.encoder import ENCODERS

    torch.manual_seed(seed)
    encoder = ENCODERS.get(encoder_name, "cpu")
    prompts = [p.prompt for p in pairs]
    chosen = features(encoder, prompts, [p.chosen for p in pairs])
    rejected = features(encoder, prompts, [p.rejected for p in pairs])
    test = torch.tensor([is_held_out(p.prompt, holdout) for p in pairs])
    if test.all() or not test.any():
        raise PairsError("the held-out split left one side empty; use more pairs or another --holdout")
    head = make_head(chosen.shape[1], hidden)
    optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=weight_decay)
    train_c, train_r = chosen[~test], rejected[~test]
    for epoch in range(epochs):
        optimizer.zero_grad()
        margin = head(train_c).squeeze(-1) - head(train_r).squeeze(-1)
        loss = -torch.nn.functional.logsigmoid(margin).mean()
        loss.backward()
        optimizer.step()
        if (epoch + 1) % max(epochs // 4, 1) == 0:
            log(f"epoch {epoch + 1}: loss {loss.item():.4f}")
    head.eval()
    result = {
        "encoder": encoder_name,
        "in_dim": chosen.shape[1],
        "hidden": hidden,
        "pairs_train": int((~test).sum()),
        "pairs_heldout": int(test.sum()),
        "train_accuracy": round(pairwise_accuracy(head, train_c, train_r), 4),
        "heldout_accuracy": round(pairwise_accuracy(head, chosen[test], rejected[test]), 4),
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    return head, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.reward.train", description=__doc__.split("\n")[0])
    parser.add_argument("--pairs", type=Path, nargs="+", default=[SHIPPED_PAIRS, *HARD_PAIRS],
                        help="JSONL preference pairs (default: the shipped easy and hard sets); with --lamp, the "
                        "pairs trained beside LAMP's (their training prompts)")
    parser.add_argument("--lamp", type=Path, help="a clone of salesforce/creativity_eval: train on LAMP's expert "
                        "judgements beside --pairs (and fit the style ensemble's weights)")
    parser.add_argument("--out", type=Path, help="head file to write (.safetensors); with --lamp the default is "
                        "the shipped style-human head")
    parser.add_argument("--no-ensemble", action="store_true", help="with --lamp: skip fitting the ensemble weights")
    parser.add_argument("--encoder", default=EMBEDDED_MINILM)
    parser.add_argument("--holdout", type=float, default=HOLDOUT, help="share of prompts held out for accuracy")
    parser.add_argument("--hidden", type=int, default=0, help="hidden units; 0 is a linear head")
    parser.add_argument("--epochs", type=int, default=400)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if not 0 < args.holdout < 1:
        parser.error("--holdout must be between 0 and 1")
    if args.lamp is not None:
        return train_from_lamp(args)
    if args.out is None:
        parser.error("--out is required (the head file to write)")
    try:
        pairs = [pair for path in args.pairs for pair in read_pairs(path)]
        started = time.time()
        head, result = train(pairs, encoder_name=args.encoder, holdout=args.holdout, hidden=args.hidden,
                             epochs=args.epochs, seed=args.seed)
    except PairsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result["source"] = ", ".join(path.name for path in args.pairs)
    save_head(head, args.out, result)
    print(f"{len(pairs)} pairs, trained in {time.time() - started:.1f} s")
    print(f"train accuracy {result['train_accuracy']:.3f}  held-out accuracy {result['heldout_accuracy']:.3f} "
          f"({result['pairs_heldout']} held-out pairs)")
    print(f"wrote {args.out}")
    return 0


def train_from_lamp(args) -> int:
    import yaml

    from service.reward.embedding_head import SHIPPED_HEADS
    from service.reward.lamp import LampError
    from service.reward.train_lamp import fit_ensemble, own_training_pairs, split_lamp, train_human_head

    out = args.out or SHIPPED_HEADS / "style-human.safetensors"
    try:
        split = split_lamp(args.lamp)
        own = own_training_pairs(args.pairs)
    except (LampError, PairsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(f"LAMP: {len(split.train)} training paragraphs ({len(split.train_pairs)} pairs), {len(split.val)} "
          f"validation ({len(split.val_pairs)} pairs), {len(split.cross)} cross-source pairs; with the project's "
          "training pairs")
    head, result, data = train_human_head(split, own, encoder_name=args.encoder, epochs=args.epochs,
                                          seed=args.seed)
    save_head(head, out, result)
    print(f"trained in {result['seconds']} s: train accuracy {result['train_accuracy']:.3f}, validation "
          f"{result['heldout_accuracy']:.3f}, Spearman {result['heldout_spearman']:.3f}, "
          f"cross-source {result['cross_source_accuracy']:.3f}")
    print(f"wrote {out}")
    if not args.no_ensemble:
        members = fit_ensemble(out, data, epochs=args.epochs, seed=args.seed)
        print("the style ensemble, fit on the training sides (paste into deploy/*.yaml and service/config/rewards.py):")
        print(yaml.safe_dump({"style": {"kind": "ensemble", "members": members}}, default_flow_style=None,
                             sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
