"""Starting, stopping and reporting experiments: what the CLI, the HTTP routes and Python call.

:class:`ExperimentDesk` checks a request against the registry (the control is the version the
``production`` alias points at; the candidate an active version of the same model), writes the
experiment to the store, where every serving worker picks it up within a poll interval, and
has its report read from the experiment's traffic (:mod:`slipway.experiments.readout`).
Stopping with ``promote=True`` moves the production alias through :meth:`Registry.promote`,
audited as any promotion, and refuses when the verdict is *candidate worse* unless forced.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from slipway.clock import utcnow
from slipway.exceptions import ConfigError, ExperimentConflict, ExperimentNotFound, ModelNotFound
from slipway.experiments import analysis, stats
from slipway.experiments.assignment import new_salt
from slipway.experiments.guardrails import Check, Guardrails
from slipway.experiments.metrics import Metric, metric
from slipway.experiments.readout import RESCORE_ROWS, Readout
from slipway.experiments.report import ExperimentReport
from slipway.provenance import current_user
from slipway.registry import Registry
from slipway.store import experiments as book
from slipway.store.experiments import Experiment
from slipway.versions import DEFAULT_ALIAS, ModelVersion

MODES = ("shadow", "ab")
Alert = Callable[[Mapping[str, Any]], Any]
"""Receives a guardrail stop as an alert payload (the monitoring sinks' shape)."""


class ExperimentDesk:
    """Experiments of the models in one registry."""

    def __init__(self, registry: Registry, *, alert: Alert | None = None) -> None:
        self.registry = registry
        self.store = registry.store
        self.alert = alert

    # -- lifecycle -------------------------------------------------------------------------

    def start(
        self,
        model: str,
        *,
        mode: str,
        candidate: int,
        split: float | None = None,
        metric_name: str | None = None,
        outcome: str | None = None,
        unit_field: str | None = None,
        min_effect: float | None = None,
        alpha: float = 0.05,
        power: float = 0.8,
        min_outcomes: int = 100,
        guardrails: Guardrails | Mapping[str, float] | None = None,
        actor: str | None = None,
        via: str | None = None,
    ) -> Experiment:
        """Start a shadow deployment or an A/B test of version ``candidate`` against production.

        The start is recorded in the audit trail (``experiment_start``) naming ``actor`` (default:
        the configured or OS user) and, when given, the channel ``via``.
        ExperimentConflict names the experiment already running for the model.
        """
        if mode not in MODES:
            raise ConfigError(f"Mode {mode!r} is not one of {', '.join(MODES)}.")
        control = self._production(model)
        cand = self.registry.get(f"{model}:{candidate}")
        if cand.status != "active":
            raise ExperimentConflict(
                f"Version {candidate} of {model!r} is {cand.status}; only active versions can "
                "be tried."
            )
        if cand.version == control.version:
            raise ConfigError(
                f"Version {candidate} of {model!r} is already production; the candidate must be "
                f"another version (the latest is {self._latest(model)})."
            )
        if cand.task != control.task:
            raise ConfigError(
                f"{cand.ref} is a {cand.task} model and {control.ref} a {control.task} model; "
                "an experiment compares two versions of one task."
            )
        chosen = metric(metric_name or _default_metric(control.task), control.task, outcome)
        if mode == "shadow":
            if split is not None:
                raise ConfigError(
                    "--split is for A/B tests: in shadow mode production answers every request "
                    "and the candidate sees all of them."
                )
            if chosen.source == "outcome":
                raise ConfigError(
                    f"Metric {chosen.name!r} reads business outcomes, which follow only the "
                    "answer a user saw; a shadow's answers are never seen. Compare with labels "
                    "(--metric accuracy, error_rate or mae), or run an A/B test."
                )
            split = 0.0
        elif split is None or not 0 < split < 1:
            raise ConfigError(
                f"An A/B test needs --split between 0 and 1 (exclusive), not {split}."
            )
        fields = control.contract.names
        if unit_field is not None and unit_field not in fields:
            raise ConfigError(
                f"--unit-field {unit_field!r} is not an input field of {control.ref}; its fields "
                f"are {', '.join(fields)}."
            )
        for name, value, low, high in (
            ("alpha", alpha, 0.0, 0.5),
            ("power", power, 0.5, 1.0),
        ):
            if not low < value < high:
                raise ConfigError(f"{name} must be between {low} and {high}, not {value}.")
        if min_effect is not None and not min_effect > 0:
            raise ConfigError(f"--min-effect must be a positive difference, not {min_effect}.")
        plan = analysis.Plan(alpha, power, min_effect, 10_000, min_outcomes)
        plan = replace(plan, tuning_n=_tuning_n(chosen, plan, control, mode, split))
        now = utcnow()
        experiment = Experiment(
            id="",
            model=model,
            mode=mode,
            status=book.RUNNING,
            control_version=control.version,
            candidate_version=cand.version,
            split=split,
            metric=chosen.name,
            outcome=outcome,
            unit_field=unit_field,
            salt=new_salt(),
            config={
                "alpha": plan.alpha,
                "power": plan.power,
                "min_effect": plan.min_effect,
                "tuning_n": plan.tuning_n,
                "min_outcomes": plan.min_outcomes,
                "srm_alpha": plan.srm_alpha,
                "guardrails": (
                    guardrails
                    if isinstance(guardrails, Guardrails)
                    else Guardrails.parse(dict(guardrails or {}))
                ).to_dict(),
            },
            phases=[{"split": split, "started_at": now.isoformat()}],
            started_at=now,
            started_by=actor or self._actor(),
            updated_at=now,
        )
        created = book.create(self.store, experiment)
        self.registry.record_event(
            "experiment_start",
            model,
            version=cand.version,
            actor=created.started_by,
            via=via,
            detail={"experiment": created.id, "mode": mode, "control": control.version},
        )
        return created

    def get(self, ref: str) -> Experiment:
        """An experiment by id, or by model name: its running one, else its latest."""
        if ref in (m.name for m in self.registry.models()):
            running = book.running(self.store, ref)
            if running is not None:
                return running
            past = book.list_experiments(self.store, ref)
            if not past:
                raise ExperimentNotFound(
                    f"Model {ref!r} has no experiments yet; start one with "
                    f"`slipway experiment start {ref} --mode shadow --candidate VERSION`."
                )
            return past[0]
        return book.get(self.store, ref)

    def experiments(self, model: str | None = None) -> list[Experiment]:
        """Experiments (of ``model``, which must exist), newest first."""
        if model is not None:
            self.registry.versions(model)  # ModelNotFound names the known models
        return book.list_experiments(self.store, model)

    def ramp(self, ref: str, split: float) -> Experiment:
        """Raise a running A/B test's split; a new analysis phase starts now."""
        experiment = self._running(ref)
        if experiment.mode != "ab":
            raise ConfigError(
                f"Experiment {experiment.id!r} is a shadow deployment; it has no split."
            )
        if not experiment.split < split < 1:
            raise ConfigError(
                f"The split of {experiment.id!r} can only grow (now {experiment.split}, to at most "
                "1 exclusive): lowering it would move treated units back to control. Stop the "
                "experiment and start another to shrink the treatment."
            )
        return book.set_split(self.store, experiment.id, split)

    def stop(
        self,
        ref: str,
        *,
        promote: bool,
        force: bool = False,
        reason: str | None = None,
        actor: str | None = None,
        via: str | None = None,
    ) -> tuple[Experiment, ExperimentReport]:
        """Stop the running experiment of a model (or by id): promote the candidate through
        :meth:`Registry.promote`, or abandon it. Returns the stopped experiment and its report.

        Promotion is refused when the verdict is *candidate worse*, unless ``force``. The stop
        (``experiment_stop``) and any promotion are audited naming ``actor`` (default: the
        configured or OS user) and, when given, the channel ``via`` (``"ui"``, the console).
        """
        actor = actor or self._actor()
        experiment = self._running(ref)
        report = self.report(experiment.id)
        if promote:
            if report.verdict.code == analysis.WORSE and not force:
                raise ExperimentConflict(
                    f"Experiment {experiment.id!r} says the candidate is worse: "
                    f"{report.verdict.why} Refusing to promote version "
                    f"{experiment.candidate_version}; pass --force to promote it anyway, or "
                    f"--abandon."
                )
            self.registry.promote(
                experiment.model, experiment.candidate_version, actor=actor, via=via
            )
        decision = "promoted" if promote else "abandoned"
        stopped = book.stop(
            self.store,
            experiment.id,
            by=actor,
            decision=decision,
            reason=reason or f"{decision} by {actor}; verdict: {report.verdict.text}",
            report=report.to_dict(),
        )
        if stopped is None:
            stopped = book.get(self.store, experiment.id)
        else:
            self.registry.record_event(
                "experiment_stop",
                experiment.model,
                version=experiment.candidate_version,
                actor=actor,
                via=via,
                detail={
                    "experiment": experiment.id,
                    "decision": decision,
                    "forced": bool(promote and force and report.verdict.code == analysis.WORSE),
                    "verdict": report.verdict.code,
                },
            )
        report.experiment = stopped
        return stopped, report

    def trip(self, experiment: Experiment, checks: list[Check]) -> Experiment | None:
        """Stop an experiment whose guardrails tripped, record why and alert; None when it had
        already stopped (another worker got there first: only one alert is sent)."""
        tripped = [c for c in checks if c.tripped]
        reason = "guardrail: " + "; ".join(
            f"{c.name} exceeded its bound ({c.detail}; bound {c.bound:g})" for c in tripped
        )
        stopped = book.stop(
            self.store, experiment.id, by="guardrail", decision="guardrail", reason=reason
        )
        if stopped is not None:
            self.registry.record_event(
                "experiment_stop",
                experiment.model,
                version=experiment.candidate_version,
                actor="guardrail",
                detail={"experiment": experiment.id, "decision": "guardrail", "reason": reason},
            )
        if stopped is not None and self.alert is not None:
            now = utcnow()
            self.alert(
                {
                    "kind": "experiment_guardrail",
                    "model": experiment.model,
                    "version": experiment.candidate_version,
                    "run_id": experiment.id,
                    "status": "ALERT",
                    "reasons": [
                        {"severity": "ALERT", "code": f"guardrail_{c.name}", "message": c.detail}
                        for c in tripped
                    ],
                    "window": {
                        "start": experiment.phase_started_at.isoformat(),
                        "end": now.isoformat(),
                        "rows": None,
                    },
                    "flagged": [c.name for c in tripped],
                    "created_at": now.isoformat(),
                    "experiment": stopped.to_dict(),
                }
            )
        return stopped

    # -- reading results -------------------------------------------------------------------

    def report(self, ref: str, *, rescore: int = RESCORE_ROWS) -> ExperimentReport:
        """Everything known about an experiment now, ending in its verdict."""
        return Readout(self.registry).report(self.get(ref), rescore=rescore)

    def check_guardrails(self, experiment: Experiment) -> list[Check]:
        """The guardrails the store can judge (see :meth:`Readout.guardrails`)."""
        return Readout(self.registry).guardrails(experiment)

    # -- helpers ---------------------------------------------------------------------------

    def _running(self, ref: str) -> Experiment:
        experiment = self.get(ref)
        if not experiment.running:
            raise ExperimentConflict(
                f"Experiment {experiment.id!r} is not running (it was {experiment.decision} at "
                f"{experiment.stopped_at:%Y-%m-%d %H:%M} UTC: {experiment.stop_reason})."
            )
        return experiment

    def _production(self, model: str) -> ModelVersion:
        try:
            return self.registry.get(f"{model}@{DEFAULT_ALIAS}")
        except ModelNotFound as exc:
            raise ModelNotFound(
                f"{exc} An experiment compares a candidate with the version production serves; "
                f"promote one first: slipway models promote {model} VERSION."
            ) from None

    def _latest(self, model: str) -> int:
        return max(v.version for v in self.registry.versions(model))

    def _actor(self) -> str:
        return current_user(self.registry.settings.user)


def _default_metric(task: str) -> str:
    return "accuracy" if task == "classification" else "mae"


def _tuning_n(
    m: Metric, plan: analysis.Plan, control: ModelVersion, mode: str, split: float
) -> float:
    """Observations at which the sequential test is tightest: the planned sample size at the
    minimum effect from the control's validation accuracy when the metric is one, else 10,000.
    Fixed before any data is seen, as the test requires."""
    accuracy = control.metrics.get("accuracy")
    if m.name not in ("accuracy", "error_rate") or accuracy is None or not 0 < accuracy < 1:
        return 10_000.0
    base = accuracy if m.name == "accuracy" else 1 - accuracy
    effect = plan.min_effect or m.default_min_effect or 0.02
    h = analysis.binary_effect(base, effect, m.direction)
    if mode == "shadow" or not math.isfinite(h) or h == 0:
        return 10_000.0
    ratio = split / (1 - split)
    n_control = stats.required_nobs(abs(h), plan.alpha, plan.power, ratio)
    return float(math.ceil(n_control * (1 + ratio)))
