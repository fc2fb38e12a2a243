"""Property-based fuzzing of the HTTP API from its own OpenAPI schema (schemathesis).

Every route gets schema-valid and schema-breaking requests. The `model` field is
mostly set to the served name and `reward_model` to a configured one (or left
out), so completions and chat really run the reranker over the fake generator
instead of stopping at "unknown model". No request may get a 5xx, every 4xx
carries OpenAI's error envelope, and the service still answers afterwards.
"""

import os
from collections import Counter

import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.api_client import complete, make_client

# 500 cases by default (derandomized: the same ones each run); CI runs 2,000 (.ci/run sets PRUNE_FUZZ_CASES).
CASES = int(os.environ.get("PRUNE_FUZZ_CASES", "500"))
KEEP, DROP = object(), object()  # leave the generated value as it is / remove the field
MODELS = ["fake-model"] * 4 + [KEEP]  # mostly the served name, sometimes whatever was generated
REWARD_MODELS = ["fake", "slop", DROP, KEEP]
RERANK = {"/v1/completions", "/v1/chat/completions"}
POSTED = RERANK | {"/v1/rewards"}
# A budget of a few ms is answered 504 by design (no text in time), and whether it is depends on
# the clock: at 1 s, a pause of the test process on a busy 2-core machine once made it one.
MIN_BUDGET_MS = 5000


def set_field(body, name, choice):
    if isinstance(body, dict) and choice is not KEEP:
        if choice is DROP:
            body.pop(name, None)
        else:
            body[name] = choice


def small_budget(value) -> bool:
    try:  # as pydantic reads it: 5, 5.0, "5" and true are all small
        return 0 < float(value) < MIN_BUDGET_MS
    except (TypeError, ValueError):
        return False


def steered(operation, mode):
    """The operation's generated cases, with `model` and `reward_model` mostly made real."""

    def steer(drawn):
        case, model, reward_model = drawn
        if case.path in RERANK:
            set_field(case.body, "model", model)
            if isinstance(case.body, dict) and small_budget(case.body.get("latency_budget_ms")):
                case.body["latency_budget_ms"] = MIN_BUDGET_MS
        if case.path in POSTED:
            set_field(case.body, "reward_model", reward_model)
        return case

    cases = operation.as_strategy(generation_mode=mode)
    return st.tuples(cases, st.sampled_from(MODELS), st.sampled_from(REWARD_MODELS)).map(steer)


def send(client, case):
    kwargs = case.as_transport_kwargs()
    body = {"json": kwargs["json"]} if "json" in kwargs else {"content": kwargs.get("data")}
    return client.request(kwargs["method"], kwargs["url"], params=kwargs["params"], headers=kwargs["headers"], **body)


def is_error_envelope(body) -> bool:
    error = body.get("error") if isinstance(body, dict) else None
    return isinstance(error, dict) and set(error) == {"message", "type", "param", "code"}


def test_fuzzed_requests_never_get_a_5xx_and_every_route_is_reached():
    client = make_client(limits={"max_tokens_default": 8, "max_tokens_max": 16})
    raw = client.app.openapi()
    # Unknown fields are ignored by design; generating random ones for valid cases only costs time.
    # Negative cases still send them, as violations of this.
    for component in raw["components"]["schemas"].values():
        component.setdefault("additionalProperties", False)
    schema = schemathesis.openapi.from_dict(raw)
    operations = [result.ok() for result in schema.get_all_operations()]
    seen, statuses = Counter(), Counter()

    @settings(max_examples=CASES, derandomize=True, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(st.one_of([steered(op, mode) for op in operations for mode in GenerationMode]))
    def fuzz(case):
        r = send(client, case)
        seen[case.path] += 1
        statuses[case.path, r.status_code] += 1
        assert r.status_code < 500, (case.path, case.body, r.text)
        if r.status_code >= 400:
            assert is_error_envelope(r.json()), (case.path, case.body, r.text)

    with client:
        fuzz()

    print(sorted(statuses.items()))  # shown on failure
    assert sum(seen.values()) >= CASES
    for path in raw["paths"]:  # each posted route gets a fair share of the cases, every other route some
        assert seen[path] >= (CASES // 7 if path in POSTED else CASES // 200), (path, seen[path])
    for path in POSTED:  # valid requests really ran: the reranker (or the reward) answered, 1 case in 150 at least
        assert statuses[path, 200] >= CASES // 150, (path, statuses[path, 200])
    assert client.get("/healthz").status_code == 200
    assert client.get("/readyz").status_code == 200
    assert complete(client).status_code == 200
