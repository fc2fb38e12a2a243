"""The callers' shared ledger on a fake clock: concurrency and tokens-per-minute limits, Retry-After, refunds, stale leases, and the same over a Ray Serve handle."""

import asyncio
import pickle
import time

import pytest

from service.callers import (
    STALE_AFTER_S,
    CallerLedger,
    CallerLimits,
    Limit,
    TooManyRequests,
)
from service.errors import BadRequest

pytestmark = pytest.mark.usefixtures("exact_retry_after")


NOW = 1_000.0


def run(coro):
    return asyncio.run(coro)


def ledger(**limits) -> CallerLedger:
    return CallerLedger({name: Limit(**lim) for name, lim in limits.items()})


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


def test_ledger_handle_unwraps_api_errors():
    book = ledger(a=dict(max_concurrent=1))
    from service.handles import LedgerHandle

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
