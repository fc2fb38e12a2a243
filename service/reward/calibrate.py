"""Measure each ensemble member's scale on the reference corpus, to pin in the config.

    python -m service.reward.calibrate                       # the default reward models
    python -m service.reward.calibrate --config deploy/local.yaml

Prints, for every ensemble, its members with `mean` and `std` filled in (YAML):
paste them into the config so the scorer does not measure them at each start.
The corpus is the shipped preference texts (service/reward/data), good and bad.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

import yaml

from service.config import EnsembleRewardConfig, default_reward_models, load_serve_file
from service.reward import make_reward_models
from service.reward.ensemble import REFERENCE_TEXTS, measure_stats, reference_batch


async def calibrate(reward_models: dict) -> dict[str, list[dict]]:
    models = make_reward_models(reward_models)
    batch = reference_batch(REFERENCE_TEXTS)
    out = {}
    for name, config in reward_models.items():
        if isinstance(config, EnsembleRewardConfig):
            members = []
            for member in config.members:
                mean, std = await measure_stats(models[member.name], batch)
                members.append({"name": member.name, "weight": member.weight, "mean": mean, "std": std})
            out[name] = members
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--config", help="a deploy/*.yaml file (default: the built-in reward models)")
    args = parser.parse_args(argv)
    reward_models = load_serve_file(args.config)[1].reward_models if args.config else default_reward_models()
    for name, members in asyncio.run(calibrate(reward_models)).items():
        print(yaml.safe_dump({name: {"kind": "ensemble", "members": members}}, default_flow_style=None, sort_keys=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
