"""The ingress side of caller limits: a request's hold on its lease is released once, with the tokens used, whatever ends it."""

import asyncio

import pytest

from service.callers import (
    CallerLedger,
    CallerLimits,
    Limit,
    TooManyRequests,
)

NOW = 1_000.0
SECRET = "sk-very-secret-0123456789"


def run(coro):
    return asyncio.run(coro)


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
