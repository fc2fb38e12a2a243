"""Named API keys and their limits."""

from __future__ import annotations

from pydantic import Field, model_validator

from service.config.base import Strict


class CallerConfig(Strict):
    """A named API key (from an environment variable, a file or plaintext) and its limits."""

    name: str = Field(
        pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$",
        description="Shown in logs and metrics instead of the key; letters, digits, '.', '_', '-'.",
    )
    key: str | None = Field(None, min_length=1, repr=False, description="The key in plaintext (discouraged).")
    key_env: str | None = Field(None, min_length=1, description="Environment variable holding the key.")
    key_file: str | None = Field(None, min_length=1, description="File holding the key, e.g. a secret mount.")
    max_concurrent: int | None = Field(None, ge=1, description="Requests in flight at once; null: unlimited.")
    tokens_per_minute: int | None = Field(
        None, ge=1, description="Tokens a request may use at most (prompt + best_of × max_tokens) are "
        "reserved from a bucket of this size refilled over a minute; unused ones come back. Null: unlimited."
    )

    @model_validator(mode="after")
    def _one_key_source(self) -> "CallerConfig":
        given = [f for f in ("key", "key_env", "key_file") if getattr(self, f) is not None]
        if len(given) != 1:
            raise ValueError(f"caller {self.name!r}: give exactly one of key, key_env, key_file (got {len(given)})")
        return self


def check_callers(callers: list[CallerConfig]) -> None:
    """Names are unique (a ServiceConfig validator may call this: it raises ValueError)."""
    seen: set[str] = set()
    for caller in callers:
        if caller.name in seen:
            raise ValueError(f"callers: name {caller.name!r} is used twice")
        seen.add(caller.name)
