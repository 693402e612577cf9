"""Cold start and memory of one `slipway serve` worker against the naive server, in one run.

Cold start is process start -> first answered prediction (a 200 to a one-row predict request,
polled every 10 ms), for both servers: `slipway serve` with every production feature on (API
keys, rate limit, metrics, access log, prediction log, the console) serving the reference model
(a GradientBoostingClassifier behind a StandardScaler, answered by its verified ONNX graph), and
the naive FastAPI server (``bench/servers/naive.py``: joblib, pydantic, ``predict_proba``)
serving the same pipeline. Memory is the server's resident set (VmRSS, one worker: the process
itself) right after that first answer. The two servers are started in turns, ``--runs`` times
each, and the medians are compared (goal, issue 16: slipway within 10% of naive, ratio <= 1.1).

    .venv/bin/python bench/coldstart.py            # 7 starts of each
    .venv/bin/python bench/coldstart.py --quick    # 3 starts of each, 20 trees: seconds

Then what one worker imports: the heavy packages present in ``sys.modules`` once the worker's
app (``slipway.app:app_from_env``) is built and has answered, and the import time of
``slipway.app`` (``python -X importtime``) by top-level package.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

from serve import SERVERS, reference_model
from slipway.keys import KeyStore
from slipway.serving.process import free_port

# Packages a worker serving an ONNX-backed scikit-learn model might import; the report lists
# which of them it did import.
HEAVY = ("alembic", "jinja2", "matplotlib", "onnxruntime", "pandas", "pyarrow", "rich",
         "scipy", "scipy.stats", "sklearn", "skl2onnx", "typer")  # fmt: skip


def rss_mb(pid: int) -> float:
    """The process's resident memory (VmRSS) in MB."""
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmRSS:\s+(\d+) kB", status)[1]) / 1024  # type: ignore[index]


def start(
    command: list[str], env: dict[str, str], answered: Callable[[], bool], log: Path
) -> tuple[float, float]:
    """Start ``command``, poll ``answered`` every 10 ms; (seconds to the first answer, RSS MB)."""
    with open(log, "wb") as out:
        started = time.perf_counter()
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, env=env)
        try:
            deadline = time.monotonic() + 120
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"{command[:4]} exited: {log.read_text()[-2000:]}")
                try:
                    if answered():
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"{command[:4]} never answered: {log.read_text()[-2000:]}")
                time.sleep(0.01)
            seconds = time.perf_counter() - started
            return seconds, rss_mb(process.pid)
        finally:
            process.terminate()
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def posts(url: str, body: dict[str, object], headers: dict[str, str]) -> Callable[[], bool]:
    """A probe: does ``url`` answer this body with 200?"""
    return lambda: httpx.post(url, json=body, headers=headers, timeout=5).status_code == 200


def worker_imports(env: dict[str, str]) -> list[str]:
    """The HEAVY packages in a worker's ``sys.modules`` once its app has answered a request."""
    script = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from slipway.app import app_from_env\n"
        "with TestClient(app_from_env()) as client:\n"
        "    assert client.get('/ready').status_code == 200\n"
        f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def import_times(env: dict[str, str]) -> list[tuple[str, float]]:
    """Cumulative import time (ms) of ``slipway.app`` by top-level package, largest first."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", "import slipway.app"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    totals: dict[str, float] = {}
    for line in out.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \|( *)(\S+)", line)
        if m and "." not in m[3]:  # a top-level package: its cumulative time counts it once
            totals[m[3]] = max(totals.get(m[3], 0.0), int(m[1]) / 1000)
    return sorted(totals.items(), key=lambda kv: -kv[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=7, help="Starts of each server.")
    parser.add_argument("--quick", action="store_true", help="3 starts each, 20 trees.")
    args = parser.parse_args()
    runs = 3 if args.quick else args.runs
    began = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="slipway-bench-coldstart-"))
    try:
        registry, model_path, row = reference_model(tmp, trees=20 if args.quick else 100)
        token = KeyStore(registry.store).create("bench", "predict")[1]
        registry.store.dispose()
        env = {
            **os.environ,
            "OMP_NUM_THREADS": "1",
            "SLIPWAY_HOME": str(tmp / "home"),
            "SLIPWAY_BENCH_MODEL": str(model_path),
        }
        times: dict[str, list[float]] = {"naive FastAPI": [], "slipway serve": []}
        memory: dict[str, list[float]] = {"naive FastAPI": [], "slipway serve": []}
        for run in range(runs):
            port = free_port()
            naive = [sys.executable, "-m", "uvicorn", "naive:app", "--app-dir", str(SERVERS),
                     "--port", str(port), "--log-level", "warning"]  # fmt: skip
            url = f"http://127.0.0.1:{port}/predict"
            s, mb = start(naive, env, posts(url, {"features": row}, {}), tmp / "naive.log")
            times["naive FastAPI"].append(s)
            memory["naive FastAPI"].append(mb)
            port = free_port()
            ours = [sys.executable, "-m", "slipway", "serve", "--port", str(port)]
            url = f"http://127.0.0.1:{port}/v1/models/ref/predict"
            probe = posts(url, {"features": row}, {"Authorization": f"Bearer {token}"})
            s, mb = start(ours, env, probe, tmp / "slipway.log")
            times["slipway serve"].append(s)
            memory["slipway serve"].append(mb)
            print(
                f"  run {run + 1}/{runs}: naive {times['naive FastAPI'][-1]:.2f} s "
                f"{memory['naive FastAPI'][-1]:.0f} MB, slipway {s:.2f} s {mb:.0f} MB",
                flush=True,
            )
        heavy = worker_imports(env)
        imports = import_times(env)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    report(times, memory, heavy, imports, runs, time.perf_counter() - began)


def report(
    times: dict[str, list[float]],
    memory: dict[str, list[float]],
    heavy: list[str],
    imports: list[tuple[str, float]],
    runs: int,
    elapsed: float,
) -> None:
    print(f"\n{'server':<14} {'cold start s (median)':>22} {'RSS MB (median)':>16}  (n={runs})")
    for name in times:
        t, m = statistics.median(times[name]), statistics.median(memory[name])
        print(f"{name:<14} {t:>22.2f} {m:>16.0f}")
    t = statistics.median(times["slipway serve"]) / statistics.median(times["naive FastAPI"])
    m = statistics.median(memory["slipway serve"]) / statistics.median(memory["naive FastAPI"])
    print(f"slipway / naive: cold start {t:.2f}x, memory {m:.2f}x (goal: both <= 1.10)")
    print("cold start: process start -> first 200 to a one-row predict request")
    print(f"\nheavy packages in a slipway worker after its first answer: {' '.join(heavy)}")
    top = ", ".join(f"{name} {ms:.0f}" for name, ms in imports[:10])
    print(f"import slipway.app, ms by top-level package (-X importtime): {top}")
    print(json.dumps({"elapsed_s": round(elapsed)}))


if __name__ == "__main__":
    main()
