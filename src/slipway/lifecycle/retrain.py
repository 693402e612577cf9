"""`slipway retrain`: train a new version on fresh data, gate it against production, and
optionally leave it in shadow for a person to decide. Never promotes.

Every retraining, whatever triggered it (a person, a schedule, a monitoring alert) and however
it ended, is one ``retrain`` event in the audit trail with the trigger and its reason.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pandas as pd

from slipway.clock import utcnow
from slipway.exceptions import ConfigError, SlipwayError
from slipway.lifecycle.check import CheckResult, check
from slipway.lifecycle.policy import CheckPolicy
from slipway.registry import Registry
from slipway.train import fit, register_trained
from slipway.versions import check_name

Trigger = Literal["manual", "schedule", "alert"]
Then = Literal["stop", "shadow"]
TRIGGERS = ("manual", "schedule", "alert")

# Outcomes and the exit code `slipway retrain` gives each.
PASSED, SHADOW, CHECK_FAILED, FAILED = "passed", "shadow", "check_failed", "failed"
_EXIT = {PASSED: 0, SHADOW: 0, CHECK_FAILED: 1, FAILED: 3}


@dataclass
class RetrainResult:
    """What one retraining did: the new version, its gate result, and what happened next."""

    model: str
    trigger: str
    reason: str
    outcome: str
    message: str
    version: int | None = None
    check: CheckResult | None = None
    data: dict[str, Any] = field(default_factory=dict)
    then: dict[str, Any] = field(default_factory=dict)

    @property
    def exit_code(self) -> int:
        """0 the candidate passed (and is in shadow when asked), 1 the gate failed, 3 the
        retraining could not run."""
        return _EXIT[self.outcome]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view (the audit event's detail, plus the check's id)."""
        return {
            "model": self.model,
            "trigger": self.trigger,
            "reason": self.reason,
            "outcome": self.outcome,
            "message": self.message,
            "version": self.version,
            "check_id": None if self.check is None else self.check.id,
            "check": None if self.check is None else self.check.summary(),
            "data": self.data,
            "then": self.then,
        }


ShadowStarter = Callable[[Registry, str, int], dict[str, Any]]


def start_shadow(registry: Registry, name: str, version: int) -> dict[str, Any]:
    """Start a shadow experiment of ``name:version`` against production, when the experiments
    capability is installed; otherwise say so and leave the candidate registered."""
    try:
        from slipway.experiments.desk import ExperimentDesk
    except ImportError:
        return {
            "started": False,
            "message": f"{name}:{version} is registered and passed the gate; this Slipway has "
            "no experiments capability to start a shadow deployment, so nothing else was done.",
        }
    try:
        experiment = ExperimentDesk(registry).start(name, mode="shadow", candidate=version)
    except SlipwayError as exc:  # e.g. an experiment already runs: the candidate stays registered
        return {
            "started": False,
            "message": f"{name}:{version} is registered and passed the gate, but no shadow "
            f"experiment was started: {exc}",
        }
    return {
        "started": True,
        "experiment": experiment.id,
        "message": f"{name}:{version} is in shadow beside production as experiment "
        f"{experiment.id!r}; read `slipway experiment report {name}`, then "
        f"`slipway experiment stop {name} --promote` or `--abandon`.",
    }


def retrain(
    registry: Registry,
    name: str,
    config: Path | str,
    *,
    since: timedelta | None = None,
    data: Path | str | None = None,
    trigger: str = "manual",
    reason: str = "",
    then: Then = "stop",
    against: str | None = "production",
    policy: CheckPolicy | None = None,
    clock: Callable[[], datetime] = utcnow,
    shadow: ShadowStarter = start_shadow,
) -> RetrainResult:
    """Train ``name`` from ``config`` on fresh data, register the result (never promoted),
    check it against ``against`` on its own validation rows, and with ``then="shadow"`` start a
    shadow experiment when it passes. Errors are recorded in the audit trail, then raised."""
    check_name(name)
    if trigger not in TRIGGERS:
        raise ConfigError(f"trigger must be one of {', '.join(TRIGGERS)}, not {trigger!r}.")
    if then not in ("stop", "shadow"):
        raise ConfigError(f"then must be 'stop' or 'shadow', not {then!r}.")
    if since is not None and data is not None:
        raise ConfigError("Give --since or --data, not both: --data is used as it is.")
    result = RetrainResult(name, trigger, reason or f"{trigger} retraining", FAILED, "")
    try:
        trained = fit(
            Path(config), data=None if data is None else Path(data), since=since, now=clock()
        )
        if trained.config.name != name:
            raise ConfigError(
                f"Config {config} trains {trained.config.name!r}, not {name!r}; retrain the "
                "model the config names."
            )
        result.data = trained.data
        mv = register_trained(trained, registry, alias=None)
        result.version = mv.version
        holdout = trained.X_val.assign(**{trained.config.data.target: trained.y_val.to_numpy()})
        policy = (policy or CheckPolicy()).model_copy(update={"target": trained.config.data.target})
        result.check = check(
            registry,
            mv.ref,
            against=against,
            data=pd.DataFrame(holdout),
            policy=policy,
            clock=clock,
        )
    except Exception as exc:  # recorded with its reason, then raised to the caller
        result.message = f"{type(exc).__name__}: {exc}".splitlines()[0]
        with contextlib.suppress(Exception):  # an unreachable store must not hide the cause
            _record(registry, result)
        raise
    if not result.check.passed:
        result.outcome = CHECK_FAILED
        result.message = (
            f"{mv.ref} failed the gate ({', '.join(result.check.failed)}); production is unchanged."
        )
    elif then == "shadow":
        result.then = shadow(registry, name, mv.version)
        result.outcome = SHADOW if result.then.get("started") else PASSED
        result.message = str(result.then.get("message", ""))
    else:
        result.outcome = PASSED
        result.message = (
            f"{mv.ref} passed the gate against {result.check.champion or 'no champion'}; "
            f"promote it with `slipway models promote {name} {mv.version}` when you decide to."
        )
    _record(registry, result)
    return result


def _record(registry: Registry, result: RetrainResult) -> None:
    detail = result.to_dict()
    detail.pop("check", None)
    registry.record_event("retrain", result.model, version=result.version, detail=detail)
