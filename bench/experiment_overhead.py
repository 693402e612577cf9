"""What an experiment costs each request, in process: CPU microseconds per request, no server.

The full service (``slipway.app.create_app``, production settings: keys, rate limiting,
metrics, access log, prediction log on SQLite) is driven through its ASGI app directly, as
uvicorn would call it, by ``--clients`` concurrent coroutines sending single-row requests with
unit ids (1,000 units, cycled) to ``POST /v1/models/ref/predict`` (the direct lane). The states
are those of ``bench/experiments.py``: no experiment, an A/B test against version 2 at 50/50
and at 10%, shadow mode with version 2 as the shadow, with version 3 (a candidate that sleeps
2 s per call) and with version 4 (one that raises on every call); ``--ab`` runs only the first
three. The states run in turn, ``--rounds`` times. For each state it prints the process CPU
time per request (every thread: the event loop, the prediction log's writer, the shadow worker
or process), which moves much less than wall time on a busy machine, and the event loop's
own; the cost of ``Runtime.route`` alone; and the model calls per request and rows per call of
the versions that answer (micro-batching: an A/B split turns one call per batch into one per
arm). The table gives each state's least value over the rounds and, for CPU per request, the
median over rounds of its ratio to the no-experiment runs beside it with a sign-test interval
(bench/interleave.py), which a busy machine moves less. ``--profile`` prints the top of a
cProfile of each state.

    .venv/bin/python bench/experiment_overhead.py [--requests 20000] [--ab] [--quick] [--profile]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import pstats
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench import instructions  # noqa: E402
from bench.experiments import LOOSE, STATES, models  # noqa: E402
from bench.interleave import bracketed_ratios, median_interval  # noqa: E402

from slipway.app import create_app  # noqa: E402
from slipway.config import Settings  # noqa: E402
from slipway.experiments import ExperimentDesk  # noqa: E402
from slipway.keys import KeyStore  # noqa: E402

PATH = "/v1/models/ref/predict"
UNITS = 1000


def cpu() -> float:
    """CPU seconds of this process (every thread; nanosecond clock, where ``os.times`` ticks
    every 10 ms) and of its children."""
    t = os.times()
    return time.process_time() + t.children_user + t.children_system


async def drive(app: Any, bodies: list[bytes], token: bytes, n: int, clients: int) -> int:
    """Send ``n`` requests through the ASGI app from ``clients`` coroutines; the 200s."""
    headers = [(b"authorization", b"Bearer " + token), (b"content-type", b"application/json")]
    ok = 0
    sent = 0

    async def client() -> None:
        nonlocal ok, sent
        while sent < n:
            body = bodies[sent % len(bodies)]
            sent += 1
            scope = {
                "type": "http",
                "asgi": {"version": "3.0"},
                "http_version": "1.1",
                "method": "POST",
                "scheme": "http",
                "path": PATH,
                "raw_path": PATH.encode(),
                "root_path": "",
                "query_string": b"",
                "headers": [*headers, (b"content-length", str(len(body)).encode())],
                "client": ("127.0.0.1", 1234),
                "server": ("127.0.0.1", 8000),
                "state": {},
            }
            messages = [{"type": "http.request", "body": body, "more_body": False}]

            async def receive(messages: list[dict[str, Any]] = messages) -> dict[str, Any]:
                return messages.pop() if messages else {"type": "http.disconnect"}

            status = 0

            async def send(message: dict[str, Any]) -> None:
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]

            await app(scope, receive, send)
            ok += status == 200

    await asyncio.gather(*(client() for _ in range(clients)))
    return ok


class Calls:
    """Model calls and rows of one engine, counted by wrapping its ``outputs`` (once)."""

    def __init__(self) -> None:
        self.calls = 0
        self.rows = 0


def counted(engine: Any) -> Calls:
    """The counter of ``engine``'s model calls (installed on its first use here)."""
    found: Calls | None = getattr(engine, "bench_calls", None)
    if found is not None:
        return found
    calls = Calls()
    outputs = engine.outputs

    def counting(checked: Any, rows: Any) -> Any:
        calls.calls += 1
        calls.rows += checked.n_rows if rows is None else len(rows)
        return outputs(checked, rows)

    engine.outputs, engine.bench_calls = counting, calls
    return calls


def engines(service: Any) -> tuple[list[Calls], Calls | None]:
    """Counters of the engines that answer requests (production, an A/B candidate) and of a
    shadow candidate (None without one). An A/B arm's engine wraps the version's own engine
    (``ObservedEngine.engine``), so counting the inner engines counts every arm's calls."""
    answering = [counted(service.runtime.get("ref").model.engine)]
    active = getattr(service.runtime.policy, "_active", {}).get("ref")
    if active is None:
        return answering, None
    candidate = counted(active.candidate.model.engine)
    if active.experiment.mode == "shadow":
        return answering, candidate
    return [*answering, candidate], None


def tally(service: Any) -> tuple[int, int, int]:
    """(answering calls, answering rows, shadow calls) so far."""
    answering, shadow = engines(service)
    return (
        sum(c.calls for c in answering),
        sum(c.rows for c in answering),
        0 if shadow is None else shadow.calls,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=20_000, help="Requests per state.")
    parser.add_argument("--clients", type=int, default=32, help="Concurrent requests.")
    parser.add_argument(
        "--rounds", type=int, default=3, help="Passes over the states; each state's least is kept."
    )
    parser.add_argument(
        "--batch-rows", type=int, default=256, help="SLIPWAY_SERVE_BATCH_ROWS (1: no batching)."
    )
    parser.add_argument(
        "--ab", action="store_true", help="Only no experiment and the two A/B splits."
    )
    parser.add_argument("--quick", action="store_true", help="2,000 requests per state, 1 round.")
    parser.add_argument("--profile", action="store_true", help="Print a cProfile per state.")
    parser.add_argument(
        "--instructions",
        action="store_true",
        help="Also count the instructions per request of each state under valgrind's "
        "callgrind (every thread; independent of the machine's load; ~50x slower: use "
        "--requests 1000 or so). Needs valgrind, its headers and gcc.",
    )
    args = parser.parse_args()
    if args.instructions and not instructions.active():
        count_instructions(args)
        return
    n = 2000 if args.quick else args.requests
    rounds = 1 if args.quick else args.rounds
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    # The slow candidate's class lives in bench/: the fresh-interpreter check at registration
    # must be able to import it.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p
    )
    tmp = Path(tempfile.mkdtemp(prefix="slipway-bench-overhead-"))
    print("training the reference model and three candidates")
    registry, row = models(tmp)
    # The slow and the failing candidates misbehave from now on (they registered at full speed).
    os.environ["SLIPWAY_BENCH_SLEEP"] = "2"
    os.environ["SLIPWAY_BENCH_FAIL"] = "1"
    token = KeyStore(registry.store).create("bench", "predict")[1].encode()
    bodies = [json.dumps({"features": row, "unit_id": f"unit-{i}"}).encode() for i in range(UNITS)]
    settings = registry.settings.model_copy(
        update={
            "serve_rate_limit": 1e9,
            "serve_rate_burst": 1_000_000,
            "serve_console": False,
            "serve_batch_rows": args.batch_rows,
        }
    )
    assert isinstance(settings, Settings)
    app = create_app(settings, registry=registry)
    service = app.state.service
    desk = ExperimentDesk(registry)
    states = STATES[:3] if args.ab else STATES
    results: dict[str, list[tuple[float, float, float]]] = {}
    in_order: list[tuple[str, float]] = []  # (state, CPU us/request) in the order they ran

    async def run() -> None:
        async with app.router.lifespan_context(app):
            policy = service.runtime.policy
            for state, options in [s for _ in range(rounds) for s in states]:
                experiment = None
                if options is not None:
                    experiment = desk.start("ref", guardrails=LOOSE, **options).id
                policy.check()
                route = service.runtime.route("ref", "unit-1", row)
                assert route.experiment == experiment, (route, experiment)
                await drive(app, bodies, token, min(n, 2000), args.clients)  # warm-up
                service.log.flush()
                profile = cProfile.Profile() if args.profile else None
                calls_before = tally(service)
                before, loop_before = cpu(), time.thread_time()
                if profile is not None:
                    profile.enable()
                instructions.start()
                ok = await drive(app, bodies, token, n, args.clients)
                instructions.stop(f"{state}|{n}")
                loop = time.thread_time() - loop_before
                if profile is not None:
                    profile.disable()
                if options is not None and options["mode"] == "shadow":
                    time.sleep(1.2)  # let the shadow work of the last requests finish
                service.log.flush()
                spent = cpu() - before
                assert ok == n, f"{state}: {ok} of {n} answered"
                calls, rows, shadow = (
                    a - b for a, b in zip(tally(service), calls_before, strict=True)
                )
                # Runtime.route alone, per call.
                units = [f"unit-{i}" for i in range(UNITS)]
                route_fn = service.runtime.route
                started = time.process_time()
                for i in range(100_000):
                    route_fn("ref", units[i % UNITS], row)
                routed = (time.process_time() - started) / 100_000
                results.setdefault(state, []).append(
                    (spent / n * 1e6, loop / n * 1e6, routed * 1e6, calls / n, rows / calls)
                )
                in_order.append((state, spent / n * 1e6))
                print(
                    f"  {state:<20} {spent / n * 1e6:8.1f} us CPU/request  "
                    f"(event loop {loop / n * 1e6:6.1f})   route() {routed * 1e6:6.2f} us   "
                    f"model calls/request {calls / n:.3f}, rows/call {rows / calls:5.1f}"
                    + (f"   shadow calls {shadow}" if shadow else ""),
                    flush=True,
                )
                if profile is not None:
                    out = io.StringIO()
                    pstats.Stats(profile, stream=out).sort_stats("cumulative").print_stats(
                        "slipway|onnx|numpy", 40
                    )
                    print(out.getvalue())
                if experiment is not None:
                    desk.stop(experiment, promote=False)
                    policy.check()

    asyncio.run(run())
    least = {state: tuple(min(r[i] for r in rs) for i in range(5)) for state, rs in results.items()}
    base = least["no experiment"][0]
    print(
        f"\n{n} requests per state, {args.clients} concurrent, batch rows {args.batch_rows}, "
        f"in process (CPU time; least of {rounds} rounds)"
    )
    loop_base = least["no experiment"][1]
    # Each run against the no-experiment runs next to it (bench/interleave.py): the median
    # over rounds with its sign-test interval, steadier than a ratio of two least values.
    ratios = bracketed_ratios(in_order, "no experiment")
    print(
        f"{'state':<20} {'us/request':>10} {'x':>6} {'loop us':>8} {'x':>6} {'route() us':>10} "
        f"{'calls/req':>9} {'rows/call':>9} {'x us/request, median [interval]':>32}"
    )
    for state, (us, loop, routed, calls, rows) in least.items():
        median = median_interval(ratios[state]) if state in ratios else "1"
        print(
            f"{state:<20} {us:10.1f} {us / base:6.2f} {loop:8.1f} {loop / loop_base:6.2f} "
            f"{routed:10.2f} {calls:9.3f} {rows:9.1f} {median!s:>32}"
        )
    registry.store.dispose()
    shutil.rmtree(tmp, ignore_errors=True)


def count_instructions(args: argparse.Namespace) -> None:
    """Run this bench again under callgrind and print each state's instructions per request:
    the least over rounds, and the median over rounds of the ratio to the no-experiment runs
    beside it, with its sign-test interval."""
    workdir = Path(tempfile.mkdtemp(prefix="slipway-bench-instructions-"))
    try:
        print("running again under valgrind's callgrind (about 50x slower)", flush=True)
        code = instructions.rerun([str(Path(__file__).resolve()), *sys.argv[1:]], workdir)
        if code != 0:
            raise SystemExit(f"the run under callgrind failed (exit {code})")
        runs: list[tuple[str, float]] = []
        loop_runs: list[tuple[str, float]] = []
        for label, every, main in instructions.totals(workdir):
            state, _, n = label.rpartition("|")
            runs.append((state, every / int(n)))
            loop_runs.append((state, main / int(n)))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    print(f"\ninstructions per request (callgrind; {len(runs)} runs): every thread, and the main "
          "thread (the event loop, which bounds one worker's throughput)")  # fmt: skip
    print(f"{'state':<20} {'every thread':>12} {'x':>6} {'x, median [interval]':>24} "
          f"{'event loop':>12} {'x':>6} {'x, median [interval]':>24}")  # fmt: skip
    columns = []
    for measured in (runs, loop_runs):
        least = {state: min(v for s, v in measured if s == state) for state, _ in measured}
        columns.append((least, bracketed_ratios(measured, "no experiment")))
    for state in columns[0][0]:
        cells = []
        for least, ratios in columns:
            median = median_interval(ratios[state]) if state in ratios else "1"
            value = least[state]
            cells.append(f"{value:12,.0f} {value / least['no experiment']:6.3f} {median!s:>24}")
        print(f"{state:<20} " + " ".join(cells))


if __name__ == "__main__":
    main()
