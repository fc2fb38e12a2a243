"""What prune tells a client when something fails: no internal address in any error
message, and every 503 says when to come back."""

import ast
import asyncio
from pathlib import Path

import pytest

from service.errors import APIError, Overloaded

SERVICE = Path(__file__).parents[2] / "service"
# The error classes, and the helpers that build one from a message (reject, failed, ...).
ERRORS = {cls.__name__ for cls in [APIError, *APIError.__subclasses__()]} | {
    "GeneratorServiceError", "RewardServiceError", "TooManyRequests", "reject", "failed", "out_of_time", "unavailable"}
ADDRESS_WORDS = ("url", "host", "address", "endpoint")


def raised_messages():
    """Every f-string message given to an APIError class (or a helper that builds one) in
    service/, with where it is."""
    for path in sorted(SERVICE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", None)
            if name in ERRORS:
                for arg in node.args:
                    if isinstance(arg, ast.JoinedStr):
                        yield f"{path.relative_to(SERVICE.parent)}:{node.lineno}", arg


def test_no_error_message_carries_an_internal_address():
    messages = list(raised_messages())
    assert len(messages) > 20  # the scan finds the messages it is meant to read
    for where, message in messages:
        for part in ast.walk(message):
            if isinstance(part, ast.FormattedValue):
                named = {n.attr for n in ast.walk(part.value) if isinstance(n, ast.Attribute)}
                named |= {n.id for n in ast.walk(part.value) if isinstance(n, ast.Name)}
                assert not any(word in name.lower() for name in named for word in ADDRESS_WORDS), where


def test_every_503_has_a_retry_after():
    assert int(Overloaded("a part restarts").headers["Retry-After"]) >= 1
    told = Overloaded("computed", headers={"Retry-After": "7", "retry-after-ms": "7000"})
    assert told.headers["Retry-After"] == "7"  # a computed one is kept


def vllm_without_an_engine() -> Overloaded:
    from service.config import VLLMGeneratorConfig
    from service.generator.vllm import VLLMGenerator

    try:
        asyncio.run(VLLMGenerator(VLLMGeneratorConfig()).check_ready())
    except Overloaded as error:
        return error
    raise AssertionError("a generator without an engine said it was ready")


def a_replica_being_replaced() -> Overloaded:
    from service.handles import unavailable

    return unavailable("generator")


def a_full_replica_queue() -> Overloaded:
    from ray.serve.exceptions import BackPressureError

    from service.handles import client_error

    return client_error(BackPressureError(num_queued_requests=3, max_queued_requests=2, retry_after_s=2.0))


def admission_at_capacity() -> Overloaded:
    from service.admission import Capacity
    from service.config import AdmissionConfig

    return Capacity(AdmissionConfig()).refusal(floor=1, max_tokens=64, window_s=5.0, now=0.0)


@pytest.mark.parametrize("refusal", [vllm_without_an_engine, a_replica_being_replaced, a_full_replica_queue,
                                     admission_at_capacity])
def test_each_503_path_says_when_to_come_back(refusal):
    error = refusal()
    assert error.status == 503 and int(error.headers["Retry-After"]) >= 1, error.code
    assert int(error.headers["retry-after-ms"]) >= 1000
