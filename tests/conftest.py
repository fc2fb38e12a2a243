"""Fixtures shared by the tiers."""

import pytest

from tests.lamp_clone import write_lamp_clone


@pytest.fixture(scope="session")
def lamp_clone(tmp_path_factory):
    """A directory shaped like salesforce/creativity_eval (tests/lamp_clone.py)."""
    return write_lamp_clone(tmp_path_factory.mktemp("creativity_eval"))
