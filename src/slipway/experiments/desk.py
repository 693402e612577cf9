"""Starting, stopping and reporting experiments: what the CLI, the HTTP routes and Python call.

:class:`ExperimentDesk` checks a request against the registry (the control is the version the
``production`` alias points at; the candidate an active version of the same model), writes the
experiment to the store, where every serving worker picks it up within a poll interval, and
reads the experiment's traffic back out of the prediction log to build its report
(:mod:`slipway.experiments.report`). Stopping with ``promote=True`` moves the production alias
through :meth:`Registry.promote`, audited as any promotion, and refuses when the verdict is
*candidate worse* unless forced.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from slipway.clock import utcnow
from slipway.exceptions import ConfigError, ExperimentConflict, ExperimentNotFound, ModelNotFound
from slipway.experiments import analysis, comparison, stats
from slipway.experiments.assignment import ARMS, CONTROL, TREATMENT, new_salt
from slipway.experiments.guardrails import (
    ArmCounts,
    Check,
    Guardrails,
    check_error_rate,
    check_failures,
    check_latency,
)
from slipway.experiments.metrics import METRICS, Metric, label_values, metric, outcome_values
from slipway.experiments.report import ExperimentReport
from slipway.provenance import current_user
from slipway.registry import Registry
from slipway.store import experiments as book
from slipway.store.experiments import Experiment
from slipway.versions import DEFAULT_ALIAS, ModelVersion

MODES = ("shadow", "ab")
RESCORE_ROWS = 20_000  # logged inputs re-scored by both versions for an A/B test's agreement
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
    ) -> Experiment:
        """Start a shadow deployment or an A/B test of version ``candidate`` against production.

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
            started_by=self._actor(),
            updated_at=now,
        )
        return book.create(self.store, experiment)

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
        self, ref: str, *, promote: bool, force: bool = False, reason: str | None = None
    ) -> tuple[Experiment, ExperimentReport]:
        """Stop the running experiment of a model (or by id): promote the candidate through
        :meth:`Registry.promote`, or abandon it. Returns the stopped experiment and its report.

        Promotion is refused when the verdict is *candidate worse*, unless ``force``.
        """
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
            self.registry.promote(experiment.model, experiment.candidate_version)
        decision = "promoted" if promote else "abandoned"
        stopped = book.stop(
            self.store,
            experiment.id,
            by=self._actor(),
            decision=decision,
            reason=reason or f"{decision} by {self._actor()}; verdict: {report.verdict.text}",
            report=report.to_dict(),
        )
        if stopped is None:
            stopped = book.get(self.store, experiment.id)
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
        experiment = self.get(ref)
        plan = analysis.Plan.from_config(experiment.config)
        control = self.registry.get(f"{experiment.model}:{experiment.control_version}")
        m = metric(experiment.metric, control.task, experiment.outcome)
        log = book.log(self.store, experiment)
        end = experiment.stopped_at or utcnow()
        seconds = max((end - experiment.phase_started_at).total_seconds(), 1e-9)
        report = ExperimentReport(experiment=experiment, generated_at=utcnow(), metric=m.name)
        if experiment.mode == "ab":
            self._ab(report, experiment, m, plan, log, seconds, rescore)
        else:
            self._shadow(report, experiment, m, plan, log, control)
        return report

    def check_guardrails(self, experiment: Experiment) -> list[Check]:
        """The guardrails the store can judge, over every worker's traffic: the label error
        rate (classifiers) and requests refused by each version's contract (422)."""
        if experiment.mode != "ab":
            return []
        labeled = book.log(self.store, experiment, labeled_only=True)
        return self._checks(experiment, labeled, book.arm_counts(self.store, experiment))

    def _checks(
        self,
        experiment: Experiment,
        log: book.ExperimentLog,
        predictions: Mapping[str, int],
        latency_ms: Mapping[str, list[float]] | None = None,
    ) -> list[Check]:
        """Error rate (from ``log``'s labeled rows), refused requests per arm and, given
        request latencies per arm, latency."""
        g = Guardrails.parse(experiment.config.get("guardrails"))
        plan = analysis.Plan.from_config(experiment.config)
        control = self.registry.get(f"{experiment.model}:{experiment.control_version}")
        checks = []
        if control.task == "classification":
            labeled = np.flatnonzero(log.labeled)
            wrong = label_values(
                METRICS["error_rate"],
                [log.outputs[i] for i in labeled],
                [log.labels[i] for i in labeled],
            )
            arms = log.arms[labeled]
            checks.append(
                check_error_rate(
                    g,
                    wrong[arms == TREATMENT],
                    wrong[arms == CONTROL],
                    tuning_n=plan.tuning_n,
                    alpha=plan.alpha,
                )
            )
        refused = book.refusals(self.store, experiment)
        counts = {}
        for arm, version in (
            (CONTROL, experiment.control_version),
            (TREATMENT, experiment.candidate_version),
        ):
            bad = refused.get(version, 0)
            times = list(latency_ms[arm]) if latency_ms is not None else []
            counts[arm] = ArmCounts(predictions.get(arm, 0) + bad, bad, times)
        checks.append(check_failures(g, counts[TREATMENT], counts[CONTROL], "refused"))
        if latency_ms is not None:
            checks.append(check_latency(g, counts[TREATMENT], counts[CONTROL]))
        return checks

    # -- the two analyses ------------------------------------------------------------------

    def _ab(
        self,
        report: ExperimentReport,
        experiment: Experiment,
        m: Metric,
        plan: analysis.Plan,
        log: book.ExperimentLog,
        seconds: float,
        rescore: int,
    ) -> None:
        counts = {a: int(np.sum(log.arms == a)) for a in ARMS}
        assigned = _assignments(log)
        srm = analysis.srm_check(assigned, experiment.split)
        report.srm = {
            "counts": assigned,
            "counted": "units (a request without a unit id counts once)",
            "expected_shares": {CONTROL: 1 - experiment.split, TREATMENT: experiment.split},
            "chi2": _finite(srm.statistic),
            "p_value": _finite(srm.p_value),
            "ok": not (math.isfinite(srm.p_value) and srm.p_value < plan.srm_alpha),
        }
        values, observed, evidence = self._observations(experiment, m, log)
        arms = log.arms
        t_values = values[observed & (arms == TREATMENT)]
        c_values = values[observed & (arms == CONTROL)]
        ratio = experiment.split / (1 - experiment.split)
        result = analysis.compare_arms(m, t_values, c_values, plan, ratio)
        report.comparison = result
        obs = result.observations
        rates = {a: obs[a] / seconds for a in ARMS}
        report.verdict = analysis.decide(m, result, plan, srm=srm, rates=rates, evidence=evidence)
        for arm in ARMS:
            mask = arms == arm
            report.arms[arm] = {
                "version": experiment.candidate_version
                if arm == TREATMENT
                else experiment.control_version,
                "predictions": counts[arm],
                "observations": obs[arm],
                "value": _finite(result.treatment if arm == TREATMENT else result.control),
                "latency_ms": comparison.percentiles(log.latency_ms[mask]),
            }
        self._agreement(report, experiment, m, plan, log, values, observed, rescore)
        report.guardrails = self._checks(
            experiment,
            log,
            counts,
            {a: log.latency_ms[arms == a].tolist() for a in ARMS},
        )
        served = set(log.versions[arms == CONTROL].tolist())
        if len(served) > 1:
            report.warnings.append(
                f"The control arm was answered by versions {sorted(served)}: the production "
                "alias moved during the experiment."
            )
        both = _units_in_both_arms(log)
        if both:
            report.warnings.append(
                f"{both} unit(s) appear in both arms (requests whose rows name several units, "
                "or a split change): their rows are counted where they were answered."
            )

    def _observations(
        self, experiment: Experiment, m: Metric, log: book.ExperimentLog
    ) -> tuple[np.ndarray, np.ndarray, dict[str, int]]:
        """Metric value per row, which rows are observations, and the evidence per arm that
        the too-few-outcomes rule counts (labels, or predictions with an outcome)."""
        if m.source == "labels":
            values = np.full(len(log), np.nan)
            idx = np.flatnonzero(log.labeled)
            values[idx] = label_values(
                m, [log.outputs[i] for i in idx], [log.labels[i] for i in idx]
            )
            observed = log.labeled & ~np.isnan(values)
            evidence = {a: int(np.sum(observed & (log.arms == a))) for a in ARMS}
            return values, observed, evidence
        assert experiment.outcome is not None
        got = book.outcome_values(self.store, experiment, experiment.outcome)
        values, seen = outcome_values(m, log.ids, got)
        observed = np.ones(len(log), dtype=bool)
        evidence = {a: int(np.sum(seen & (log.arms == a))) for a in ARMS}
        return values, observed, evidence

    def _agreement(
        self,
        report: ExperimentReport,
        experiment: Experiment,
        m: Metric,
        plan: analysis.Plan,
        log: book.ExperimentLog,
        values: np.ndarray,
        observed: np.ndarray,
        rescore: int,
    ) -> None:
        """Re-score recent logged inputs with both versions: how often they agree, and what a
        comparison restricted to the disagreements (where all of the difference lives) needs."""
        if rescore <= 0 or len(log) == 0:
            return
        take = np.arange(max(0, len(log) - rescore), len(log))
        inputs = book.inputs(self.store, [log.ids[i] for i in take])
        rows = [inputs.get(log.ids[i]) for i in take]
        keep = [i for i, r in zip(take, rows, strict=True) if r is not None]
        frame = [r for r in rows if r is not None]
        if not frame:
            return
        answers = {}
        for arm, version in (
            (CONTROL, experiment.control_version),
            (TREATMENT, experiment.candidate_version),
        ):
            model = self.registry.load(f"{experiment.model}:{version}")
            scored = model.score(pd.DataFrame(frame), on_error="split")
            outputs: list[dict[str, Any] | None] = [None] * len(frame)
            for pos, out in zip(scored.rows.tolist(), scored.records(), strict=True):
                outputs[pos] = out
            answers[arm] = outputs
        both = [
            j
            for j in range(len(frame))
            if answers[CONTROL][j] is not None and answers[TREATMENT][j] is not None
        ]
        first: list[dict[str, Any]] = [answers[CONTROL][j] or {} for j in both]
        second: list[dict[str, Any]] = [answers[TREATMENT][j] or {} for j in both]
        agree = comparison.agreement(first, second)
        report.agreement = {"source": "re-scored logged inputs", **agree.to_dict()}
        disagreement = 1 - agree.rate if math.isfinite(agree.rate) else math.nan
        if not (disagreement > 0) or report.comparison is None:
            return
        rows_idx = np.array([keep[j] for j in both])
        differs = np.array([not _same_answer(a, b) for a, b in zip(first, second, strict=True)])
        trig = rows_idx[differs]
        arms = log.arms[trig]
        ok = observed[trig]
        t_vals = values[trig][ok & (arms == TREATMENT)]
        c_vals = values[trig][ok & (arms == CONTROL)]
        ratio = experiment.split / (1 - experiment.split)
        scaled = replace(plan, min_effect=report.comparison.min_effect / disagreement)
        triggered = analysis.compare_arms(m, t_vals, c_vals, scaled, ratio)
        report.triggered = triggered
        report.disagreement_sample = {
            "disagreement": disagreement,
            "on_all_traffic": _ceil(report.comparison.planned),
            "on_disagreements": _ceil(triggered.planned),
            "traffic_for_disagreements": _ceil(
                {a: v / disagreement for a, v in triggered.planned.items()}
            ),
        }

    def _shadow(
        self,
        report: ExperimentReport,
        experiment: Experiment,
        m: Metric,
        plan: analysis.Plan,
        log: book.ExperimentLog,
        control: ModelVersion,
    ) -> None:
        health = comparison.shadow_health(log.latency_ms, log.shadow_outputs)
        report.shadow = health
        answered = [
            i
            for i, s in enumerate(log.shadow_outputs)
            if s is not None and "error" not in s and log.shadow_versions[i] is not None
        ]
        first = [log.outputs[i] for i in answered]
        second = [log.shadow_outputs[i] for i in answered]
        agree = comparison.agreement(first, second)  # type: ignore[arg-type]
        report.agreement = {"source": "shadow answers", **agree.to_dict()}
        labeled = [i for i in answered if log.labeled[i]]
        labels = [log.labels[i] for i in labeled]
        ctrl = label_values(m, [log.outputs[i] for i in labeled], labels)
        cand = label_values(m, [log.shadow_outputs[i] for i in labeled], labels)  # type: ignore[misc]
        keep = ~(np.isnan(ctrl) | np.isnan(cand))
        result = comparison.compare_pairs(m, cand[keep], ctrl[keep], plan)
        report.comparison = result
        end = experiment.stopped_at or utcnow()
        seconds = max((end - experiment.phase_started_at).total_seconds(), 1e-9)
        report.verdict = analysis.decide(
            m, result, plan, rates={"pairs": result.observations["pairs"] / seconds}, paired=True
        )
        report.arms[CONTROL] = {
            "version": experiment.control_version,
            "predictions": len(log),
            "observations": int(keep.sum()),
            "value": _finite(result.control),
            "latency_ms": health.latency_ms["primary"],
        }
        report.arms["shadow"] = {
            "version": experiment.candidate_version,
            "predictions": health.shadowed,
            "observations": int(keep.sum()),
            "value": _finite(result.treatment),
            "latency_ms": health.latency_ms["shadow"],
        }
        disagreement = 1 - agree.rate if math.isfinite(agree.rate) else math.nan
        if m.binary and disagreement > 0:
            # What the same difference would take: labeled pairs here (only disagreements
            # count), against labeled predictions per arm in an A/B test at this baseline.
            base = result.control
            if not math.isfinite(base):
                accuracy = control.metrics.get("accuracy", math.nan)
                base = accuracy if m.name == "accuracy" else 1 - accuracy
            effect = result.min_effect
            h = analysis.binary_effect(base, effect, m.direction)
            per_arm = stats.required_nobs(abs(h), plan.alpha, plan.power) if h else math.inf
            pairs = stats.mcnemar_nobs(disagreement, effect, plan.alpha, plan.power)
            report.disagreement_sample = {
                "disagreement": disagreement,
                "labeled_pairs_here": _ceil({"n": pairs})["n"],
                "ab_test_per_arm": _ceil({"n": per_arm})["n"],
            }

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


def _same_answer(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    if "value" in a:
        return bool(a["value"] == b.get("value"))
    return str(a.get("label")) == str(b.get("label"))


def _assignments(log: book.ExperimentLog) -> dict[str, int]:
    """What was assigned to each arm: distinct units, and each request without a unit (its
    rows share a timestamp and a latency in the log). A unit that makes many requests is one
    assignment: counting its requests would see a mismatch that is only its habit."""
    seen: dict[str, set[Any]] = {a: set() for a in ARMS}
    for i, (unit, arm) in enumerate(zip(log.units, log.arms.tolist(), strict=True)):
        if arm in seen:
            seen[arm].add(unit if unit is not None else (log.created_at[i], log.latency_ms[i]))
    return {a: len(v) for a, v in seen.items()}


def _units_in_both_arms(log: book.ExperimentLog) -> int:
    seen: dict[str, str] = {}
    both: set[str] = set()
    for unit, arm in zip(log.units, log.arms.tolist(), strict=True):
        if unit is None:
            continue
        first = seen.setdefault(unit, arm)
        if first != arm:
            both.add(unit)
    return len(both)


def _ceil(values: Mapping[str, float]) -> dict[str, int | None]:
    return {k: math.ceil(v) if math.isfinite(v) else None for k, v in values.items()}


def _finite(v: float) -> float | None:
    return float(v) if v is not None and math.isfinite(v) else None
