"""Reading an experiment's traffic out of the store and into its report.

:class:`Readout` loads the experiment's rows of the prediction log (its current phase), their
labels and business outcomes, re-scores a sample of logged inputs with both versions of an A/B
test, and hands the numbers to the pure functions of :mod:`~slipway.experiments.analysis` and
:mod:`~slipway.experiments.comparison`, which decide the verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from slipway.clock import utcnow
from slipway.experiments import analysis, comparison, stats
from slipway.experiments.assignment import ARMS, CONTROL, TREATMENT
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
from slipway.registry import Registry
from slipway.store import experiments as book
from slipway.store.experiments import Experiment
from slipway.versions import ModelVersion

RESCORE_ROWS = 20_000  # logged inputs re-scored by both versions for an A/B test's agreement


class Readout:
    """Reports of the experiments in one registry."""

    def __init__(self, registry: Registry) -> None:
        self.registry = registry
        self.store = registry.store

    def report(self, experiment: Experiment, *, rescore: int = RESCORE_ROWS) -> ExperimentReport:
        """Everything known about an experiment now, ending in its verdict; ``rescore`` logged
        inputs (the latest) are scored by both versions of an A/B test for their agreement."""
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

    def guardrails(self, experiment: Experiment) -> list[Check]:
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
