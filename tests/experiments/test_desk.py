"""Starting, stopping and reporting experiments against the store, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

import numpy as np
import pytest

from slipway.exceptions import (
    ConfigError,
    ExperimentConflict,
    ExperimentNotFound,
    ModelNotFound,
)
from slipway.experiments import ExperimentDesk
from slipway.experiments.assignment import TREATMENT, assign
from slipway.store import experiments as book
from slipway.testing import register_reference_model
from tests.experiments.helpers import write_traffic


def records(frame, n):
    """The first ``n`` rows of a frame as JSON records."""
    return json.loads(frame.iloc[:n].to_json(orient="records"))


def traffic(experiment, inputs, accuracy, rng, n, unit_prefix="u"):
    """Synthetic A/B rows: units assigned by the experiment's salt, labels right with the
    given accuracy per arm ({"control": 0.9, "treatment": 0.92})."""
    rows = []
    for i in range(n):
        unit = f"{unit_prefix}{i}"
        arm = assign(experiment.salt, unit, experiment.split)
        version = experiment.candidate_version if arm == TREATMENT else experiment.control_version
        truth = int(rng.random() < 0.3)
        right = rng.random() < accuracy[arm]
        rows.append(
            {
                "arm": arm,
                "version": version,
                "unit": unit,
                "inputs": inputs[i % len(inputs)],
                "label": truth if right else 1 - truth,
                "truth": truth,
            }
        )
    return rows


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"mode": "ab", "candidate": 2}, ConfigError, "needs --split"),
        ({"mode": "ab", "candidate": 2, "split": 1.0}, ConfigError, "needs --split"),
        ({"mode": "shadow", "candidate": 2, "split": 0.1}, ConfigError, "--split is for A/B"),
        (
            {"mode": "shadow", "candidate": 2, "metric_name": "conversion", "outcome": "converted"},
            ConfigError,
            "never seen",
        ),
        ({"mode": "ab", "candidate": 1, "split": 0.1}, ConfigError, "already production"),
        ({"mode": "ab", "candidate": 9, "split": 0.1}, ModelNotFound, "no version 9"),
        (
            {"mode": "ab", "candidate": 2, "split": 0.1, "metric_name": "mae"},
            ConfigError,
            "does not fit a classification model",
        ),
        (
            {"mode": "ab", "candidate": 2, "split": 0.1, "metric_name": "conversion"},
            ConfigError,
            "--outcome",
        ),
        (
            {"mode": "ab", "candidate": 2, "split": 0.1, "unit_field": "customer"},
            ConfigError,
            "fields are amount, hour",
        ),
        ({"mode": "canary", "candidate": 2}, ConfigError, "shadow, ab"),
    ],
)
def test_start_refuses_what_cannot_be_analysed_and_says_why(
    registry, two_versions, options, error, match
):
    """Each bad request is refused with a message naming the problem and the way out."""
    with pytest.raises(error, match=match):
        ExperimentDesk(registry).start("fraud", **options)


def test_start_needs_a_production_version(registry):
    """A model without a production alias has no control."""
    for _ in range(2):
        register_reference_model(registry, alias=None, onnx=False)
    with pytest.raises(ModelNotFound, match="promote one first"):
        ExperimentDesk(registry).start("fraud", mode="shadow", candidate=2)


def test_one_running_experiment_per_model_and_the_error_names_it(registry, two_versions):
    """A second start names the first; once it stops, the next one starts (ids count up)."""
    desk = ExperimentDesk(registry)
    first = desk.start("fraud", mode="ab", candidate=2, split=0.1)
    assert (first.id, first.control_version, first.candidate_version) == ("fraud-1", 1, 2)
    with pytest.raises(ExperimentConflict, match="'fraud-1' \\(ab, candidate version 2"):
        desk.start("fraud", mode="shadow", candidate=2)
    desk.stop("fraud", promote=False)
    second = desk.start("fraud", mode="shadow", candidate=2)
    assert second.id == "fraud-2" and desk.get("fraud").id == "fraud-2"
    assert [e.id for e in desk.experiments("fraud")] == ["fraud-2", "fraud-1"]
    assert desk.get("fraud-1").decision == "abandoned"
    with pytest.raises(ExperimentNotFound, match="latest: fraud-2, fraud-1"):
        desk.get("fraud-7")


def test_the_split_only_grows_and_each_change_starts_a_phase(registry, two_versions):
    """Ramping 10% -> 50% adds a phase the report reads alone; lowering is refused."""
    desk = ExperimentDesk(registry)
    e = desk.start("fraud", mode="ab", candidate=2, split=0.1)
    write_traffic(
        registry.store,
        e,
        traffic(
            e,
            records(two_versions[0].X_val, 50),
            {"control": 0.9, "treatment": 0.9},
            np.random.default_rng(0),
            300,
        ),
    )
    ramped = desk.ramp("fraud", 0.5)
    assert ramped.split == 0.5 and len(ramped.phases) == 2
    assert ramped.phase_started_at > e.phase_started_at
    assert sum(desk.report("fraud", rescore=0).srm["counts"].values()) == 0
    with pytest.raises(ConfigError, match="can only grow"):
        desk.ramp("fraud", 0.3)


def test_broken_assignment_is_caught_by_the_sample_ratio_check(registry, two_versions):
    """A logging bug that loses 30% of the treatment's rows: cannot trust (SRM)."""
    desk = ExperimentDesk(registry)
    e = desk.start("fraud", mode="ab", candidate=2, split=0.5)
    rng = np.random.default_rng(1)
    rows = traffic(
        e, records(two_versions[0].X_val, 100), {"control": 0.9, "treatment": 0.95}, rng, 2000
    )
    kept = [r for i, r in enumerate(rows) if r["arm"] != TREATMENT or i % 10 >= 3]
    write_traffic(registry.store, e, kept)
    report = desk.report("fraud", rescore=200)
    assert report.srm is not None and not report.srm["ok"]
    assert report.verdict.code == "cannot_trust" and "SRM" in report.verdict.text
    assert report.to_dict()["verdict"]["decided_by"] == "SRM check"


def test_a_worse_candidate_is_not_promoted_unless_forced(registry, two_versions):
    """stop --promote refuses a *worse* verdict; --force promotes through Registry.promote,
    which records the move in the audit trail; the final report is kept with the experiment."""
    desk = ExperimentDesk(registry)
    e = desk.start("fraud", mode="ab", candidate=2, split=0.5)
    write_traffic(
        registry.store,
        e,
        traffic(
            e,
            records(two_versions[0].X_val, 100),
            {"control": 0.92, "treatment": 0.70},
            np.random.default_rng(2),
            1200,
        ),
    )
    assert desk.report("fraud", rescore=100).verdict.code == "worse"
    with pytest.raises(ExperimentConflict, match="says the candidate is worse.*--force"):
        desk.stop("fraud", promote=True)
    assert registry.aliases("fraud") == {"production": 1}
    stopped, final = desk.stop("fraud", promote=True, force=True)
    assert registry.aliases("fraud") == {"production": 2}
    stop_event, promote_event = registry.audit("fraud", limit=2)
    assert (promote_event.action, promote_event.from_version, promote_event.to_version) == (
        "promote",
        1,
        2,
    )
    assert stop_event.action == "experiment_stop" and stop_event.detail["forced"] is True
    assert stop_event.detail["experiment"] == e.id and stop_event.detail["decision"] == "promoted"
    assert stopped.decision == "promoted" and stopped.stopped_by == "tester"
    assert book.get(registry.store, e.id).report["verdict"]["code"] == "worse"
    assert final.verdict.code == "worse"


def test_conversion_is_read_from_business_outcomes(registry, two_versions):
    """--metric conversion: predictions with the named outcome count as converted, the others
    as not; a planted lift (8% -> 14%) is better."""
    desk = ExperimentDesk(registry)
    e = desk.start(
        "fraud", mode="ab", candidate=2, split=0.5, metric_name="conversion", outcome="converted"
    )
    rng = np.random.default_rng(3)
    rows = traffic(
        e, records(two_versions[0].X_val, 100), {"control": 1, "treatment": 1}, rng, 4000
    )
    for r in rows:
        del r["truth"]
    ids = write_traffic(registry.store, e, rows)
    rate = {"control": 0.08, "treatment": 0.14}
    converted = [
        (pid, "converted", 1.0)
        for pid, r in zip(ids, rows, strict=True)
        if rng.random() < rate[r["arm"]]
    ]
    book.record_outcomes(registry.store, converted)
    book.record_outcomes(registry.store, [(ids[0], "revenue", 10.0)])  # another outcome: ignored
    report = desk.report("fraud", rescore=0)
    c = report.comparison
    assert c is not None
    assert c.observations == {a: report.arms[a]["predictions"] for a in ("control", "treatment")}
    assert c.treatment == pytest.approx(0.14, abs=0.02) and c.control == pytest.approx(
        0.08, abs=0.02
    )
    assert report.verdict.code == "better"


def test_values_too_large_to_add_up_are_cannot_trust_not_no_difference(registry, two_versions):
    """Outcome values whose sums overflow double precision (the API refuses them; the store may
    hold older ones) give a verdict that says the metric cannot be computed, and JSON without
    NaN, never "no detectable difference"."""
    desk = ExperimentDesk(registry)
    e = desk.start("fraud", mode="ab", candidate=2, split=0.5, metric_name="value",
                   outcome="revenue")  # fmt: skip
    rng = np.random.default_rng(3)
    rows = traffic(e, records(two_versions[0].X_val, 100), {"control": 1, "treatment": 1}, rng,
                   600)  # fmt: skip
    for r in rows:
        del r["truth"]
    ids = write_traffic(registry.store, e, rows)
    values = [1e308, -1e308, 1.7e308, 0.0]
    book.record_outcomes(registry.store, [(p, "revenue", values[i % 4]) for i, p in enumerate(ids)])
    with np.errstate(over="ignore", invalid="ignore"):
        report = desk.report("fraud", rescore=0)
    assert report.verdict.code == "cannot_trust"
    assert "cannot be computed" in report.verdict.text
    json.dumps(report.to_dict(), allow_nan=False)


def test_a_fresh_experiment_reports_too_few_outcomes(registry, two_versions):
    """No traffic yet: every section renders and the verdict is cannot trust (too few)."""
    desk = ExperimentDesk(registry)
    for mode, split in (("ab", 0.2), ("shadow", None)):
        desk.start("fraud", mode=mode, candidate=2, split=split)
        report = desk.report("fraud")
        assert report.verdict.code == "cannot_trust" and "too few" in report.verdict.text
        data = report.to_dict()
        json.dumps(data)  # no NaN or numpy value leaks into the JSON
        assert "<html" in report.to_html()
        desk.stop("fraud", promote=False)


def test_starts_and_stops_are_audited_with_their_actor_and_channel(registry, two_versions):
    """start and stop record experiment_start and experiment_stop events; an actor and a
    channel given (as the console gives them) are recorded on the stop and the promotion."""
    desk = ExperimentDesk(registry)
    e = desk.start("fraud", mode="shadow", candidate=2)
    started = registry.audit("fraud", limit=1)[0]
    assert (started.action, started.actor, started.version) == ("experiment_start", "tester", 2)
    assert started.detail["experiment"] == e.id and "via" not in started.detail
    stopped, _ = desk.stop(e.id, promote=True, actor="ops-admin", via="ui")
    stop_event, promote_event = registry.audit("fraud", limit=2)
    assert (promote_event.action, promote_event.actor) == ("promote", "ops-admin")
    assert promote_event.detail["via"] == "ui"
    assert (stop_event.action, stop_event.actor, stop_event.detail["via"]) == (
        "experiment_stop",
        "ops-admin",
        "ui",
    )
    assert stop_event.detail["forced"] is False and stopped.stopped_by == "ops-admin"
