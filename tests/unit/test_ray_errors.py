"""How errors from other replicas reach clients: the envelope they carried, or a
503 with Retry-After when Ray says a replica is gone or full; never a 500."""

import pytest
from ray.exceptions import ActorDiedError, RayTaskError
from ray.serve.exceptions import BackPressureError

from service.handles import REPLICA_RETRY_AFTER_S, unwrapping_ray_errors
from service.errors import BadRequest, Overloaded


def raised_through(exc: Exception) -> BaseException:
    with pytest.raises(BaseException) as info:
        with unwrapping_ray_errors():
            raise exc
    return info.value


@pytest.mark.parametrize(
    "exc, retry_after",
    [(ActorDiedError(), str(REPLICA_RETRY_AFTER_S)),
     (BackPressureError(num_queued_requests=3, max_queued_requests=2, retry_after_s=2.2), "3"),
     (RayTaskError("generate", "traceback", ActorDiedError()), str(REPLICA_RETRY_AFTER_S))],
    ids=["replica-died", "back-pressure", "wrapped"],
)
@pytest.mark.usefixtures("exact_retry_after")  # the prediction itself; the spread is test_admission's
def test_a_dead_or_full_replica_is_a_503_with_retry_after(exc, retry_after):
    error = raised_through(exc)
    assert isinstance(error, Overloaded) and error.status == 503 and error.code == "replica_unavailable"
    assert error.headers["Retry-After"] == retry_after  # whole seconds, never sooner than Ray said
    assert "traceback" not in error.message


def test_an_api_error_from_another_replica_comes_out_bare():
    error = raised_through(RayTaskError("generate", "traceback", BadRequest("too long", param="max_tokens")))
    assert isinstance(error, BadRequest) and error.param == "max_tokens"


def test_anything_else_stays_as_it_is():
    assert isinstance(raised_through(KeyError("x")), KeyError)


class Stalled:
    """A deployment handle's method whose calls hang (its only replica died: Ray holds them)
    until `alive` is set again."""

    def __init__(self):
        self.alive = True

    async def remote(self):
        import asyncio

        while not self.alive:
            await asyncio.sleep(0.01)
        return 3


def test_a_generator_whose_replica_died_is_a_503_at_once_and_served_again_once_it_answers():
    import asyncio
    import time

    from service.handles import RemoteGenerator

    class Handle:
        load = Stalled()

    async def scenario():
        generator = RemoteGenerator(Handle(), {"model_name": "m", "max_model_len": 64})
        generator.probe.every_s, generator.probe.timeout_s = 0.05, 0.2
        assert await generator.load() == 0  # the reading so far; the first call starts the background reads
        await asyncio.sleep(0.02)
        assert await generator.load() == 3
        Handle.load.alive = False
        await asyncio.sleep(0.35)  # a read times out after 0.2 s
        started = time.monotonic()
        with pytest.raises(Overloaded) as refused:
            await generator.load()
        assert time.monotonic() - started < 0.05  # no request waits on the dead replica
        assert refused.value.code == "replica_unavailable" and 5 <= int(refused.value.headers["Retry-After"]) <= 8
        Handle.load.alive = True  # the next read finds it back
        await asyncio.sleep(0.1)
        assert await generator.load() == 3
        generator.probe.task.cancel()

    asyncio.run(scenario())


def test_the_generator_load_does_not_count_this_ingress_candidates_that_ended_since_the_reading():
    # A client sending one request after another: the last reading (up to 0.2 s old) still
    # counts the candidates of the request that just ended, which would cut the next one's best_of.
    import asyncio

    from service.handles import RemoteGenerator
    from service.types import Candidate

    class Load:
        value = 3

        async def remote(self):
            return self.value

    class Stream:
        def __init__(self, events):
            self.events = events

        def __aiter__(self):
            return self.aiter()

        async def aiter(self):
            for event in self.events:
                yield event

        def cancel(self):
            pass

    class Handle:
        load = Load()

        def options(self, **_):
            return self

        @property
        def generate(self):
            return self

        def remote(self, *args):
            return Stream([Candidate(i, "text", "stop", 2) for i in range(2)])

    async def scenario():
        generator = RemoteGenerator(Handle(), {"model_name": "m", "max_model_len": 64})
        generator.probe.every_s = 60  # one reading, no more
        await generator.load()
        await asyncio.sleep(0.01)
        assert await generator.load() == 3  # the reading: three running, two of them ours
        assert len([c async for c in generator.generate(None, None, 2, None)]) == 2
        assert await generator.load() == 1  # ours ended since: one left (another ingress's)
        Handle.load.value = 1
        await generator.probe.refresh()
        assert await generator.load() == 1  # a fresh reading counts only what runs
        generator.probe.task.cancel()

    asyncio.run(scenario())
