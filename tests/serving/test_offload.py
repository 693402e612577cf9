"""Long model calls run in the inference threads: same answers and errors, the loop stays free."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from slipway.config import Settings
from slipway.exceptions import ContractViolation
from slipway.serving.batching import MicroBatcher
from slipway.serving.routing import Route
from tests.serving.test_batching import gather


class CountingPool(ThreadPoolExecutor):
    """A thread pool that counts the calls handed to it."""

    def __init__(self) -> None:
        super().__init__(2)
        self.calls = 0

    def submit(self, fn, /, *args, **kwargs):
        """Count, then submit."""
        self.calls += 1
        return super().submit(fn, *args, **kwargs)


def outcome(result):
    """What a client sees of one request: its outputs, or the error and its problems."""
    if isinstance(result, ContractViolation):
        return ("422", [p.to_dict() for p in result.problems])
    if isinstance(result, Exception):
        return (type(result).__name__, str(result))
    return result.outputs


@pytest.mark.parametrize("backend", ["sklearn", "auto"])
@pytest.mark.parametrize("name", ["fraud", "prices"])
def test_offloaded_calls_answer_and_fail_as_calls_on_the_loop(serve, name, backend):
    """Merged, single and refused requests give identical outputs and errors off the loop."""
    h = serve(models=(name,), serve_backend=backend)
    served = h.service.runtime.get(name)
    rows = h.rows(name, 9)
    bad = dict(rows[2], **{next(iter(rows[2])): "not a number"})
    jobs = [(served, b) for b in (rows[0:1], [bad, rows[3]], rows[4:9], rows[0:1] * 300)]
    on_loop = gather(MicroBatcher(h.service.answerer, max_rows=256), jobs)
    with CountingPool() as pool:
        off = MicroBatcher(h.service.answerer, max_rows=256, pool=pool, offload_rows=1)
        got = gather(off, jobs)
    assert pool.calls >= 2  # the merged call (then one by one after the refusal), the big one
    assert [outcome(r) for r in got] == [outcome(r) for r in on_loop]
    assert isinstance(got[1], ContractViolation)


def test_a_failing_model_fails_the_same_off_the_loop(harness, monkeypatch):
    """An exception inside the model reaches every request as it does on the loop."""
    served = harness.service.runtime.get("fraud")

    def broken(checked):
        raise RuntimeError("the model broke")

    monkeypatch.setattr(served.model, "infer", broken)
    jobs = [(served, harness.rows("fraud", 2)), (served, harness.rows("fraud", 1))]
    on_loop = gather(MicroBatcher(harness.service.answerer), jobs)
    with CountingPool() as pool:
        got = gather(MicroBatcher(harness.service.answerer, pool=pool, offload_rows=1), jobs)
    assert pool.calls == 3  # merged, then each request alone
    assert [outcome(r) for r in got] == [outcome(r) for r in on_loop]
    assert outcome(got[0]) == ("RuntimeError", "the model broke")


def test_only_scikit_learn_and_large_onnx_calls_leave_the_loop(serve, tmp_path):
    """ONNX calls under SERVE_OFFLOAD_ROWS stay on the loop; scikit-learn calls never do."""
    h = serve(models=("fraud",))
    onnx = h.service.runtime.get("fraud")
    assert onnx.model.backend == "onnx"
    batcher = h.service.batcher
    assert batcher.pool is not None and batcher.offload_rows == 64
    assert not batcher.offloaded(onnx, 63) and batcher.offloaded(onnx, 64)
    sk = serve(settings=Settings(home=tmp_path / "sk"), serve_backend="sklearn").service
    assert sk.batcher.offloaded(sk.runtime.get("fraud"), 1)
    none = serve(settings=Settings(home=tmp_path / "no"), serve_inference_threads=0).service
    assert not none.batcher.offloaded(none.runtime.get("fraud"), 10_000)


def test_health_answers_while_a_big_model_call_runs(serve, monkeypatch):
    """/health answers while a 128-row scikit-learn call is still inside the model."""
    h = serve(models=("fraud",), serve_backend="sklearn")
    served = h.service.runtime.get("fraud")
    inside, release, finished = threading.Event(), threading.Event(), threading.Event()
    infer = served.model.infer

    def slow(checked):
        inside.set()
        release.wait(timeout=10)
        finished.set()
        return infer(checked)

    monkeypatch.setattr(served.model, "infer", slow)
    rows = h.rows("fraud", 1) * 128
    answered = []
    caller = threading.Thread(
        target=lambda: answered.append(h.post("/v1/models/fraud/predict", {"instances": rows}))
    )
    caller.start()
    try:
        assert inside.wait(timeout=10)
        health = h.client.get("/health")
        still_inside = not finished.is_set()
    finally:
        release.set()
        caller.join(timeout=30)
    assert health.status_code == 200 and health.json() == {"status": "ok"}
    assert still_inside  # answered during the model call, not after it
    assert answered[0].status_code == 200 and len(answered[0].json()["predictions"]) == 128


def test_requests_keep_gathering_while_their_versions_pool_share_is_busy(harness, monkeypatch):
    """While a version's off-loop call runs, requests arriving one loop turn apart join one
    batch (full ones queue, oldest first) instead of each taking a pool call of its own."""
    served = harness.service.runtime.get("fraud")
    real, started, release = served.model.infer, threading.Event(), threading.Event()

    def slow_first(checked):
        if not started.is_set():
            started.set()
            release.wait(10)
        return real(checked)

    monkeypatch.setattr(served.model, "infer", slow_first)
    rows = harness.rows("fraud", 11)
    alone = [MicroBatcher(harness.service.answerer).answerer.answer(
        Route(served), [r], scope={}).outputs for r in rows]  # fmt: skip

    async def go(batcher):
        first = asyncio.ensure_future(batcher.answer(Route(served), rows[:1], scope={}))
        while not started.is_set():
            await asyncio.sleep(0.001)
        rest = []
        for r in rows[1:]:  # one request per turn of the loop, as from separate clients
            rest.append(asyncio.ensure_future(batcher.answer(Route(served), [r], scope={})))
            await asyncio.sleep(0)
        release.set()
        return await asyncio.wait_for(asyncio.gather(first, *rest), 30)

    with CountingPool() as pool:
        batcher = MicroBatcher(
            harness.service.answerer, max_rows=4, pool=pool, offload_rows=1, in_flight=1
        )
        got = asyncio.run(go(batcher))
    assert pool.calls == 4  # the slow one, then 10 rows as 4 + 4 + 2, not 10 calls
    assert [a.outputs for a in got] == alone
    assert not batcher._busy and not batcher._held and not batcher._open
