"""A scenario shared by the generators' tests: what `load()` says during a request and after it."""

from __future__ import annotations

import asyncio

from service.types import Deadline, Prompt, SamplingSpec


def load_during_and_after(generator, *, candidates: int, max_tokens: int, settle_s: float) -> tuple[int, int]:
    """Start `candidates` candidates, read the load once they run (after `settle_s`), let them finish, read again."""

    async def scenario():
        stream = generator.generate(Prompt(text="x"), SamplingSpec(max_tokens=max_tokens), candidates,
                                    Deadline.after_ms(20_000))
        first = asyncio.ensure_future(stream.__anext__())
        await asyncio.sleep(settle_s)
        during = await generator.load()
        await first
        async for _ in stream:
            pass
        return during, await generator.load()

    return asyncio.run(scenario())
