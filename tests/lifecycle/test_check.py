"""The gate: each check catches what it is for, and its numbers are the references'."""

from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import ttest_rel
from sklearn import metrics as skm
from statsmodels.stats.contingency_tables import mcnemar as sm_mcnemar
from statsmodels.stats.multitest import multipletests

from slipway.contract import Contract
from slipway.exceptions import CannotCheck, ModelNotFound
from slipway.lifecycle import CheckPolicy, check, checks_of, latest_checks
from slipway.lifecycle.compatibility import band_notes, contract_problems

# The slowdown limit is lifted: a loaded machine can time one version 3x slower than another
# (tests that check speed set their own limits).
FAST = {"speed": {"repeats": 10, "max_slowdown": 1000.0}, "resamples": 200}


def _policy(**extra):
    return CheckPolicy.model_validate({**FAST, **extra})


def _by_name(result):
    return {c.name: c for c in result.checks}


def test_a_candidate_worse_on_one_slice_only_is_caught_there(models):
    """Trained as if every transaction from one small country were fraud: the slice check
    names that country as the worst slice, and no other country."""
    planted = models.y[models.train].copy()
    planted[(models.X.iloc[models.train]["country"] == "NG").to_numpy()] = 1
    cand = models.register(labels=planted)
    result = check(models.registry, cand.ref, data=models.holdout(), policy=_policy())
    slices = _by_name(result)["slices"]
    assert slices.verdict == "fail" and not result.passed
    worse = [s for s in slices.details["slices"] if s["status"] == "worse"]
    assert [s["slice"] for s in worse if s["feature"] == "country"] == ["= NG"]
    worst = min(worse, key=lambda s: s["difference"])
    assert (worst["feature"], worst["slice"]) == ("country", "= NG")
    assert worst["difference"] < -0.2 and "country = NG" in slices.summary
    assert result.exit_code == 1


def test_an_equal_candidate_passes_and_is_stored_with_the_version(models):
    """The same training data: every check passes; the result is stored and audited."""
    cand = models.register()
    result = check(models.registry, cand.ref, data=models.holdout(), policy=_policy())
    assert result.passed, [c.summary for c in result.checks if c.verdict == "fail"]
    assert result.champion == "fraud:1" and result.holdout["rows"] == 2000
    stored = checks_of(models.registry, cand.ref)
    assert [s.id for s in stored] == [result.id] and stored[0].passed
    assert stored[0].result["checks"][0]["name"] == "metrics"
    audit = models.registry.audit("fraud", limit=1)[0]
    assert audit.action == "check" and audit.detail["check_id"] == result.id


def test_metric_numbers_equal_sklearn_and_statsmodels(models):
    """Point values are scikit-learn's metrics; accuracy's p-value is statsmodels' McNemar."""
    flipped = models.y[models.train].copy()
    flipped[::7] = 1 - flipped[::7]
    cand = models.register(labels=flipped)
    hold = models.holdout()
    result = check(models.registry, cand.ref, data=hold, policy=_policy())
    rows = _by_name(result)["metrics"].details["metrics"]
    y = hold.pop("is_fraud").to_numpy()
    for role, ref in (("candidate", cand.ref), ("champion", "fraud:1")):
        model = models.registry.load(ref)
        proba, labels = model.predict_proba(hold), model.predict(hold)
        assert rows["accuracy"][role] == pytest.approx(skm.accuracy_score(y, labels), abs=1e-12)
        assert rows["f1"][role] == pytest.approx(skm.f1_score(y, labels), abs=1e-12)
        assert rows["roc_auc"][role] == pytest.approx(skm.roc_auc_score(y, proba[:, 1]), abs=1e-12)
        assert rows["brier"][role] == pytest.approx(skm.brier_score_loss(y, proba[:, 1]), abs=1e-12)
        assert rows["log_loss"][role] == pytest.approx(skm.log_loss(y, proba), abs=1e-9)
    a = models.registry.load(cand.ref).predict(hold) == y
    b = models.registry.load("fraud:1").predict(hold) == y
    table = [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]
    assert rows["accuracy"]["p_value"] == pytest.approx(
        sm_mcnemar(table, exact=True).pvalue, abs=1e-12
    )


def test_slice_p_values_are_mcnemar_and_paired_t_after_benjamini_hochberg(models):
    """Slice tests equal statsmodels' McNemar (accuracy) or scipy's ttest_rel (losses), and
    the adjustment equals statsmodels' multipletests(fdr_bh)."""
    flipped = models.y[models.train].copy()
    flipped[::5] = 1 - flipped[::5]
    cand = models.register(labels=flipped)
    hold = models.holdout()
    y = hold["is_fraud"].to_numpy()
    X = hold.drop(columns="is_fraud")
    pa = models.registry.load(cand.ref).predict_proba(X)[:, 1]
    pb = models.registry.load("fraud:1").predict_proba(X)[:, 1]
    for metric in ("accuracy", "brier"):
        result = check(
            models.registry, cand.ref, data=hold, policy=_policy(slices={"metric": metric})
        )
        tested = [s for s in _by_name(result)["slices"].details["slices"] if "p_value" in s]
        expected = []
        for s in tested:
            col = X[s["feature"]]
            if s["slice"].startswith("= "):
                mask = (col.astype(str) == s["slice"][2:]).to_numpy()
            else:
                lo, hi = (float(v) for v in s["slice"][4:-1].split(", "))
                mask = ((col > lo) & (col <= hi)).to_numpy()
            if metric == "accuracy":
                a, b = ((pa > 0.5) == y)[mask], ((pb > 0.5) == y)[mask]
                table = [[np.sum(a & b), np.sum(a & ~b)], [np.sum(~a & b), np.sum(~a & ~b)]]
                expected.append(sm_mcnemar(table, exact=True).pvalue)
            else:
                expected.append(ttest_rel((pa - y)[mask] ** 2, (pb - y)[mask] ** 2).pvalue)
        assert [s["p_value"] for s in tested] == pytest.approx(expected, abs=1e-12)
        adjusted = multipletests(expected, method="fdr_bh")[1]
        assert [s["p_adjusted"] for s in tested] == pytest.approx(list(adjusted), abs=1e-12)


def test_calibration_numbers_equal_sklearn(models):
    """Brier is brier_score_loss; the reliability table is calibration_curve's bins."""
    from sklearn.calibration import calibration_curve

    cand = models.register()
    hold = models.holdout()
    result = check(models.registry, cand.ref, data=hold, policy=_policy())
    cal = _by_name(result)["calibration"].details["candidate"]
    y = hold.pop("is_fraud").to_numpy()
    p = models.registry.load(cand.ref).predict_proba(hold)[:, 1]
    assert cal["brier"] == pytest.approx(skm.brier_score_loss(y, p), abs=1e-12)
    prob_true, prob_pred = calibration_curve(y, p, n_bins=10)
    filled = [r for r in cal["reliability"] if r["rows"]]
    assert [r["observed"] for r in filled] == pytest.approx(list(prob_true), abs=1e-12)
    assert [r["predicted"] for r in filled] == pytest.approx(list(prob_pred), abs=1e-12)


def test_a_candidate_that_narrows_a_category_set_fails_contract_compatibility(models):
    """Trained without one country: clients sending it would be refused after promotion."""
    cand = models.register(rows=lambda X: X["country"] != "NG")
    result = check(models.registry, cand.ref, data=models.holdout(), policy=_policy())
    contract = _by_name(result)["contract"]
    assert contract.verdict == "fail" and not result.passed
    assert any("'NG'" in p for p in contract.details["problems"])
    assert result.holdout["refused_by_candidate"] > 0


def test_contract_problems_allow_widening_and_name_each_narrowing():
    """Widened ranges, new categories and integer->number pass; a derived plausibility band
    that narrows but still holds the champion's training values is a note; the rest is
    named."""
    old = Contract.learn(
        __import__("pandas").DataFrame(
            {"a": [1, 2, 3], "b": ["x", "y", "x"], "c": [0.5, None, 1.0], "d": [1.0, 2.0, 3.0]}
        )
    )
    pd = __import__("pandas")
    wider = Contract.learn(
        pd.DataFrame(
            {"a": [0.5, 2, 9], "b": ["x", "y", "z"], "c": [0.1, None, 2.0], "d": [0.0, 2, 5]}
        )
    )
    assert contract_problems(old, wider) == []
    narrower = Contract.learn(
        pd.DataFrame({"a": ["1", "2", "3"], "b": ["x", "x", "x"], "c": [0.7, 0.8, 0.9]}),
        bounds={"c": (0.6, 0.9)},
    )
    problems = contract_problems(old, narrower)
    assert any("field 'd' was dropped" in p for p in problems)
    assert any("field 'a': kind changed from integer to category" in p for p in problems)
    assert any("field 'b': categories no longer accepted: 'y'" in p for p in problems)
    assert any("field 'c': nulls were accepted" in p for p in problems)
    assert any(
        "field 'c': values down to 0.5 (the champion's training data)" in p for p in problems
    )
    assert any("field 'c': values up to 1 " in p for p in problems)
    champion = Contract.learn(pd.DataFrame({"d": [1.0, 2.0, 3.0]}))
    retrained = Contract.learn(pd.DataFrame({"d": [0.9, 2.0, 2.5]}))  # a narrower derived band
    assert contract_problems(champion, retrained) == []
    assert band_notes(champion, retrained) == [
        "field 'd': plausibility band [-19, 23] -> [-15.1, 18.5]"
    ]


def test_contract_problems_follow_each_fields_unseen_policy():
    """A field whose unseen categories the pipeline flags drops no client; one that now
    refuses them, after the champion flagged them, is named."""
    pd = __import__("pandas")
    frame = pd.DataFrame({"b": ["x", "y", "x"], "e": ["p", "q", "p"]})
    champion = Contract.learn(frame, unseen={"e": "flag"})
    narrower = frame.assign(b="x", e="p")
    flagged = Contract.learn(narrower, unseen={"b": "flag", "e": "flag"})
    assert contract_problems(champion, flagged) == []
    refused = Contract.learn(narrower, unseen={"b": "flag"})
    assert contract_problems(champion, refused) == [
        "field 'e': categories no longer accepted: 'q'",
        "field 'e': unseen categories were let through and would be refused",
    ]


def test_invariance_fails_on_a_perturbation_the_model_cares_about(models):
    """Amount ± 1 cent leaves predictions alone; swapping merchants does not."""
    cand = models.register()
    calm = _policy(invariance={"perturb": {"amount": 0.01}})
    outcome = _by_name(check(models.registry, cand.ref, data=models.holdout(), policy=calm))
    assert outcome["invariance"].verdict == "pass"
    swap = _policy(invariance={"perturb": {"merchant": ["grocery", "gaming"]}})
    outcome = _by_name(check(models.registry, cand.ref, data=models.holdout(), policy=swap))
    inv = outcome["invariance"]
    assert inv.verdict == "fail" and "merchant" in inv.summary
    assert max(p["label_flips"] for p in inv.details["perturbations"]) > 0


def test_speed_limits_fail_the_gate(models):
    """An absolute per-row limit below any real latency fails the speed check."""
    cand = models.register()
    result = check(
        models.registry,
        cand.ref,
        data=models.holdout(),
        policy=_policy(speed={"repeats": 10, "max_row_ms": 1e-6, "max_slowdown": 1000.0}),
    )
    speed = _by_name(result)["speed"]
    assert speed.verdict == "fail" and isinstance(speed.details["candidate"]["row_ms"], float)
    assert "onnx" in speed.details["candidate"]


def test_without_a_champion_comparisons_are_skipped(models):
    """--against none: metrics and slices are recorded, not compared."""
    cand = models.register()
    result = check(
        models.registry, cand.ref, against="none", data=models.holdout(), policy=_policy()
    )
    verdicts = {c.name: c.verdict for c in result.checks}
    assert verdicts["metrics"] == "skip" and verdicts["contract"] == "skip" and result.passed


def test_too_small_a_holdout_cannot_check(models):
    """Fewer rows than min_rows: CannotCheck naming the fix."""
    cand = models.register()
    with pytest.raises(CannotCheck, match="--data"):
        check(models.registry, cand.ref, data=models.holdout().head(20), policy=_policy())
    with pytest.raises(CannotCheck, match="the last 30d"):
        check(models.registry, cand.ref, policy=_policy())


def test_the_labeled_served_traffic_is_the_default_holdout(models, log):
    """Without --data the gate uses logged predictions that have ground truth."""
    from datetime import timedelta

    from slipway.clock import utcnow

    cand = models.register()
    hold = models.holdout()
    X, y = hold.drop(columns="is_fraud"), hold["is_fraud"].to_numpy()
    ids, _ = log.predictions("fraud@production", X, utcnow() - timedelta(days=2))
    log.feedback(ids[:1500], y[:1500], utcnow())
    result = check(models.registry, cand.ref, policy=_policy())
    assert result.holdout["source"] == "prediction log" and result.holdout["rows"] == 1500


def test_latest_checks_are_the_newest_of_each_version(models):
    """latest_checks: one stored check per checked version, the newest, newest version first."""
    cand = models.register()
    slow = _policy(speed={"repeats": 5, "max_row_ms": 1e-6, "max_slowdown": 1000.0})
    first = check(models.registry, cand.ref, data=models.holdout(), policy=slow)
    second = check(models.registry, cand.ref, data=models.holdout(), policy=_policy())
    champ = check(models.registry, "fraud:1", against=None, data=models.holdout(), policy=_policy())
    assert not first.passed and second.passed
    latest = latest_checks(models.registry, "fraud")
    assert list(latest) == [cand.version, 1]
    assert [c.id for c in latest.values()] == [second.id, champ.id]
    assert latest[cand.version].passed and latest[cand.version].against == 1
    with pytest.raises(ModelNotFound):
        latest_checks(models.registry, "nope")


def test_speed_fails_only_when_slower_than_the_champion_on_both_measures(models, monkeypatch):
    """The slowdown rule with the latencies fixed (no clock): slower by more than
    ``max_slowdown`` per row and per batch fails; slower on one measure only passes."""
    from slipway.lifecycle import compatibility
    from slipway.lifecycle.policy import CheckPolicy

    cand = models.registry.load(models.register().ref)
    champ = models.registry.load("fraud:1")
    timings = {}
    monkeypatch.setattr(compatibility, "_latency", lambda m, *a: timings[m.version.version])
    policy = CheckPolicy.model_validate({"speed": {"repeats": 5, "max_slowdown": 3.0}})
    frame = models.holdout().drop(columns="is_fraud")
    timings[1] = {"row_ms": 1.0, "batch_1000_ms": 10.0}
    timings[cand.version.version] = {"row_ms": 3.5, "batch_1000_ms": 31.0}
    slow = compatibility.check_speed(cand, champ, frame, policy)
    assert slow.verdict == "fail" and "3.1x slower than the champion (limit 3.0x)" in slow.summary
    timings[cand.version.version] = {"row_ms": 3.5, "batch_1000_ms": 29.0}
    assert compatibility.check_speed(cand, champ, frame, policy).verdict == "pass"
