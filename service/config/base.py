"""What every part of the config shares: strict models, the cache folder, the one error type."""

from __future__ import annotations

import os
from pathlib import Path

from pydantic import BaseModel, ConfigDict


class Strict(BaseModel):
    """Unknown keys are typos: reject them instead of silently ignoring them."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def cache_dir() -> Path:
    """Where converted models live: outside the repo, shared by every checkout."""
    return Path(os.environ.get("PRUNE_CACHE_DIR", Path.home() / ".cache" / "prune"))


class ConfigError(ValueError):
    """A config that cannot start the service; the message names the bad field."""
