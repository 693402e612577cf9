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

    def outputs(self, checked: Validated, rows: np.ndarray | None) -> Outputs:
        """The wrapped engine's outputs, after the gate opens."""
        self.calls.append(checked.n_rows)
        self.inside.set()
        if self.gate is not None:
            self.gate.wait(30)
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


def test_a_shadow_failing_on_every_row_stops_costing_a_call_per_request(candidate):
    """A candidate that raises on every row: each request's answer is the error, and once whole
    batches failed request by request, a failing merged call stands for its requests (one call
    per batch, not one per request)."""
    served, engine, rows = candidate
    engine.broken = True
    metrics = Metrics()
    scorer = ShadowScorer(metrics, interval=0.2, max_age=10.0)
    scorer.start()
    calls = []
    try:
        for _ in range(5):
            before = len(engine.calls)
            slots = [scorer.submit(served, served.names, [row]) for row in rows[:10]]
            wait_for(lambda: all(s.done for s in slots), "the shadow never answered")  # noqa: B023
            calls.append(len(engine.calls) - before)
            for slot in slots:
                assert slot.outputs is not None
                assert slot.outputs[0]["error"] == "RuntimeError: candidate broken on purpose"
    finally:
        scorer.stop()
    assert calls[:2] == [11, 11] and calls[2:] == [1, 1, 1]
    assert sample(metrics, "slipway_shadow_predictions_total", version="1", outcome="error") == 50
