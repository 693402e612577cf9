"""Model lifecycle: the validation gate (`slipway check`) and retraining (`slipway retrain`).

Performance estimation without labels (CBPE, DLE) lives in :mod:`slipway.estimation`, below
the registry, because registration fits it and monitoring reports it.
"""

from __future__ import annotations

from slipway.lifecycle.check import CheckResult, check, checks_of, latest_checks
from slipway.lifecycle.comparisons import Outcome
from slipway.lifecycle.policy import CheckPolicy, load_check_policy
from slipway.lifecycle.retrain import RetrainResult, retrain
from slipway.store.lifecycle import StoredCheck

__all__ = [
    "CheckPolicy",
    "CheckResult",
    "Outcome",
    "RetrainResult",
    "StoredCheck",
    "check",
    "checks_of",
    "latest_checks",
    "load_check_policy",
    "retrain",
]
