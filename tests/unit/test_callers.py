"""Callers: keys from env/file/plaintext, identification, and the shared ledger's limits on a fake clock."""

import asyncio
import pickle
import time

import pytest
from pydantic import ValidationError

from service import errors

from service.callers import (
    STALE_AFTER_S,
    CallerConfig,
    CallerLedger,
    CallerLimits,
    Limit,
    TooManyRequests,
    identify,
    limits_of,
    resolve_keys,
)
from service.config import ConfigError
from service.errors import BadRequest, Unauthorized

NOW = 1_000.0
SECRET = "sk-very-secret-0123456789"



@pytest.fixture(autouse=True)
def exact_retry_after(monkeypatch):
    """The predicted Retry-After, without the jitter that spreads clients (tested in test_admission)."""
    monkeypatch.setattr(errors, "RETRY_JITTER", 0.0)


def run(coro):
    return asyncio.run(coro)


def ledger(**limits) -> CallerLedger:
    return CallerLedger({name: Limit(**lim) for name, lim in limits.items()})


# --- keys ------------------------------------------------------------------


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


# --- identify --------------------------------------------------------------


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


# --- the ledger: concurrency -----------------------------------------------


def test_concurrency_limit_and_retry_after_from_the_earliest_expected_end():
    book = ledger(a=dict(max_concurrent=2))

    async def scenario():
        first = await book.acquire("a", 10, expected_end=NOW + 30, now=NOW)
        await book.acquire("a", 10, expected_end=NOW + 12.2, now=NOW)
        with pytest.raises(TooManyRequests) as err:
            await book.acquire("a", 10, expected_end=NOW + 30, now=NOW + 2)
        assert (err.value.status, err.value.type, err.value.code) == (429, "rate_limit_error", "concurrency_limit")
        assert err.value.headers == {"Retry-After": "11", "retry-after-ms": "10200"}  # NOW + 12.2 - (NOW + 2)
        assert "2 requests in flight" in err.value.message
        await book.release(first, 10, now=NOW + 3)
        await book.acquire("a", 10, expected_end=NOW + 30, now=NOW + 3)  # the slot is free again
        with pytest.raises(TooManyRequests) as err:
            await book.acquire("a", 10, expected_end=NOW + 30, now=NOW + 20)  # past an expected end: 1, not less
        assert err.value.headers["Retry-After"] == "1"
        assert await book.acquire("b", 10, expected_end=NOW, now=NOW)  # other callers are not held back

    run(scenario())


def test_release_is_idempotent():
    book = ledger(a=dict(max_concurrent=1, tokens_per_minute=600))

    async def scenario():
        lease = await book.acquire("a", 100, expected_end=NOW + 5, now=NOW)
        await book.release(lease, 0, now=NOW)
        await book.release(lease, 0, now=NOW)
        await book.release("never-granted", 0, now=NOW)
        assert book.buckets["a"].tokens == 600
        await book.acquire("a", 100, expected_end=NOW + 5, now=NOW)
        with pytest.raises(TooManyRequests):
            await book.acquire("a", 100, expected_end=NOW + 5, now=NOW)  # a second release freed nothing more

    run(scenario())


def test_stale_leases_are_reaped():
    book = ledger(a=dict(max_concurrent=1))

    async def scenario():
        await book.acquire("a", 1, expected_end=NOW + 10, now=NOW)  # its replica dies: never released
        with pytest.raises(TooManyRequests):
            await book.acquire("a", 1, expected_end=NOW + 100, now=NOW + 10 + STALE_AFTER_S)
        lease = await book.acquire("a", 1, expected_end=NOW + 100, now=NOW + 10 + STALE_AFTER_S + 0.1)
        assert list(book.held["a"]) == [lease] and book.owner == {lease: "a"}

    run(scenario())


# --- the ledger: tokens per minute -----------------------------------------


def test_tokens_per_minute_reserve_refuse_refund_and_refill():
    book = ledger(a=dict(tokens_per_minute=600))  # refills 10 tokens/s

    async def scenario():
        first = await book.acquire("a", 400, expected_end=NOW + 30, now=NOW)
        await book.acquire("a", 150, expected_end=NOW + 30, now=NOW)
        assert book.buckets["a"].tokens == 50
        with pytest.raises(TooManyRequests) as err:
            await book.acquire("a", 200, expected_end=NOW + 30, now=NOW + 1)  # 60 left: 140 short
        assert (err.value.status, err.value.code) == (429, "tokens_per_minute")
        assert err.value.headers["Retry-After"] == "14"
        await book.release(first, 100, now=NOW + 1)  # 300 reserved but unused come back
        assert book.buckets["a"].tokens == 360
        await book.acquire("a", 360, expected_end=NOW + 30, now=NOW + 1)
        assert book.buckets["a"].tokens == 0
        with pytest.raises(TooManyRequests) as err:
            await book.acquire("a", 1, expected_end=NOW + 30, now=NOW + 1)
        assert err.value.headers["Retry-After"] == "1"  # 0.1 s away, but never less than 1
        await book.acquire("a", 250, expected_end=NOW + 30, now=NOW + 26)  # refilled by 25 s x 10/s

    run(scenario())


def test_refund_never_overfills_and_none_used_keeps_the_reservation():
    book = ledger(a=dict(tokens_per_minute=600))

    async def scenario():
        kept = await book.acquire("a", 100, expected_end=NOW + 30, now=NOW)
        refunded = await book.acquire("a", 100, expected_end=NOW + 30, now=NOW)
        await book.release(kept, None, now=NOW)
        assert book.buckets["a"].tokens == 400
        await book.release(refunded, 0, now=NOW + 59)  # refill alone nearly fills it; the refund is capped
        assert book.buckets["a"].tokens == 600

    run(scenario())


def test_a_request_larger_than_the_bucket_is_a_400():
    book = ledger(a=dict(tokens_per_minute=600, max_concurrent=1))

    async def scenario():
        await book.acquire("a", 10, expected_end=NOW + 30, now=NOW)
        with pytest.raises(BadRequest) as err:  # a 400 even when a 429 would also apply: waiting never helps
            await book.acquire("a", 601, expected_end=NOW + 30, now=NOW)
        assert (err.value.status, err.value.param, err.value.code) == (400, "max_tokens", "tokens_per_minute")
        assert "601 tokens" in err.value.message and "600 tokens per minute" in err.value.message

    run(scenario())


def test_unknown_and_unlimited_callers_pass_without_books():
    book = ledger(a=dict(max_concurrent=1))

    async def scenario():
        leases = {await book.acquire("nobody", 10**9, expected_end=NOW, now=NOW) for _ in range(5)}
        assert len(leases) == 5 and book.owner == {}
        await book.release(leases.pop(), 0)

    run(scenario())


def test_too_many_requests_survives_pickling():
    book = ledger(a=dict(max_concurrent=1))

    async def refused():
        await book.acquire("a", 1, expected_end=NOW + 4.5, now=NOW)
        with pytest.raises(TooManyRequests) as err:
            await book.acquire("a", 1, expected_end=NOW + 9, now=NOW)
        return err.value

    error = run(refused())
    copy = pickle.loads(pickle.dumps(error))
    assert type(copy) is TooManyRequests
    assert (copy.status, copy.type, copy.code, copy.headers["Retry-After"]) == (429, "rate_limit_error",
                                                                                "concurrency_limit", "5")
    assert copy.body() == error.body()


# --- the ingress side ------------------------------------------------------


class Recording(CallerLedger):
    """The plain ledger, recording calls, with a clock of its own for the tests."""

    def __init__(self, limits, acquire_delay=0.0):
        super().__init__(limits)
        self.calls, self.acquire_delay = [], acquire_delay

    async def acquire(self, caller, tokens, expected_end, now=None):
        self.calls.append(("acquire", caller, tokens))
        await asyncio.sleep(self.acquire_delay)
        return await super().acquire(caller, tokens, expected_end, now=NOW)

    async def release(self, lease, tokens_used=None, now=None):
        self.calls.append(("release", tokens_used))
        await asyncio.sleep(0)  # a round trip: a point where a cancellation can land
        await super().release(lease, tokens_used, now=NOW)


def test_hold_releases_with_the_tokens_used_also_on_error():
    book = Recording({"a": Limit(max_concurrent=1, tokens_per_minute=600)})
    limits = CallerLimits(book)

    async def scenario():
        async with limits.hold("a", 100, NOW + 30) as lease:
            assert lease.id in book.owner
            lease.used(40)
        assert book.owner == {} and book.buckets["a"].tokens == 560
        with pytest.raises(RuntimeError):
            async with limits.hold("a", 100, NOW + 30):
                raise RuntimeError("boom")
        assert book.owner == {} and book.buckets["a"].tokens == 460  # nothing reported: all count as used
        with pytest.raises(TooManyRequests):
            async with limits.hold("a", 500, NOW + 30):  # 460 left
                pytest.fail("refused requests never run")

    run(scenario())
    assert book.calls[:4] == [("acquire", "a", 100), ("release", 40), ("acquire", "a", 100), ("release", None)]


def test_hold_releases_when_the_request_is_cancelled():
    book = Recording({"a": Limit(max_concurrent=1)})
    limits = CallerLimits(book)

    async def scenario():
        inside = asyncio.Event()

        async def request():
            async with limits.hold("a", 1, NOW + 30):
                inside.set()
                await asyncio.sleep(60)

        task = asyncio.create_task(request())
        await inside.wait()
        task.cancel()
        await asyncio.sleep(0)
        task.cancel()  # cancelled again while releasing: the release goes on regardless
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.gather(*limits.pending)
        assert book.owner == {}

    run(scenario())


def test_hold_gives_back_a_lease_granted_after_the_request_was_cancelled():
    book = Recording({"a": Limit(max_concurrent=1)}, acquire_delay=0.05)
    limits = CallerLimits(book)

    async def scenario():
        async def request():
            async with limits.hold("a", 1, NOW + 30):
                pytest.fail("a cancelled request never runs")

        task = asyncio.create_task(request())
        await asyncio.sleep(0.01)  # acquiring
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        await asyncio.sleep(0.1)  # the ledger grants it late...
        await asyncio.gather(*limits.pending)
        assert book.owner == {}  # ...and it is given back

    run(scenario())


def test_hold_skips_the_ledger_for_anonymous_and_unlimited_callers():
    book = Recording({"a": Limit(max_concurrent=1)})
    limits = CallerLimits(book, limited={"a"})

    async def scenario():
        async with limits.hold(None, 10, NOW) as lease:
            lease.used(3)
        async with limits.hold("api_keys[0]", 10, NOW):
            pass

    run(scenario())
    assert book.calls == []


def test_a_failing_release_does_not_fail_the_request(caplog):
    class Broken(Recording):
        async def release(self, lease, tokens_used=None, now=None):
            raise ConnectionError(SECRET)

    limits = CallerLimits(Broken({"a": Limit(max_concurrent=1)}))

    async def scenario():
        async with limits.hold("a", 1, NOW + 30):
            pass

    run(scenario())
    assert "ConnectionError" in caplog.text and SECRET not in caplog.text


# --- over a Ray Serve handle (faked: same calls, errors wrapped like Ray's) --


class RayTaskErrorLike(Exception):
    def __init__(self, cause):
        super().__init__("wrapped")
        self.cause = cause


class FakeHandle:
    """`handle.method.remote(...)` returns an awaitable; errors come wrapped."""

    def __init__(self, target):
        self.target = target

    def __getattr__(self, method):
        target = self.target

        class Method:
            @staticmethod
            def remote(*args):
                async def call():
                    try:
                        return await getattr(target, method)(*args)
                    except Exception as exc:
                        raise RayTaskErrorLike(pickle.loads(pickle.dumps(exc))) from None

                return call()

        return Method


def test_ledger_handle_unwraps_api_errors():
    book = ledger(a=dict(max_concurrent=1))
    from service.app import LedgerHandle

    limits = CallerLimits(LedgerHandle(FakeHandle(book)))

    async def scenario():
        end = time.time() + 30  # the ledger runs on its own (wall) clock
        async with limits.hold("a", 1, end):
            assert len(book.owner) == 1
            with pytest.raises(TooManyRequests) as err:
                async with limits.hold("a", 1, end + 10):
                    pass
            assert err.value.status == 429 and err.value.headers["Retry-After"] == "30"
        assert book.owner == {}

    run(scenario())
