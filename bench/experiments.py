"""What experiments cost `slipway serve`: throughput and p99 with none, an A/B split, shadow.

One server (one worker, production settings: keys, rate limiting, metrics, access log,
prediction log), up for the whole run, serves one model per state: each holds the reference
model (a 100-tree GradientBoostingClassifier on 20 features) as version 1 and the candidates
as versions 2 to 4, and has the state's experiment started (``ref`` has none). So switching
state is switching URL, and every state shares one process, one store and one prediction log:
nothing but the experiment differs between them. wrk drives one model at a time at 32
connections with requests carrying unit ids (1,000 units, cycled). The states:

1. no experiment (the baseline);
2. an A/B test, 50/50 by unit, against version 2 (the same model trained with another seed):
   the worst case for micro-batching, and the one the A/B goal is read from;
3. the same A/B test at a 10% split (the issue's CLI example), for comparison;
4. shadow mode with version 2 as the shadow (it scores every request too);
5. shadow mode with version 3, a candidate that sleeps 2 s per call;
6. shadow mode with version 4, a candidate that raises on every call (after the smoke test at
   load).

Two passes, each of ``--rounds`` interleaved rounds (bench/interleave.py): a round runs every
state between two baseline runs (``B X1 B X2 ... B Xn``, the states shuffled anew each round,
one final ``B``), each run ``--seconds`` long after a ``--warmup`` not counted, and each run
ends once the server is idle again (its shadow backlog and prediction log written), so no run
pays for the one before. Each state run is read as a ratio to the geometric mean of its
two adjacent baseline runs; per state the bench prints the median of those ratios over the
rounds with a sign-test interval (about 90%), for requests/s, p99 and server CPU per request
(user + system of the server process from /proc, from the start of the run until it is idle
again, over the requests answered: the steadiest reading on a busy machine, and for a
CPU-bound single worker the direct measure of a throughput cost), with the requests each
model call answered (micro-batching, from ``slipway_model_batch_requests``; the shadow's calls
not counted) and the shadow rows scored and dropped (errors included) over all rounds:

- **closed loop**: each connection sends its next request as soon as it is answered, so the
  server is saturated: this measures what each state costs in **throughput**;
- **paced**: the same 32 connections pace their requests (wrk's ``delay()``, see
  bench/wrklua.py) so the offered rate is ``--load`` (50%) of the median closed-loop
  no-experiment requests/s of the same run, the same for every state: this measures the
  **latency** a state adds to a request at a load every state sustains.

The goals of issue 9 are read from the pass that measures them: A/B costs at most 5% of
throughput and shadow at most 50% on two cores (closed loop); the primary p99 within 20% of
the baseline with shadow on, also with the sleeping and the failing candidate (paced). Each
verdict is "met" when the whole interval is on the goal's side, "missed" when it is all on
the other, else "cannot tell at this noise". At saturation, 32 closed-loop clients make latency
about clients / throughput (Little's law), so the closed-loop p99 of a state that costs
throughput must rise with it and says nothing more. ``--ab`` runs only the closed loop of the
first three states (what the A/B goal reads). Needs wrk (apt-get install wrk), built on LuaJIT.

    .venv/bin/python bench/experiments.py [--seconds 3] [--rounds 8] [--warmup 1] [--load 0.5]
        [--seed 0] [--ab] [--quick]
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # bench.experiment_models, for the slow candidate

from bench.experiment_models import Fail, Sleep  # noqa: E402
from bench.interleave import (  # noqa: E402
    Interval,
    bracketed_ratios,
    median_interval,
    schedule,
    verdict,
)
from bench.wrklua import wrk_body_script  # noqa: E402

from slipway.config import Settings  # noqa: E402
from slipway.experiments import ExperimentDesk  # noqa: E402
from slipway.keys import KeyStore  # noqa: E402
from slipway.registry import Registry  # noqa: E402
from slipway.serving.process import ServerProcess  # noqa: E402

PREDICT = "/v1/models/ref/predict"
UNITS = 1000
LOOSE = {"max_p99_increase_ms": 1e9, "max_failure_rate_increase": 1.0}  # measure, never stop
CLIENTS = 32
BASELINE = "no experiment"
STATES: list[tuple[str, dict[str, object] | None]] = [
    (BASELINE, None),
    ("A/B 50/50", {"mode": "ab", "candidate": 2, "split": 0.5}),
    ("A/B 90/10", {"mode": "ab", "candidate": 2, "split": 0.1}),
    ("shadow", {"mode": "shadow", "candidate": 2}),
    ("shadow, sleeps 2 s", {"mode": "shadow", "candidate": 3}),
    ("shadow, raises", {"mode": "shadow", "candidate": 4}),
]
COVERAGE = 0.9  # of the intervals around medians


@dataclass
class Result:
    state: str
    rps: float
    p50_ms: float
    p99_ms: float
    responses: int
    errors: int
    per_call: float = 0.0  # requests answered per model call (micro-batching)
    cpu_us: float = math.nan  # server CPU per request answered, until the server is idle again
    shadow: dict[str, float] = field(default_factory=dict)  # shadow rows scored, dropped


def models(tmp: Path, names: Sequence[str] = ("ref",)) -> tuple[Registry, list[float]]:
    """Register, under each of ``names``, the reference model (version 1, production), a
    second fit, a sleeping candidate and a failing one (versions 2 to 4)."""
    X, y = make_classification(n_samples=5000, n_features=20, n_informative=10, random_state=0)
    registry = Registry(Settings(home=tmp / "home", user="bench"))
    pipes = [
        make_pipeline(
            StandardScaler(), GradientBoostingClassifier(n_estimators=100, random_state=seed)
        ).fit(X, y)
        for seed in (0, 1)
    ]
    slow = make_pipeline(
        Sleep(), StandardScaler(), GradientBoostingClassifier(n_estimators=100, random_state=2)
    ).fit(X, y)
    failing = make_pipeline(
        Fail(), StandardScaler(), GradientBoostingClassifier(n_estimators=100, random_state=3)
    ).fit(X, y)
    for name in names:
        registry.register(pipes[0], name, X, y, alias="production")
        registry.register(pipes[1], name, X, y)
        registry.register(slow, name, X, y, onnx=False)
        registry.register(failing, name, X, y, onnx=False)
    return registry, [round(float(v), 4) for v in X[0]]


def model_of(state: int) -> str:
    """The model name the state at this index of STATES serves under (its own experiment)."""
    return "ref" if state == 0 else f"ref-{state}"


def wrk_script(row: list[float], token: str, rate: float | None = None) -> str:
    """A wrk Lua script cycling through bodies of UNITS different unit ids (paced to ``rate``
    requests/s in total when given, else closed loop)."""
    bodies = [json.dumps({"features": row, "unit_id": f"unit-{i}"}) for i in range(UNITS)]
    return wrk_body_script(bodies, token, rate=rate, threads=2)


def wrk(url: str, script: str, clients: int, seconds: int) -> Result:
    """Run wrk once; parse requests/s, p50, p99, responses and errors."""
    command = ["wrk", "-t2", f"-c{clients}", f"-d{seconds}s", "--latency", "-s", script, url]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        return float(m[1]) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m[2]]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    responses = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    return Result("", rps, ms("50"), ms("99"), responses, int(errors[1]) if errors else 0)


def routed(
    server: ServerProcess, token: str, row: list[float], experiment: str | None, model: str = "ref"
) -> None:
    """Wait until the server answers ``model`` for ``experiment`` (or outside any, for None)."""
    deadline = time.monotonic() + 60
    body = {"features": row, "unit_id": "probe"}
    headers = {"Authorization": f"Bearer {token}"}
    url = server.url + PREDICT.replace("/ref/", f"/{model}/")
    while time.monotonic() < deadline:
        got = httpx.post(url, json=body, headers=headers, timeout=10).json()
        if got.get("experiment") == experiment:
            return
        time.sleep(0.1)
    raise RuntimeError(f"the server did not pick up {experiment!r}")


def metrics_text(server: ServerProcess, token: str) -> str:
    """The server's /metrics page."""
    return httpx.get(
        server.url + "/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=10
    ).text


def model_calls(text: str, model: str = "ref") -> tuple[float, float]:
    """(model calls, requests they answered) so far, every version of ``model``."""
    sums = {"count": 0.0, "sum": 0.0}
    pattern = re.compile(
        rf'^slipway_model_batch_requests_(count|sum)\{{model="{re.escape(model)}"[^}}]*\}} (\S+)$',
        re.M,
    )
    for kind, value in pattern.findall(text):
        sums[kind] += float(value)
    return sums["count"], sums["sum"]


def shadow_counts(text: str, model: str = "ref") -> dict[str, float]:
    """Shadow rows of ``model`` scored and dropped (by reason) so far, from a /metrics page."""
    out: dict[str, float] = {}
    pattern = re.compile(r"^(slipway_shadow_\w+_total)\{([^}]*)\} (\S+)$", re.M)
    for name, labels, value in pattern.findall(text):
        if f'model="{model}"' not in labels:
            continue
        reason = re.search(r'reason="(\w+)"', labels)
        key = "scored" if "predictions" in name or reason is None else reason[1]
        out[key] = out.get(key, 0.0) + float(value)
    return out


def cpu_seconds(pid: int) -> float:
    """CPU time (user + system, every thread, and of waited-for children) a process has used
    so far; NaN where /proc is absent."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return sum(int(f) for f in fields[11:15]) / os.sysconf("SC_CLK_TCK")


def settle(pid: int, window: float = 0.2, timeout: float = 10.0) -> None:
    """Wait until the process used at most one clock tick of CPU in ``window`` seconds (its
    shadow backlog scored, its prediction log written), or ``timeout``."""
    tick = 1.0 / os.sysconf("SC_CLK_TCK")
    deadline = time.monotonic() + timeout
    last = cpu_seconds(pid)
    while time.monotonic() < deadline:
        time.sleep(window)
        now = cpu_seconds(pid)
        if not now - last > tick * 1.5:
            return
        last = now


def start_server(
    tmp: Path,
    states: list[tuple[str, dict[str, object] | None]],
    env: dict[str, str],
    token: str,
    row: list[float],
) -> ServerProcess:
    """One server for every state: the state at index i of ``states`` is served as
    ``model_of(i)`` with its experiment started; returned once each model answers for it."""
    registry = Registry(Settings(home=tmp / "home", user="bench"))
    desk = ExperimentDesk(registry)
    experiments = [
        None if options is None else desk.start(model_of(i), guardrails=LOOSE, **options).id
        for i, (_, options) in enumerate(states)
    ]
    registry.store.dispose()
    server = ServerProcess(env={**env, "SLIPWAY_HOME": str(tmp / "home")}, log_dir=tmp / "server")
    server.start()
    try:
        for i, experiment in enumerate(experiments):
            routed(server, token, row, experiment, model_of(i))
    except BaseException:
        server.stop()
        raise
    return server


def run_interleaved(
    server: ServerProcess,
    token: str,
    script: str,
    order: list[str],
    models: dict[str, str],
    seconds: int,
    warmup: int,
    label: str,
) -> list[Result]:
    """Run wrk against each state's model (``models``: state -> model name) in ``order``;
    every run with the server's CPU per request (until it is idle again), requests per model
    call and shadow counts."""
    assert server.process is not None
    pid = server.process.pid
    results = []
    for state in order:
        model = models[state]
        url = server.url + PREDICT.replace("/ref/", f"/{model}/")
        if warmup:
            wrk(url, script, CLIENTS, warmup)  # not counted
        settle(pid)
        page = metrics_text(server, token)
        before, calls_before = shadow_counts(page, model), model_calls(page, model)
        cpu_before = cpu_seconds(pid)
        r = wrk(url, script, CLIENTS, seconds)
        ended = time.monotonic()
        settle(pid)
        idle_after = time.monotonic() - ended
        cpu = cpu_seconds(pid) - cpu_before
        page = metrics_text(server, token)
        after, calls_after = shadow_counts(page, model), model_calls(page, model)
        r.state = state
        calls, answered = (a - b for a, b in zip(calls_after, calls_before, strict=True))
        r.per_call = answered / calls if calls else 0.0
        r.cpu_us = cpu / r.responses * 1e6 if r.responses else math.nan
        r.shadow = {k: v - before.get(k, 0.0) for k, v in after.items()}
        results.append(r)
        print(
            f"  {label:<7} {state:<20} {r.rps:8.0f} req/s  p50 {r.p50_ms:6.2f} ms  "
            f"p99 {r.p99_ms:7.2f} ms  errors {r.errors}  requests/call {r.per_call:5.1f}  "
            f"CPU {r.cpu_us:6.1f} us/request  idle {idle_after:4.1f} s after",
            flush=True,
        )
    return results


@dataclass
class Summary:
    """One state over the rounds: medians of its runs, and its ratios to adjacent baselines."""

    state: str
    rps: float
    p50_ms: float
    p99_ms: float
    cpu_us: float
    per_call: float
    errors: int
    scored: float
    dropped: float
    x_rps: Interval
    x_p99: Interval
    x_cpu: Interval


def summarise(results: list[Result], states: list[str]) -> dict[str, Summary]:
    """Per state: medians of its runs, totals of its errors and shadow rows, and the median
    ratio (with its interval) of its requests/s, p99 and CPU per request to the adjacent
    baseline runs."""
    ratios = {
        name: bracketed_ratios([(r.state, getattr(r, name)) for r in results], BASELINE)
        for name in ("rps", "p99_ms", "cpu_us")
    }
    out = {}
    for state in states:
        runs = [r for r in results if r.state == state]
        counts: dict[str, float] = {}
        for r in runs:
            for k, v in r.shadow.items():
                counts[k] = counts.get(k, 0.0) + v

        def med(name: str, runs: list[Result] = runs) -> float:
            values = [getattr(r, name) for r in runs if not math.isnan(getattr(r, name))]
            return statistics.median(values) if values else math.nan

        def x(name: str, state: str = state, n: int = len(runs)) -> Interval:
            if state == BASELINE:
                return Interval(1.0, 1.0, 1.0, 1.0, n)
            return median_interval(ratios[name].get(state, []), COVERAGE)

        out[state] = Summary(
            state,
            med("rps"),
            med("p50_ms"),
            med("p99_ms"),
            med("cpu_us"),
            med("per_call"),
            sum(r.errors for r in runs),
            counts.get("scored", 0.0),
            sum(v for k, v in counts.items() if k != "scored"),
            x("rps"),
            x("p99_ms"),
            x("cpu_us"),
        )
    return out


def table(summaries: dict[str, Summary]) -> None:
    """Print one pass: medians per state, and median ratios to the adjacent baselines with
    their intervals."""
    header = (
        f"{'state':<20} {'req/s':>6} {'p50 ms':>7} {'p99 ms':>7} {'CPU us':>6} {'req/call':>8} "
        f"{'x req/s [interval]':>22} {'x p99 [interval]':>22} {'x CPU/req [interval]':>22} "
        f"{'errors':>6} {'shadow scored':>13} {'dropped':>8}"
    )
    print(header)
    print("-" * len(header))
    for s in summaries.values():
        print(
            f"{s.state:<20} {s.rps:>6.0f} {s.p50_ms:>7.2f} {s.p99_ms:>7.2f} {s.cpu_us:>6.1f} "
            f"{s.per_call:>8.1f} {s.x_rps!s:>22} {s.x_p99!s:>22} {s.x_cpu!s:>22} "
            f"{s.errors:>6} {s.scored:>13.0f} {s.dropped:>8.0f}"
        )


def goal(text: str, interval: Interval, limit: float, *, at_most: bool) -> None:
    """Print one goal's verdict with the median and interval it is read from."""
    word = verdict(interval, limit, at_most=at_most)
    mark = {"met": "met   ", "missed": "MISSED"}.get(word, "?     ")
    print(f"  {mark} {text}: {interval} {'<=' if at_most else '>='} {limit:g} -> {word}")


def goals(closed: dict[str, Summary], paced: dict[str, Summary] | None, load: float) -> None:
    """Print issue 9's goals, each read from the pass that measures it."""
    print(
        f"\ngoals (median ratio to the adjacent no-experiment runs [{COVERAGE:.0%}+ sign-test "
        "interval over rounds]; met/missed only when the whole interval says so):"
    )
    ab = closed.get("A/B 50/50")
    if ab is not None:
        goal("A/B 50/50 costs <= 5% of throughput, x req/s (closed)", ab.x_rps, 0.95,
             at_most=False)  # fmt: skip
        goal("  the same read as CPU per request (closed)", ab.x_cpu, 1 / 0.95, at_most=True)
    if paced is None:
        return
    goal("shadow costs <= 50% of throughput, x req/s (closed)", closed["shadow"].x_rps, 0.5,
         at_most=False)  # fmt: skip
    for state in ("shadow", "shadow, sleeps 2 s", "shadow, raises"):
        if state not in paced:
            continue
        goal(f"{state}: primary p99 within 20%, x p99 (paced at {load:.0%})",
             paced[state].x_p99, 1.2, at_most=True)  # fmt: skip
    for state in ("shadow, sleeps 2 s", "shadow, raises"):
        if state not in paced:
            continue
        goal(f"{state}: paced rate sustained within 5%, x req/s (paced)", paced[state].x_rps,
             0.95, at_most=False)  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=3, help="Duration of each measured run.")
    parser.add_argument(
        "--rounds",
        type=int,
        default=8,
        help="Interleaved rounds (every state between two baseline runs, shuffled each round).",
    )
    parser.add_argument(
        "--warmup", type=int, default=1, help="Seconds of load before each run, not counted."
    )
    parser.add_argument("--seed", type=int, default=0, help="Seed of the rounds' state order.")
    parser.add_argument(
        "--load",
        type=float,
        default=0.5,
        help="Paced pass: offered rate as a share of the closed-loop no-experiment req/s.",
    )
    parser.add_argument(
        "--ab",
        action="store_true",
        help="Only the closed loop of no experiment and the two A/B splits (the A/B goal).",
    )
    parser.add_argument(
        "--shadow",
        action="store_true",
        help="Only no experiment and the real shadow, both passes (the shadow's p99 goal).",
    )
    parser.add_argument(
        "--quick", action="store_true", help="3 rounds of 2-second runs (indicative only)."
    )
    args = parser.parse_args()
    if not 0 < args.load <= 1:
        parser.error(f"--load {args.load} must be a share of throughput in (0, 1], e.g. 0.5")
    if args.rounds < 1 or args.seconds < 1 or args.warmup < 0:
        parser.error("--rounds and --seconds must be at least 1, --warmup at least 0")
    # The slow candidate's class lives in bench/: every process that loads it (the fresh-
    # interpreter check at registration, slipway serve) must be able to import it.
    os.environ["PYTHONPATH"] = os.pathsep.join(
        p for p in (str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")) if p
    )
    if shutil.which("wrk") is None:
        sys.exit("bench/experiments.py needs wrk: apt-get install wrk (or brew install wrk)")
    seconds = 2 if args.quick else args.seconds
    rounds = 3 if args.quick else args.rounds
    if args.ab and args.shadow:
        parser.error("--ab and --shadow each choose the states: give one")
    states = STATES[:3] if args.ab else [STATES[0], STATES[3]] if args.shadow else STATES
    names = [name for name, _ in states]
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="slipway-bench-exp-"))
    print(f"training the reference model and three candidates, registered for {len(states)} states")
    registry, row = models(tmp, [model_of(i) for i in range(len(states))])
    token = KeyStore(registry.store).create("bench", "predict")[1]
    registry.store.dispose()
    script = wrk_script(row, token)
    env = {
        "OMP_NUM_THREADS": "1",
        "SLIPWAY_SERVE_RATE_LIMIT": "1000000",
        "SLIPWAY_SERVE_RATE_BURST": "1000000",
        "SLIPWAY_BENCH_SLEEP": "2",
        "SLIPWAY_BENCH_FAIL": "1",
        "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    }
    order = schedule(BASELINE, names[1:], rounds, args.seed)
    paced_script = None
    served = {name: model_of(i) for i, name in enumerate(names)}
    server = start_server(tmp, states, env, token, row)
    try:
        closed_runs = run_interleaved(
            server, token, script, order, served, seconds, args.warmup, "closed"
        )
        closed = summarise(closed_runs, names)
        rate = args.load * closed[BASELINE].rps
        paced = None
        if not args.ab:
            paced_script = wrk_script(row, token, rate=rate)
            paced_order = schedule(BASELINE, names[1:], rounds, args.seed + 1)
            paced_runs = run_interleaved(
                server, token, paced_script, paced_order, served, seconds, args.warmup, "paced"
            )
            paced = summarise(paced_runs, names)
    finally:
        server.stop()
    print(
        f"\n{os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f}; one server, 1 "
        f"worker, {CLIENTS} connections, requests with unit ids; {rounds} interleaved rounds "
        f"of {seconds} s runs (every state between two no-experiment runs); medians over rounds"
    )
    print("\nclosed loop (each connection sends as soon as it is answered): throughput cost")
    table(closed)
    if paced is not None:
        print(
            f"\npaced at {args.load:.0%} of the closed-loop no-experiment throughput "
            f"({rate:.0f} req/s offered by the same {CLIENTS} connections): latency cost"
        )
        table(paced)
        print(
            f"\nThroughput goals are read from the closed loop, p99 goals from the paced pass: "
            f"at saturation {CLIENTS} closed-loop clients make latency ~ clients / throughput "
            f"(Little's law), so any throughput cost shows as p99 there; at {args.load:.0%} load "
            "every state sustains the same rate and p99 shows only the latency a state adds."
        )
    goals(closed, paced, args.load)
    if rounds < 5:
        print(f"  ({rounds} rounds: no interval reaches {COVERAGE:.0%}; shown min to max)")
    print(f"bench finished in {time.perf_counter() - started:.0f} s")
    os.unlink(script)
    if paced_script is not None:
        os.unlink(paced_script)
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
