"""Micro-batching's latency/throughput curve: `slipway serve` with batching off and on, per backend.

The reference model (see serve.py) is served by ONNX Runtime (the default when its check passed
at registration) and by scikit-learn (SLIPWAY_SERVE_BACKEND=sklearn), each with micro-batching
off (SLIPWAY_SERVE_BATCH_ROWS=1) and on with several waits (SLIPWAY_SERVE_BATCH_WAIT_MS) and
batch caps (SLIPWAY_SERVE_BATCH_ROWS); wrk drives single-row requests at 1, 8 and 32
connections. Every production feature stays on. The defaults in docs/serving.md come from this
table.

    .venv/bin/python bench/batching.py [--seconds 5] [--quick]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

from serve import PREDICT, batch_counts, reference_model, wrk
from slipway.keys import KeyStore
from slipway.serving.process import ServerProcess

# (label, max rows per call, wait in ms)
SETTINGS = [
    ("off", 1, 0.0),
    ("on", 256, 0.0),
    ("on", 256, 0.5),
    ("on", 256, 2.0),
    ("on", 16, 0.0),
]
QUICK = [("off", 1, 0.0), ("on", 256, 0.0), ("on", 256, 2.0)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="Duration of each measured run.")
    parser.add_argument("--quick", action="store_true", help="Fewer settings.")
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        sys.exit("bench/batching.py needs wrk: apt-get install wrk (or brew install wrk)")
    started = time.perf_counter()
    tmp = Path(tempfile.mkdtemp(prefix="slipway-bench-"))
    registry, _, row = reference_model(tmp)
    token = KeyStore(registry.store).create("bench", "predict")[1]
    auth = {"Authorization": f"Bearer {token}"}
    body = json.dumps({"features": row})
    lines = []
    for backend in ("auto", "sklearn"):
        for label, max_rows, wait_ms in QUICK if args.quick else SETTINGS:
            env = {
                "OMP_NUM_THREADS": "1",
                "SLIPWAY_HOME": str(tmp / "home"),
                "SLIPWAY_SERVE_RATE_LIMIT": "0",
                "SLIPWAY_SERVE_BACKEND": backend,
                "SLIPWAY_SERVE_BATCH_ROWS": str(max_rows),
                "SLIPWAY_SERVE_BATCH_WAIT_MS": str(wait_ms),
            }
            with ServerProcess(env=env, log_dir=tmp / f"{backend}-{max_rows}-{wait_ms}") as server:
                url = server.url + PREDICT
                for clients in (1, 8, 32):
                    wrk(url, body, auth, clients, 1)
                    before = batch_counts(server, auth)
                    r = wrk(url, body, auth, clients, args.seconds)
                    after = batch_counts(server, auth)
                    batch = (after[1] - before[1]) / max(after[0] - before[0], 1)
                    name = "onnx" if backend == "auto" else "sklearn"
                    line = (
                        f"{name:<8} {label:<4} {max_rows:>8} {wait_ms:>8.1f} {clients:>7} "
                        f"{r.rps:>8.0f} {r.p50_ms:>8.2f} {r.p99_ms:>8.2f} {batch:>6.1f} "
                        f"{r.errors:>6}"
                    )
                    print(line, flush=True)
                    lines.append(line)
    header = (
        f"{'backend':<8} {'batch':<4} {'max rows':>8} {'wait ms':>8} {'clients':>7} "
        f"{'req/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'mean':>6} {'errors':>6}"
    )
    print(f"\n{header}\n{'-' * len(header)}")
    print("\n".join(lines))
    print("mean: requests per model call")
    print(f"bench finished in {time.perf_counter() - started:.0f} s")
    registry.store.dispose()
    shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
