"""Experiments: shadow deployments and A/B tests of a candidate version, ending in a verdict.

``start`` an experiment of a model (its production version is the control), let serving route
traffic (every worker picks it up within seconds), read ``report`` or ``status`` any time, and
``stop`` it by promoting the candidate or abandoning it. The same from the shell
(``slipway experiment ...``) and over HTTP (``/v1/experiments``). See docs/experiments.md.

    >>> exp = slipway.experiments.start("fraud", mode="ab", candidate=2, split=0.1)
    >>> slipway.experiments.report("fraud").verdict.text
    'no detectable difference at this sample size'
"""

from __future__ import annotations

from typing import Any

from slipway.config import Settings
from slipway.experiments.analysis import Plan, Verdict
from slipway.experiments.desk import ExperimentDesk
from slipway.experiments.guardrails import Guardrails
from slipway.experiments.report import ExperimentReport
from slipway.registry import Registry
from slipway.store.experiments import Experiment


def _desk() -> ExperimentDesk:
    return ExperimentDesk(Registry(Settings.from_env()))


def start(model: str, *, mode: str, candidate: int, **options: Any) -> Experiment:
    """Start a shadow deployment (``mode="shadow"``) or an A/B test (``mode="ab"``, with
    ``split``) of version ``candidate``; see :meth:`ExperimentDesk.start` for the options."""
    return _desk().start(model, mode=mode, candidate=candidate, **options)


def report(ref: str) -> ExperimentReport:
    """The report of an experiment (by id, or a model's running or latest one)."""
    return _desk().report(ref)


def status(ref: str) -> ExperimentReport:
    """:func:`report`, re-scoring fewer logged rows for the agreement (for frequent checks)."""
    return _desk().report(ref, rescore=2000)


def stop(ref: str, *, promote: bool, force: bool = False) -> Experiment:
    """Stop the running experiment: promote the candidate (refused on a *worse* verdict unless
    ``force``) or abandon it."""
    return _desk().stop(ref, promote=promote, force=force)[0]


def get(ref: str) -> Experiment:
    """An experiment by id, or a model's running (else latest) experiment."""
    return _desk().get(ref)


def list_experiments(model: str | None = None) -> list[Experiment]:
    """Every experiment (of one model), newest first."""
    return _desk().experiments(model)


__all__ = [
    "Experiment",
    "ExperimentDesk",
    "ExperimentReport",
    "Guardrails",
    "Plan",
    "Verdict",
    "get",
    "list_experiments",
    "report",
    "start",
    "status",
    "stop",
]
