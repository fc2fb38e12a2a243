"""Fixtures of the unit tier."""

import pytest

from service import errors
from tests.api_client import make_client


@pytest.fixture
def client():
    """The API over the fake generator and reward (tests/api_client.py)."""
    return make_client()


@pytest.fixture
def exact_retry_after(monkeypatch):
    """The predicted Retry-After, without the jitter that spreads clients (tested in test_admission)."""
    monkeypatch.setattr(errors, "RETRY_JITTER", 0.0)
