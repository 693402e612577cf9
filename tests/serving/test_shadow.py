"""The shadow scorer: few merged calls with each request's exact answers, a bounded queue, and a
shutdown that neither waits for a stuck shadow nor loses count of a row."""

from __future__ import annotations

import threading
import time
from typing import Any

import numpy as np
import pytest

from slipway.backends import Outputs
from slipway.clock import utcnow
from slipway.predict import Model
from slipway.serving.metrics import Metrics
from slipway.serving.runtime import Served
from slipway.serving.shadow import ShadowScorer
from slipway.testing import fit_reference_model, register_reference_model
from slipway.validation import Validated


class Engine:
    """A version's engine that counts its calls and can be held inside one (``gate``)."""

    def __init__(self, engine: Any) -> None:
        self.engine, self.name = engine, engine.name
        self.calls: list[int] = []
        self.gate: threading.Event | None = None
        self.inside = threading.Event()
        self.broken = False
        self.delay = 0.0  # seconds each call takes

    def outputs(self, checked: Validated, rows: np.ndarray | None) -> Outputs:
        """The wrapped engine's outputs, after the gate opens."""
        self.calls.append(checked.n_rows)
        self.inside.set()
        if self.gate is not None:
            self.gate.wait(30)
        time.sleep(self.delay)
        if self.broken:
            raise RuntimeError("candidate broken on purpose")
        return self.engine.outputs(checked, rows)


@pytest.fixture
def candidate(registry) -> tuple[Served, Engine, list[dict[str, Any]]]:
    """fraud:1 served through a counting :class:`Engine`, and 200 rows of its data."""
    fitted = fit_reference_model()
    register_reference_model(registry, fitted)
    model = registry.load("fraud:1")
    engine = Engine(model.engine)
    wrapped = Model(model.pipeline, model.version, engine)
    rows = [
        {k: v.item() if hasattr(v, "item") else v for k, v in r.items()}
        for r in fitted.X_val.iloc[:50].to_dict("records")
    ] * 4
    return Served(wrapped, utcnow()), engine, rows


def sample(metrics: Metrics, name: str, **labels: str) -> float:
    """A counter's value (0 when never incremented)."""
    return metrics.registry.get_sample_value(name, {"model": "fraud", **labels}) or 0.0


def wait_for(condition: Any, what: str) -> None:
    """Poll ``condition`` for up to 10 s."""
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.01)


def test_requests_queued_together_are_scored_in_few_calls_with_their_own_answers(candidate):
    """200 one-row requests arriving over a fraction of the gathering interval become one or
    two model calls, not 200, and each request's slot holds exactly what the version answers
    for that row alone."""
    served, engine, rows = candidate
    metrics = Metrics()
    scorer = ShadowScorer(metrics, interval=2.0, max_age=10.0)
    scorer.start()
    try:
        slots = []
        for row in rows:
            slots.append(scorer.submit(served, served.names, [row]))
            time.sleep(0.001)  # requests trickle in: the worker must not wake for each
        wait_for(lambda: all(s.done for s in slots), "the shadow never answered")
    finally:
        scorer.stop()
    assert sum(engine.calls) == 200 and len(engine.calls) <= 2
    alone = served.model.score(rows).probabilities
    for slot, p in zip(slots, alone, strict=True):
        assert slot.outputs is not None and len(slot.outputs) == 1
        assert slot.outputs[0]["probabilities"]["1"] == pytest.approx(p[1], abs=1e-12)
    assert sample(metrics, "slipway_shadow_predictions_total", version="1", outcome="ok") == 200


def test_positional_rows_in_another_order_are_read_by_name(candidate):
    """Rows sent positionally in production's field order reach a shadow version whose fields
    are in another order by name, so it scores the same values."""
    served, _, rows = candidate
    names = tuple(reversed(served.names))
    positional = [[row[n] for n in names] for row in rows[:5]]
    scorer = ShadowScorer(Metrics())
    scorer.start()
    try:
        slot = scorer.submit(served, names, positional)
        wait_for(lambda: slot.done, "the shadow never answered")
    finally:
        scorer.stop()
    alone = served.model.score(rows[:5]).probabilities
    assert slot.outputs is not None
    got = [o["probabilities"]["1"] for o in slot.outputs]
    assert got == pytest.approx(alone[:, 1].tolist(), abs=1e-12)


def test_a_full_queue_drops_and_counts_without_waiting(candidate):
    """Beyond max_rows (the call in progress included) new work is dropped at once and
    counted; the queue never holds more."""
    served, engine, rows = candidate
    engine.gate = threading.Event()
    metrics = Metrics()
    scorer = ShadowScorer(metrics, max_rows=10)
    scorer.start()
    try:
        first = scorer.submit(served, served.names, rows[:4])
        assert engine.inside.wait(10)
        slots = [scorer.submit(served, served.names, rows[:3]) for _ in range(5)]
        assert scorer.depth <= 10
        dropped = [s for s in slots if s.done]
        assert len(dropped) == 3 and all(s.outputs is None for s in dropped)
        assert sample(metrics, "slipway_shadow_dropped_total", reason="queue_full") == 9
    finally:
        engine.gate.set()
        scorer.stop()
    assert first.outputs is not None


def test_stop_does_not_wait_for_a_stuck_shadow_and_counts_every_row_once(candidate):
    """At shutdown a shadow stuck in its call (a candidate that sleeps) is not waited for:
    its rows and the queued ones are counted as dropped at shutdown, their slots are filled
    (the log writes the rows), and the answer that comes later is not counted again."""
    served, engine, rows = candidate
    engine.gate = threading.Event()
    metrics = Metrics()
    scorer = ShadowScorer(metrics)
    scorer.start()
    stuck = scorer.submit(served, served.names, rows[:4])
    assert engine.inside.wait(10)
    queued = [scorer.submit(served, served.names, rows[:3]) for _ in range(2)]
    scorer.stop(timeout=0.1)
    assert not engine.gate.is_set()  # stop returned while the candidate was still inside
    assert all(s.done and s.outputs is None for s in [stuck, *queued])
    assert sample(metrics, "slipway_shadow_dropped_total", reason="shutdown") == 10
    assert scorer.depth == 0
    engine.gate.set()  # the call ends after the stop: nothing more is counted or filled
    time.sleep(0.2)
    assert stuck.outputs is None
    assert sample(metrics, "slipway_shadow_predictions_total", version="1", outcome="ok") == 0
    late = scorer.submit(served, served.names, rows[:2])
    assert late.done and late.outputs is None
    assert sample(metrics, "slipway_shadow_dropped_total", reason="stopped") == 2


def test_a_shadow_failing_on_every_row_is_dropped_at_submit_and_probed(candidate):
    """A candidate that raises on every row: each request of the first two batches is tried
    alone and answered with the error; then the version is failing and its work is dropped at
    submit (no call, counted as failing), but for one probe per probe_interval; when a probe
    answers, every request is scored again. Each row is counted exactly once."""
    served, engine, rows = candidate
    engine.broken = True
    metrics = Metrics()
    scorer = ShadowScorer(metrics, interval=0.2, max_age=10.0, probe_interval=0.5)
    scorer.start()
    calls, slots = [], []
    try:
        for _ in range(2):
            before = len(engine.calls)
            batch = [scorer.submit(served, served.names, [row]) for row in rows[:10]]
            wait_for(lambda: all(s.done for s in batch), "the shadow never answered")  # noqa: B023
            calls.append(len(engine.calls) - before)
            assert all(
                s.outputs is not None
                and s.outputs[0]["error"] == "RuntimeError: candidate broken on purpose"
                for s in batch
            )
            slots += batch
        before = len(engine.calls)
        dropped = [scorer.submit(served, served.names, [row]) for row in rows[:10]]
        assert all(s.done and s.outputs is None for s in dropped)  # at once, not queued
        assert scorer.depth == 0 and len(engine.calls) == before
        time.sleep(0.6)  # the probe interval passes: the next request probes, the rest drop
        probe = scorer.submit(served, served.names, [rows[0]])
        more = [scorer.submit(served, served.names, [row]) for row in rows[1:5]]
        wait_for(lambda: probe.done, "the probe was never answered")
        assert probe.outputs is not None and "candidate broken" in probe.outputs[0]["error"]
        assert len(engine.calls) == before + 1 and all(s.outputs is None for s in more)
        engine.broken = False  # it recovers: the next probe answers, then all are scored
        time.sleep(0.6)
        healed = scorer.submit(served, served.names, [rows[0]])
        wait_for(lambda: healed.done, "the probe was never answered")
        after = [scorer.submit(served, served.names, [row]) for row in rows[:10]]
        wait_for(lambda: all(s.done for s in after), "the shadow never answered")
        assert healed.outputs is not None and "probabilities" in healed.outputs[0]
        assert all(s.outputs is not None and "probabilities" in s.outputs[0] for s in after)
    finally:
        scorer.stop()
    assert calls == [11, 11]  # the failing merged call, then each request alone
    errors = sample(metrics, "slipway_shadow_predictions_total", version="1", outcome="error")
    ok = sample(metrics, "slipway_shadow_predictions_total", version="1", outcome="ok")
    failing = sample(metrics, "slipway_shadow_dropped_total", reason="failing")
    assert (errors, ok, failing) == (21, 11, 14)  # 46 rows submitted, each counted once


def test_a_shadow_stuck_in_its_call_is_dropped_at_submit_until_a_probe_is_fast(candidate):
    """A call that runs longer than max_age (its answers would miss their log rows) makes the
    version stalled: new work is dropped at once (counted as stalled) while it runs and, once
    it returned, for probe_interval; then one probe goes through, and a fast probe ends it."""
    served, engine, rows = candidate
    engine.gate = threading.Event()
    metrics = Metrics()
    scorer = ShadowScorer(metrics, interval=0.01, max_age=0.3, probe_interval=0.5)
    scorer.start()
    try:
        stuck = scorer.submit(served, served.names, rows[:2])
        assert engine.inside.wait(10)
        queued = scorer.submit(served, served.names, rows[:3])  # the call is young: queued
        assert not queued.done
        time.sleep(0.4)
        dropped = [scorer.submit(served, served.names, rows[:1]) for _ in range(4)]
        assert all(s.done and s.outputs is None for s in dropped)
        assert sample(metrics, "slipway_shadow_dropped_total", reason="stalled") == 4
        engine.gate.set()  # the call returns, 0.4 s late: still stalled for probe_interval
        wait_for(lambda: stuck.done, "the stuck call never returned")
        calls = len(engine.calls)
        wait_for(lambda: scorer.depth == 0, "the stale work was never skipped")
        assert len(engine.calls) == calls and not queued.done  # too old: left to the log
        late = scorer.submit(served, served.names, rows[:1])
        assert late.done and late.outputs is None
        time.sleep(0.6)
        engine.gate = None
        probe = scorer.submit(served, served.names, rows[:1])
        wait_for(lambda: probe.done, "the probe was never answered")
        after = scorer.submit(served, served.names, rows[:5])
        wait_for(lambda: after.done, "the shadow never answered after the probe")
    finally:
        if engine.gate is not None:
            engine.gate.set()
        scorer.stop()
    assert probe.outputs is not None and after.outputs is not None and len(after.outputs) == 5
    assert sample(metrics, "slipway_shadow_dropped_total", reason="stalled") == 5
    assert sample(metrics, "slipway_shadow_predictions_total", version="1", outcome="ok") == 8


def test_a_failing_shadow_that_was_also_slow_stays_failing_once_it_is_fast(candidate):
    """A candidate that raises slowly becomes failing while stalled; when its probe then fails
    fast, the version is still failing (its work dropped at submit), not scored batch by batch
    again as if it had recovered."""
    served, engine, rows = candidate
    engine.broken, engine.delay = True, 0.3
    metrics = Metrics()
    scorer = ShadowScorer(metrics, interval=0.01, max_age=0.2, probe_interval=0.3)
    scorer.start()
    try:
        first = [scorer.submit(served, served.names, [row]) for row in rows[:2]]
        wait_for(lambda: all(s.done for s in first), "the shadow never answered")
        for delay in (0.3, 0.0):  # the second batch fails alone and slowly, then one fast
            engine.delay = delay
            time.sleep(0.35)
            probe = scorer.submit(served, served.names, [rows[0]])
            wait_for(lambda: probe.done, "the probe was never answered")  # noqa: B023
            assert probe.outputs is not None and "candidate broken" in probe.outputs[0]["error"]
        calls = len(engine.calls)
        after = [scorer.submit(served, served.names, [row]) for row in rows[:5]]
        assert all(s.done and s.outputs is None for s in after)
    finally:
        scorer.stop()
    assert len(engine.calls) == calls
    assert sample(metrics, "slipway_shadow_dropped_total", reason="failing") == 5
