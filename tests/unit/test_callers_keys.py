"""Callers' keys: from env, file or plaintext, checked at start-up without ever printing a key, and identified per request."""

import pytest
from pydantic import ValidationError

from service.callers import (
    CallerConfig,
    Limit,
    identify,
    limits_of,
    resolve_keys,
)
from service.config import ConfigError
from service.errors import Unauthorized

SECRET = "sk-very-secret-0123456789"


def test_keys_from_env_file_and_plaintext(monkeypatch, tmp_path):
    monkeypatch.setenv("PRUNE_KEY_A", f"  {SECRET}-a\n")
    secret_file = tmp_path / "key"
    secret_file.write_text(f"{SECRET}-b\n")
    callers = [
        CallerConfig(name="team-a", key_env="PRUNE_KEY_A", max_concurrent=2),
        CallerConfig(name="team-b", key_file=str(secret_file), tokens_per_minute=1000),
        CallerConfig(name="team-c", key=f"{SECRET}-c"),
    ]
    keys = resolve_keys(callers, ["plain-1", "plain-2"])
    assert keys == {
        "plain-1": "api_keys[0]", "plain-2": "api_keys[1]",
        f"{SECRET}-a": "team-a", f"{SECRET}-b": "team-b", f"{SECRET}-c": "team-c",
    }
    assert limits_of(callers) == {"team-a": Limit(2, None), "team-b": Limit(None, 1000)}


def test_missing_env_names_the_field(monkeypatch):
    monkeypatch.delenv("PRUNE_KEY_A", raising=False)
    with pytest.raises(ConfigError) as err:
        resolve_keys([CallerConfig(name="team-a", key_env="PRUNE_KEY_A")], [])
    assert str(err.value) == "callers.team-a.key_env: environment variable PRUNE_KEY_A is not set"


def test_empty_env_is_an_error(monkeypatch):
    monkeypatch.setenv("PRUNE_KEY_A", " \n")
    with pytest.raises(ConfigError, match=r"^callers.team-a.key_env: environment variable PRUNE_KEY_A is empty$"):
        resolve_keys([CallerConfig(name="team-a", key_env="PRUNE_KEY_A")], [])


def test_missing_or_empty_file_names_the_field(tmp_path):
    missing = tmp_path / "nope"
    with pytest.raises(ConfigError) as err:
        resolve_keys([CallerConfig(name="team-b", key_file=str(missing))], [])
    assert str(err.value).startswith(f"callers.team-b.key_file: {missing}: cannot read it (")
    empty = tmp_path / "empty"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match=r"callers.team-b.key_file: .* is empty$"):
        resolve_keys([CallerConfig(name="team-b", key_file=str(empty))], [])


def test_unreadable_file_does_not_echo_its_content(tmp_path):
    binary = tmp_path / "key"
    binary.write_bytes(SECRET.encode() + b"\xff\xfe")
    with pytest.raises(ConfigError) as err:
        resolve_keys([CallerConfig(name="team-b", key_file=str(binary))], [])
    assert SECRET not in str(err.value)
    assert str(err.value) == f"callers.team-b.key_file: {binary}: cannot read it (not UTF-8 text)"


def test_duplicate_keys_and_names_are_refused_without_printing_the_key(monkeypatch):
    monkeypatch.setenv("PRUNE_KEY_A", SECRET)
    with pytest.raises(ConfigError) as err:
        resolve_keys([CallerConfig(name="team-a", key_env="PRUNE_KEY_A"), CallerConfig(name="team-b", key=SECRET)], [])
    assert str(err.value) == "callers.team-b: same key as callers.team-a; give each caller its own"
    with pytest.raises(ConfigError) as err:
        resolve_keys([CallerConfig(name="team-a", key="x1"), CallerConfig(name="team-a", key="x2")], [])
    assert str(err.value) == "callers: name 'team-a' is used twice"
    with pytest.raises(ConfigError) as err:
        resolve_keys([CallerConfig(name="team-a", key=SECRET)], ["other", SECRET])  # plain keys are checked too
    assert str(err.value) == "callers.team-a: same key as api_keys[1]; give each caller its own"
    with pytest.raises(ConfigError, match=r"^api_keys\[0\]: empty key$"):
        resolve_keys([], [" "])


@pytest.mark.parametrize("sources", [{}, {"key": "a", "key_env": "B"}, {"key_env": "B", "key_file": "/c"}])
def test_exactly_one_key_source(sources):
    with pytest.raises(ValidationError, match="give exactly one of key, key_env, key_file"):
        CallerConfig(name="team-a", **sources)


def test_config_checks_names_and_limits_and_hides_the_plaintext_key():
    for bad in ({"name": "has space", "key": "k"}, {"name": "api_keys[0]", "key": "k"},
                {"name": "a", "key": "k", "max_concurrent": 0}, {"name": "a", "key": "k", "tokens_per_minute": 0},
                {"name": "a", "key": "k", "surprise": 1}):
        with pytest.raises(ValidationError):
            CallerConfig(**bad)
    assert SECRET not in repr(CallerConfig(name="a", key=SECRET))


def test_identify():
    keys = {"k-one": "team-a", "k-two": "team-b"}
    assert identify(keys, "Bearer k-two") == "team-b"
    assert identify(keys, "Bearer  k-one ") == "team-a"
    for header in ("", "Bearer ", "Bearer k-three", "k-one", "Basic k-one", "Bearer k-on", "Bearer k-é"):
        with pytest.raises(Unauthorized) as err:
            identify(keys, header)
        assert (err.value.status, err.value.code, err.value.message) == (401, "invalid_api_key",
                                                                         "missing or invalid API key")
    assert identify({}, "") is None
    assert identify({}, "Bearer anything") is None
