"""Deadline-aware admission."""

from __future__ import annotations

from service.config.base import Strict


class AdmissionConfig(Strict):
    """Deadline-aware admission (service/admission.py): a request that cannot be
    answered by its deadline with at least its floor of candidates, given the load
    already taken on, is refused at once with 503 and a predicted Retry-After."""

    enabled: bool = True
