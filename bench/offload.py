"""Inference off the event loop: /health latency and throughput with and without the threads.

`slipway serve` (one worker, every production feature on) on the reference model, served by
scikit-learn and by ONNX Runtime, each with the inference threads (the default: one per core)
and with every model call on the event loop (SLIPWAY_SERVE_INFERENCE_THREADS=0). Per setting:
req/s at 32 clients for single rows and for 128-row requests, and /health's p50/p99 measured
by a second wrk (one connection) *while* the 128-row load runs.

    .venv/bin/python bench/offload.py            # about 2 minutes
    .venv/bin/python bench/offload.py --quick    # 20 trees, 2 s runs: a smoke run

Needs wrk (apt-get install wrk).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time
from pathlib import Path

from serve import Result, reference_model, wrk  # bench/serve.py
from slipway.keys import KeyStore
from slipway.serving.process import ServerProcess

PREDICT = "/v1/models/ref/predict"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="20 trees, 2 s runs.")
    parser.add_argument("--seconds", type=int, default=8, help="Duration of each load run.")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/offload.py needs wrk: apt-get install wrk")
    started = time.perf_counter()
    seconds = 2 if args.quick else args.seconds
    tmp = Path(tempfile.mkdtemp(prefix="slipway-offload-"))
    registry, _, row = reference_model(tmp, trees=20 if args.quick else 100)
    token = KeyStore(registry.store).create("bench", "predict")[1]
    auth = {"Authorization": f"Bearer {token}"}
    record = {f"feature_{i}": v for i, v in enumerate(row)}
    one = json.dumps({"features": row})
    many = json.dumps({"instances": [record] * 128})
    table = []
    for backend in ("sklearn", "auto"):
        for threads in ("default", "0"):
            env = {
                "OMP_NUM_THREADS": "1",
                "SLIPWAY_HOME": str(tmp / "home"),
                "SLIPWAY_SERVE_RATE_LIMIT": "1000000",
                "SLIPWAY_SERVE_RATE_BURST": "1000000",
                "SLIPWAY_SERVE_BACKEND": backend,
            }
            if threads == "0":
                env["SLIPWAY_SERVE_INFERENCE_THREADS"] = "0"
            log_dir = tmp / f"{backend}-{threads}"
            with ServerProcess(env=env, log_dir=log_dir, poll_seconds=0.01) as server:
                url = server.url + PREDICT
                wrk(url, one, auth, 32, 1)  # warm-up
                single = wrk(url, one, auth, 32, seconds)
                health: list[Result] = []

                def probe_health(into: list[Result] = health, base: str = server.url) -> None:
                    into.append(wrk(base + "/health", "", {}, 1, max(1, seconds - 1), "GET"))

                probe = threading.Thread(target=probe_health)
                probe.start()
                rows128 = wrk(url, many, auth, 32, seconds)
                probe.join()
            name = "onnx" if backend == "auto" else "sklearn"
            table.append((name, threads, single, rows128, health[0]))
            print(
                f"  {name:<8} threads={threads:<8} 1 row {single.rps:8.0f} req/s  128 rows "
                f"{rows128.rps:6.0f} req/s  /health p99 {health[0].p99_ms:7.2f} ms",
                flush=True,
            )
    print()
    if args.quick:
        print("QUICK RUN (20 trees, 2 s runs): for checking the script, not figures")
    header = (
        f"{'backend':<8} {'threads':>8} {'1-row req/s':>12} {'128-row req/s':>14} "
        f"{'rows/s':>9} {'/health p50 ms':>15} {'/health p99 ms':>15} {'errors':>6}"
    )
    print(header)
    print("-" * len(header))
    for name, threads, single, rows128, health in table:
        errors = single.errors + rows128.errors + health.errors
        print(
            f"{name:<8} {threads:>8} {single.rps:>12.0f} {rows128.rps:>14.0f} "
            f"{rows128.rps * 128:>9.0f} {health.p50_ms:>15.2f} {health.p99_ms:>15.2f} {errors:>6}"
        )
    by = {(n, t): (s, r) for n, t, s, r, _ in table}
    for name in ("sklearn", "onnx"):
        (s1, r1), (s0, r0) = by[(name, "default")], by[(name, "0")]
        print(
            f"{name}: threads vs on the loop: 1 row {s1.rps / s0.rps:.2f}x, "
            f"128 rows {r1.rps / r0.rps:.2f}x"
        )
    print("threads: default = one per core (SLIPWAY_SERVE_INFERENCE_THREADS); 0 = on the loop")
    print(f"bench finished in {time.perf_counter() - started:.0f} s")
    registry.store.dispose()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
