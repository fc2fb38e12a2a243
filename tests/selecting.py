"""Selection as the tests drive it: a plan built from keyword arguments, run by `rerank`."""

from service.plan import RerankPlan
from service.selection import Selection, rerank


def plan_of(prompt, sampling, *, best_of, n=1, budget, pruning=None, commit=None, offsets=None,
            min_chars=1) -> RerankPlan:
    return RerankPlan(reward_model="fake", best_of=best_of, candidates=best_of, n=n, prompt=prompt,
                      sampling=sampling, budget=budget, pruning=pruning, commit=commit, offsets=offsets,
                      min_chars=min_chars)


def rerank_events(generator, reward, prompt, sampling, *, fallback=None, **plan):
    """`rerank`'s events for the plan the keywords describe."""
    return rerank(generator, reward, plan_of(prompt, sampling, **plan), fallback)


async def best_of_n(generator, reward, prompt, sampling, **kwargs) -> Selection:
    """`rerank` without a stream: just its Selection."""
    async for event in rerank_events(generator, reward, prompt, sampling, **kwargs):
        selection = event
    return selection
