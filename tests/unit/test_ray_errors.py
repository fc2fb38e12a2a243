"""How errors from other replicas reach clients: the envelope they carried, or a
503 with Retry-After when Ray says a replica is gone or full; never a 500."""

import pytest
from ray.exceptions import ActorDiedError, RayTaskError
from ray.serve.exceptions import BackPressureError

from service.app import REPLICA_RETRY_AFTER_S, unwrapping_ray_errors
from service.errors import BadRequest, Overloaded


def raised_through(exc: Exception) -> BaseException:
    with pytest.raises(BaseException) as info:
        with unwrapping_ray_errors():
            raise exc
    return info.value


@pytest.mark.parametrize(
    "exc, retry_after",
    [(ActorDiedError(), str(REPLICA_RETRY_AFTER_S)),
     (BackPressureError(num_queued_requests=3, max_queued_requests=2, retry_after_s=2.2), "2"),
     (RayTaskError("generate", "traceback", ActorDiedError()), str(REPLICA_RETRY_AFTER_S))],
    ids=["replica-died", "back-pressure", "wrapped"],
)
def test_a_dead_or_full_replica_is_a_503_with_retry_after(exc, retry_after):
    error = raised_through(exc)
    assert isinstance(error, Overloaded) and error.status == 503 and error.code == "replica_unavailable"
    assert error.headers == {"Retry-After": retry_after}
    assert "traceback" not in error.message


def test_an_api_error_from_another_replica_comes_out_bare():
    error = raised_through(RayTaskError("generate", "traceback", BadRequest("too long", param="max_tokens")))
    assert isinstance(error, BadRequest) and error.param == "max_tokens"


def test_anything_else_stays_as_it_is():
    assert isinstance(raised_through(KeyError("x")), KeyError)
