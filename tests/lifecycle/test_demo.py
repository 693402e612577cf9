"""The quickstart's lifecycle step on its own data: drift after day 40, an estimated drop
before labels arrive, a retrained candidate that passes the gate, production untouched."""

from __future__ import annotations

from slipway.lifecycle.demo import DAYS, LABEL_DELAY, TRAINED_ON, lifecycle_demo


def test_the_loop_from_drift_to_a_gated_candidate(registry, tmp_path):
    """Windows before the drift are OK; drifted windows without labels ALERT from the
    estimate alone; the candidate passes and is left for a person."""
    demo = lifecycle_demo(registry, tmp_path / "work")
    windows = demo.report.windows
    assert len(windows) == (DAYS - TRAINED_ON) // 5
    before = windows[:4]  # days 20-40
    assert all(w.status == "OK" for w in before)
    unlabeled = [w for w in windows if w.estimation["labeled"]["status"] == "no_labels"]
    assert len(unlabeled) >= LABEL_DELAY // 5
    for w in unlabeled:
        acc = w.estimation["metrics"]["accuracy"]
        assert acc["drop"] and "estimated_performance_drop" in {r.code for r in w.reasons}
    assert demo.first_drop is not None
    assert demo.retrained.outcome in ("passed", "shadow") and demo.retrained.check.passed
    assert registry.aliases("loans") == {"production": 1}
    event = registry.audit("loans", limit=1)[0]
    assert event.detail["trigger"] == "alert" and event.detail["reason"].startswith(
        "monitoring run"
    )
    assert (tmp_path / "work" / "loans-monitoring.html").exists()
