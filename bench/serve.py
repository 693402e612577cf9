"""Load-test `slipway serve` against a naive FastAPI server and a bare echo server, in one run.

All three serve the reference model (a 100-tree GradientBoostingClassifier on 20 features
behind a StandardScaler) or, for the echo server, nothing at all; wrk drives each at 1 and 32
concurrent connections (two workers at 32 too). `slipway serve` runs as in production: API
key auth, rate limiting (a limit high enough not to refuse), metrics, the JSON access log and
the prediction log. After its runs, the prediction log is compared with the responses wrk
counted.

    make bench            # or: .venv/bin/python bench/serve.py [--seconds 8]

Needs wrk (apt-get install wrk). Prints one table; the ratios are what to compare between
runs, as absolute numbers on a shared 2-core machine move from run to run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import joblib
import sqlalchemy as sa
from sklearn.datasets import make_classification
from sklearn.ensemble import GradientBoostingClassifier
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from slipway.config import Settings
from slipway.keys import KeyStore
from slipway.registry import Registry
from slipway.serving.process import ServerProcess, free_port
from slipway.store.schema import predictions

SERVERS = Path(__file__).parent / "servers"


@dataclass
class Result:
    server: str
    workers: int
    clients: int
    rps: float
    p50_ms: float
    p99_ms: float
    responses: int
    errors: int
    warmup: int = 0


def reference_model(tmp: Path) -> tuple[Registry, Path, list[float]]:
    """Train, register (production) and dump the reference model; return a feature row."""
    X, y = make_classification(n_samples=5000, n_features=20, n_informative=10, random_state=0)
    pipe = make_pipeline(
        StandardScaler(), GradientBoostingClassifier(n_estimators=100, random_state=0)
    )
    pipe.fit(X, y)
    registry = Registry(Settings(home=tmp / "home", user="bench"))
    registry.register(pipe, "ref", X, y, alias="production")
    path = tmp / "model.joblib"
    joblib.dump(pipe, path)
    return registry, path, [round(float(v), 4) for v in X[0]]


def wrk(url: str, body: str, headers: dict[str, str], clients: int, seconds: int) -> Result:
    """Run wrk once and parse requests/s, p50, p99, responses and non-2xx counts."""
    lines = [
        'wrk.method = "POST"',
        f"wrk.body = {json.dumps(body)}",
        'wrk.headers["Content-Type"] = "application/json"',
    ]
    lines += [f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}" for k, v in headers.items()]
    with tempfile.NamedTemporaryFile("w", suffix=".lua", delete=False) as script:
        script.write("\n".join(lines) + "\n")
    threads = 1 if clients == 1 else 2
    command = [
        "wrk",
        f"-t{threads}",
        f"-c{clients}",
        f"-d{seconds}s",
        "--latency",
        "-s",
        script.name,
        url,
    ]
    out = subprocess.run(command, capture_output=True, text=True, check=True).stdout
    os.unlink(script.name)

    def ms(label: str) -> float:
        m = re.search(rf"^\s+{label}%\s+([\d.]+)(us|ms|s)\s*$", out, re.M)
        assert m, out
        return float(m[1]) * {"us": 1e-3, "ms": 1.0, "s": 1e3}[m[2]]

    rps = float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1])  # type: ignore[index]
    responses = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    failed = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out)
    n_errors = (int(errors[1]) if errors else 0) + (sum(map(int, failed.groups())) if failed else 0)
    return Result("", 0, clients, rps, ms("50"), ms("99"), responses, n_errors)


@contextmanager
def uvicorn(
    app: str, workers: int, env: dict[str, str], access_log: bool
) -> Iterator[ServerProcess]:
    """A plain uvicorn server for the baselines, on a free port, stopped on exit."""
    port = free_port()
    server = ServerProcess(port=port, env=env, log_dir=Path(env["SLIPWAY_HOME"]).parent / app)
    command = [
        sys.executable,
        "-m",
        "uvicorn",
        app,
        "--app-dir",
        str(SERVERS),
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]
    if not access_log:
        command.append("--no-access-log")
    server.log_dir.mkdir(parents=True, exist_ok=True)
    with open(server.stdout_path, "wb") as out, open(server.stderr_path, "wb") as err:
        server.process = subprocess.Popen(command, stdout=out, stderr=err, env=server.env)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                httpx.get(server.url + "/docs", timeout=1)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{app} did not start:\n{server.stderr()}") from None
                time.sleep(0.1)
        yield server
    finally:
        server.stop()


def measure(
    name: str,
    server: ServerProcess,
    path: str,
    body: str,
    headers: dict[str, str],
    workers: int,
    clients: list[int],
    seconds: int,
) -> list[Result]:
    results = []
    for c in clients:
        warm = wrk(server.url + path, body, headers, c, 2)  # warm-up, not in the table
        r = wrk(server.url + path, body, headers, c, seconds)
        r.server, r.workers, r.warmup = name, workers, warm.responses
        results.append(r)
        print(
            f"  {name:<16} workers={workers} clients={c:<3} {r.rps:8.0f} req/s  "
            f"p50 {r.p50_ms:6.2f} ms  p99 {r.p99_ms:7.2f} ms",
            flush=True,
        )
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=8, help="Duration of each measured run.")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/serve.py needs wrk: apt-get install wrk (or brew install wrk)")
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="slipway-bench-"))
    print("training the reference model (GradientBoostingClassifier, 100 trees, 20 features)")
    registry, model_path, row = reference_model(tmp)
    token = KeyStore(registry.store).create("bench", "predict")[1]
    body = json.dumps({"features": row})
    base_env = {
        "OMP_NUM_THREADS": "1",
        "SLIPWAY_HOME": str(tmp / "home"),
        "SLIPWAY_BENCH_MODEL": str(model_path),
    }
    slipway_env = {
        **base_env,
        "SLIPWAY_SERVE_RATE_LIMIT": "1000000",
        "SLIPWAY_SERVE_RATE_BURST": "1000000",
    }
    auth = {"Authorization": f"Bearer {token}"}
    seconds = args.seconds
    results: list[Result] = []
    for workers, clients in ((1, [1, 32]), (2, [32])):
        with uvicorn("echo:app", workers, base_env, access_log=False) as echo:
            results += measure("echo (ceiling)", echo, "/echo", body, {}, workers, clients, seconds)
        with uvicorn("naive:app", workers, base_env, access_log=True) as naive:
            results += measure(
                "naive FastAPI", naive, "/predict", body, {}, workers, clients, seconds
            )
        server = ServerProcess(
            ["--workers", str(workers)], env=slipway_env, log_dir=tmp / f"slipway-{workers}"
        )
        with server:
            results += measure(
                "slipway serve",
                server,
                "/v1/models/ref/predict",
                body,
                auth,
                workers,
                clients,
                seconds,
            )
    with registry.store.read() as conn:
        logged = conn.execute(sa.select(sa.func.count()).select_from(predictions)).scalar_one()
    report(results, logged, time.perf_counter() - started)
    registry.store.dispose()
    shutil.rmtree(tmp, ignore_errors=True)


def report(results: list[Result], logged: int, elapsed: float) -> None:
    by = {(r.server, r.workers, r.clients): r for r in results}
    print()
    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, Python "
        f"{platform.python_version()}, {platform.platform()}"
    )
    header = (
        f"{'server':<16} {'workers':>7} {'clients':>7} {'req/s':>8} {'p50 ms':>8} "
        f"{'p99 ms':>8} {'errors':>6} {'x naive':>8} {'% echo':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in results:
        naive = by.get(("naive FastAPI", r.workers, r.clients))
        echo = by.get(("echo (ceiling)", r.workers, r.clients))
        x_naive = f"{r.rps / naive.rps:8.1f}" if naive else ""
        of_echo = f"{100 * r.rps / echo.rps:6.0f}%" if echo else ""
        print(
            f"{r.server:<16} {r.workers:>7} {r.clients:>7} {r.rps:>8.0f} {r.p50_ms:>8.2f} "
            f"{r.p99_ms:>8.2f} {r.errors:>6} {x_naive:>8} {of_echo:>7}"
        )
    s1, e1 = by[("slipway serve", 1, 1)], by[("echo (ceiling)", 1, 1)]
    print(
        f"\np50 at 1 client: slipway {s1.p50_ms:.2f} ms vs echo {e1.p50_ms:.2f} ms "
        f"(+{s1.p50_ms - e1.p50_ms:.2f} ms)"
    )
    ours = [r for r in results if r.server == "slipway serve"]
    answered = sum(r.responses + r.warmup for r in ours)
    cut = sum(2 * r.clients for r in ours)
    print(
        f"prediction log: {logged} rows for {answered} responses wrk counted (it stops "
        f"counting at its deadline; up to {cut} requests can be answered after that)"
    )
    print(f"bench finished in {elapsed:.0f} s")


if __name__ == "__main__":
    main()
