"""One monitoring run over 1M logged predictions x 20 features: Slipway vs Evidently.

Both tools get the same frames (a 10,000-row reference sample, the size Slipway keeps per
version, and 1,000,000 current rows with two planted shifts), written once to Parquet and read
by one worker process per tool, so each tool's time and peak memory are its own. Evidently
pins pandas < 3, so it runs from its own virtualenv:

    python3 -m venv .venv-evidently
    .venv-evidently/bin/pip install 'evidently==0.7.23' 'pandas<3' pyarrow
    .venv/bin/python bench/monitor.py --evidently-python .venv-evidently/bin/python

``--store`` also times a store-backed ``Monitor.run`` (SQLite) over the same rows written into
the prediction log, which adds reading and parsing the log's JSON.

The performance-estimation case times CBPE (``slipway.estimation.estimate_classification``:
calibrated expected accuracy, precision, recall, F1 and ROC-AUC with their bands) over the same
number of served rows, in its own worker, against Slipway's drift run of the same run: the
ratio says what estimating performance adds to a monitoring run. ``--quick`` runs 50,000 rows
(seconds). Evidently is skipped when its virtualenv is absent.

``--volume`` is the other table (issue 16, goal 1): ``slipway monitor`` over prediction logs
of 1M, 3M and 10M rows with a tenth of them labeled (``--quick``: 20k, 60k, 200k), on SQLite
and, when SLIPWAY_BENCH_DATABASE_URL (or SLIPWAY_TEST_DATABASE_URL) is set, PostgreSQL; each
run in a child process of its own, with its peak memory (ru_maxrss). ``--dask`` adds the same
run over the log exported to Parquet on a local Dask cluster (the client's memory only). The
logs are generated once and cached (see ``bench/monitor_log.py``); seconds per million rows
across the sizes show whether the run is linear in rows:

    .venv/bin/python bench/monitor.py --volume [--quick] [--dask] [--sizes 1000000 ...]

``--reads both`` alternates each run with one that reads the log twice, as before the
traffic and its labels came from one read (A B A B), and prints the ratios; ``--against
SRC`` alternates it with a run of the slipway sources in SRC (an older tree); besides wall
seconds the table shows CPU seconds (every thread), steadier on a busy machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def frames(rows: int, reference_rows: int, features: int, seed: int = 0):
    """Numeric features of several shapes and a quarter categorical; two planted shifts."""
    import pandas as pd

    rng = np.random.default_rng(seed)

    def table(n: int, shifted: bool) -> pd.DataFrame:
        cols = {}
        for i in range(features):
            kind = i % 4
            if kind == 0:
                v = rng.normal(10 * i, 1 + i, n)
            elif kind == 1:
                v = rng.lognormal(1, 0.5, n)
            elif kind == 2:
                v = rng.poisson(3 + i, n).astype(float)
            else:
                v = np.array(["grocery", "travel", "gaming", "fuel", "online"], dtype=object)[
                    rng.choice(5, n, p=[0.4, 0.25, 0.15, 0.15, 0.05])
                ]
            cols[f"f{i:02d}"] = v
        frame = pd.DataFrame(cols)
        if shifted:
            frame["f00"] = frame["f00"] + 0.3
            frame["f01"] = frame["f01"] * 1.5
        return frame

    return table(reference_rows, False), table(rows, True)


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker(tool: str, folder: Path) -> None:
    """Load the frames, time one run of ``tool``, print one JSON line."""
    import pandas as pd

    ref = pd.read_parquet(folder / "reference.parquet")
    cur = pd.read_parquet(folder / "current.parquet")
    for df in (ref, cur):  # the same dtypes on both pandas versions
        for c in df.columns:
            if not pd.api.types.is_numeric_dtype(df[c]):
                df[c] = df[c].astype(object)
    loaded = _peak_mb()
    if tool == "slipway":
        import slipway

        started = time.perf_counter()
        report = slipway.monitor(ref, cur)
        seconds = time.perf_counter() - started
        flagged = report.flagged
    elif tool == "cbpe":
        seconds, flagged = _cbpe(len(cur))
    else:
        from evidently import Report
        from evidently.presets import DataDriftPreset

        started = time.perf_counter()
        snapshot = Report([DataDriftPreset()]).run(current_data=cur, reference_data=ref)
        seconds = time.perf_counter() - started
        flagged = _evidently_drifted(snapshot.dict())
    print(
        json.dumps(
            {"seconds": seconds, "peak_mb": _peak_mb(), "loaded_mb": loaded, "flagged": flagged}
        )
    )


def _cbpe(rows: int) -> tuple[float, list[str]]:
    """Calibrate on 10,000 labeled validation rows, then time CBPE over ``rows`` served ones."""
    from slipway import estimation

    rng = np.random.default_rng(1)

    def served(n: int) -> tuple[np.ndarray, np.ndarray]:
        raw = rng.beta(1.2, 3.0, n)  # a model's positive-class probability
        truth = np.clip(raw * 1.1, 0, 1)  # the model is a little underconfident
        return np.column_stack([1 - raw, raw]), (rng.random(n) < truth).astype(int)

    proba, y = served(10_000)
    calibration = estimation.fit_calibration(y, proba, [0, 1])
    proba, _ = served(rows)
    predicted = proba.argmax(axis=1)
    started = time.perf_counter()
    out = estimation.estimate_classification(calibration, proba, predicted)
    seconds = time.perf_counter() - started
    return seconds, [f"{k} {v.value:.3f}" for k, v in out.items()]


def _evidently_drifted(data: dict) -> list[str]:
    out = []
    for metric in data.get("metrics", []):
        name = str(metric.get("metric_name", ""))
        value = metric.get("value")
        if name.startswith("ValueDrift(") and isinstance(value, int | float):
            column = name.split("column=", 1)[1].split(",", 1)[0].rstrip(")")
            threshold = 0.1
            if value >= threshold:
                out.append(column)
    return sorted(out)


def store_run(folder: Path, rows: int, phase: str) -> dict:
    """``write``: register a model on the reference and log the current rows (SQLite).
    ``run``: time Monitor.run over them, in a fresh process so its memory is its own."""
    from datetime import timedelta

    import pandas as pd
    from sklearn.dummy import DummyClassifier

    from slipway.clock import utcnow
    from slipway.config import Settings
    from slipway.monitoring.runner import Monitor
    from slipway.registry import Registry
    from slipway.store import schema

    registry = Registry(Settings(home=folder / "home", user="bench"))
    if phase == "run":
        loaded = _peak_mb()
        started = time.perf_counter()
        report = Monitor(registry, sinks=[]).run("bench", since=timedelta(hours=24))
        seconds = time.perf_counter() - started
        return {
            "seconds": seconds,
            "peak_mb": _peak_mb(),
            "loaded_mb": loaded,
            "rows": report.latest.rows,
        }
    ref = pd.read_parquet(folder / "reference.parquet")
    cur = pd.read_parquet(folder / "current.parquet")
    y = np.arange(len(ref)) % 2
    model = DummyClassifier(strategy="prior").fit(ref, y)
    registry.register(model, "bench", ref, y, X_val=ref, y_val=y, alias="production")
    now = utcnow()
    started = time.perf_counter()
    out = {"label": 0, "probabilities": {"0": 0.5, "1": 0.5}}
    step = timedelta(hours=23) / max(rows, 1)
    for lo in range(0, rows, 50_000):
        records = cur.iloc[lo : lo + 50_000].to_dict(orient="records")
        batch = [
            {
                "prediction_id": f"p{lo + i:09d}",
                "created_at": now - timedelta(hours=23) + step * (lo + i),
                "model_name": "bench",
                "version": 1,
                "inputs": record,
                "outputs": out,
                "latency_ms": 1.0,
            }
            for i, record in enumerate(records)
        ]
        with registry.store.write() as conn:
            conn.execute(schema.predictions.insert(), batch)
    return {"write_seconds": time.perf_counter() - started}


def peak_mb() -> float:
    """This process's peak resident memory: VmHWM, which (unlike ru_maxrss) starts afresh at
    exec, so a child does not inherit the high-water mark of the parent it was forked from."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


class TwoReads:
    """The prediction log read as before one read served both: the traffic, then its labeled
    part by a second (JOIN) scan. ``--reads both`` times it beside the one-read path."""

    def __init__(self, log) -> None:
        self.log = log

    def traffic(self, *args):
        return self.log.traffic(*args)

    def labeled(self, *args):
        return self.log.labeled(*args)

    def refusals(self, *args):
        return self.log.refusals(*args)


def volume_worker(facts: dict, engine: str) -> dict:
    """One ``Monitor.run`` over a cached log (this process's time, CPU time and peak memory).
    ``engine`` is ``local``, ``dask``, or ``two-reads`` (the log read twice, see TwoReads)."""
    from datetime import datetime, timedelta

    from slipway.config import Settings
    from slipway.monitoring.exported import export_log
    from slipway.monitoring.log import LogSchema
    from slipway.monitoring.runner import Monitor
    from slipway.registry import Registry

    settings = Settings(home=facts["home"], database_url=facts["database_url"], user="bench")
    registry = Registry(settings)
    end = datetime.fromisoformat(facts["end"])
    monitor = Monitor(registry, clock=lambda: end, sinks=[])
    out: dict = {}
    source: object = "log"
    if engine == "two-reads":
        from slipway.monitoring.sources import StoreLog

        source, engine = TwoReads(StoreLog(registry.store)), "local"
    if engine == "dask":
        folder = Path(facts["home"]) / "export.parquet"
        if not folder.with_suffix(".done").exists():
            started = time.perf_counter()
            mv = registry.get("fraud")
            schema = LogSchema.of(mv, registry.versions("fraud"))
            since = end - timedelta(hours=24)
            export_log(registry.store, schema, "fraud", fmt="parquet", out=folder, start=since)
            folder.with_suffix(".done").write_text("")
            out["export_seconds"] = time.perf_counter() - started
        source = str(folder)
    started, cpu = time.perf_counter(), time.process_time()
    report = monitor.run(
        "fraud", since=timedelta(hours=24), store=False, source=source, engine=engine
    )
    out["seconds"] = time.perf_counter() - started
    out["cpu_seconds"] = time.process_time() - cpu  # every thread: steadier on a busy machine
    out["verdict"] = report.status
    out["rows"] = sum(w.rows for w in report.windows)
    out["labeled"] = sum(p["labeled"] for w in report.windows for p in w.performance)
    return out


def volume(args: argparse.Namespace) -> None:
    """The monitoring-at-volume table: sizes x backends, seconds and peak memory."""
    sys.path.insert(0, str(Path(__file__).parent))
    import monitor_log

    sizes = args.sizes or (
        [20_000, 60_000, 200_000] if args.quick else [1_000_000, 3_000_000, 10_000_000]
    )
    pg_base = os.environ.get("SLIPWAY_BENCH_DATABASE_URL") or os.environ.get(
        "SLIPWAY_TEST_DATABASE_URL"
    )
    backends = ["sqlite"] + (["postgresql"] if pg_base else [])
    results = []
    for backend in backends:
        for n in sizes:
            facts = monitor_log.ensure_log(backend, n, pg_base)
            # (label, engine, slipway source): A B A B when two variants are compared, so
            # that load changes hit both.
            variants: list[tuple[str, str, str | None]] = [("local", "local", None)]
            variants += [("dask", "dask", None)] if args.dask else []
            if args.reads == "both":
                variants = [("local", "local", None), ("two-reads", "two-reads", None)] * 2
            elif args.against:
                variants = [("local", "local", None), ("against", "local", args.against)] * 2
            for engine, mode, src in variants:
                cmd = [sys.executable, __file__, "--worker", "volume", "--facts", json.dumps(facts)]
                cmd += ["--engine", mode]
                env = dict(os.environ)
                if src is not None:  # slipway imported from there (this tree's bench scripts)
                    env["PYTHONPATH"] = os.pathsep.join([src, env.get("PYTHONPATH", "")])
                done = subprocess.run(cmd, capture_output=True, text=True, check=False, env=env)
                if done.returncode != 0:
                    sys.exit(f"{backend} {n:,} {engine} failed:\n{done.stderr[-3000:]}")
                results.append(
                    (backend, n, engine, facts, json.loads(done.stdout.strip().splitlines()[-1]))
                )
    print(
        "\nslipway monitor over the prediction log (fraud model, 7 inputs, a tenth labeled, "
        f"one 24h window); cpus={os.cpu_count()}" + (" [--quick]" if args.quick else "")
    )
    print("goal (issue 16): 10M rows + 1M labels under 60 s and 2 GB, linear in rows\n")
    print(
        "| store | rows | labels | engine | seconds | s per 1M rows | CPU seconds | "
        "peak RSS (MB) | verdict |"
    )
    print("|---|---:|---:|---|---:|---:|---:|---:|---|")
    for backend, n, engine, facts, r in results:
        extra = f" (+{r['export_seconds']:.1f} s export)" if "export_seconds" in r else ""
        print(
            f"| {backend} | {n:,} | {facts['labels']:,} | {engine} | {r['seconds']:.1f}{extra} | "
            f"{r['seconds'] / n * 1e6:.1f} | {r['cpu_seconds']:.1f} | {r['peak_mb']:,.0f} | "
            f"{r['verdict']} |"
        )
    if args.reads == "both" or args.against:
        what = "one read / two reads" if args.reads == "both" else f"this tree / {args.against}"
        print(f"\n{what} (same run, alternated; < 1 is less):")
        for backend in backends:
            for n in sizes:
                mine = [r for b, m, _, _, r in results if (b, m) == (backend, n)]
                one, two = mine[0::2], mine[1::2]
                for key in ("seconds", "cpu_seconds", "peak_mb"):
                    a = sum(r[key] for r in one) / len(one)
                    b = sum(r[key] for r in two) / len(two)
                    print(f"  {backend} {n:,} {key}: {a:.1f} / {b:.1f} = {a / b:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--reference-rows", type=int, default=10_000)
    parser.add_argument("--features", type=int, default=20)
    parser.add_argument("--evidently-python", default=".venv-evidently/bin/python")
    parser.add_argument("--store", action="store_true", help="also time a store-backed run")
    parser.add_argument("--quick", action="store_true", help="50,000 rows: a check in seconds")
    parser.add_argument("--volume", action="store_true", help="monitoring at 1M/3M/10M rows")
    parser.add_argument("--sizes", type=int, action="append", help="--volume: log sizes")
    parser.add_argument("--dask", action="store_true", help="--volume: also on Dask (export)")
    parser.add_argument(
        "--against",
        metavar="SRC",
        help="--volume: alternate each run with one importing slipway from SRC (a src/ folder, "
        "e.g. from `git archive main src | tar -x -C /tmp/before`), A B A B, with ratios",
    )
    parser.add_argument(
        "--reads",
        choices=["one", "both"],
        default="one",
        help="--volume: 'both' alternates the one-read path with the log read twice (A B A B)",
    )
    parser.add_argument(
        "--worker", choices=["slipway", "evidently", "cbpe", "volume"], help=argparse.SUPPRESS
    )
    parser.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--facts", help=argparse.SUPPRESS)
    parser.add_argument("--engine", default="local", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker == "volume":
        result = volume_worker(json.loads(args.facts), args.engine)
        result["peak_mb"] = peak_mb()
        print(json.dumps(result))
        return
    if args.worker:
        worker(args.worker, args.folder)
        return
    if args.volume:
        volume(args)
        return
    if args.quick:
        args.rows, args.reference_rows = 50_000, 2_000
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        ref, cur = frames(args.rows, args.reference_rows, args.features)
        ref.to_parquet(folder / "reference.parquet")
        cur.to_parquet(folder / "current.parquet")
        del ref, cur
        results = {}
        tools = [
            ("slipway", sys.executable),
            ("cbpe", sys.executable),
            ("evidently", args.evidently_python),
        ]
        for tool, python in tools:
            if tool == "evidently" and not Path(python).exists():
                continue  # Evidently only when its virtualenv is there (see the docstring)
            cmd = [python, __file__, "--worker", tool, "--folder", str(folder)]
            done = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if done.returncode != 0:
                sys.exit(f"{tool} worker failed:\n{done.stderr[-3000:]}")
            results[tool] = json.loads(done.stdout.strip().splitlines()[-1])
        store = None
        if args.store:
            store = {}
            for phase in ("write", "run"):
                code = (
                    f"import json, sys; sys.path.insert(0, {str(Path(__file__).parent)!r}); "
                    "import monitor; from pathlib import Path; "
                    f"print(json.dumps(monitor.store_run(Path({tmp!r}), {args.rows}, {phase!r})))"
                )
                done = subprocess.run(
                    [sys.executable, "-c", code], capture_output=True, text=True, check=False
                )
                if done.returncode != 0:
                    sys.exit(f"store {phase} failed:\n{done.stderr[-3000:]}")
                store.update(json.loads(done.stdout.strip().splitlines()[-1]))
    s, c, e = results["slipway"], results["cbpe"], results.get("evidently")
    print(
        f"\nOne drift run: {args.rows:,} current rows x {args.features} features, "
        f"{args.reference_rows:,} reference rows (same frames, same run)"
        + (" [--quick]" if args.quick else "")
        + "\n"
    )
    print("| tool | seconds | peak RSS (MB) | RSS after loading frames (MB) | drifted features |")
    print("|---|---:|---:|---:|---|")
    rows = [("Slipway `slipway.monitor`", s), ("Evidently DataDriftPreset", e)]
    for name, r in rows:
        if r is None:
            print(f"| {name} | not measured (no {args.evidently_python}) | | | |")
            continue
        print(
            f"| {name} | {r['seconds']:.2f} | {r['peak_mb']:.0f} | {r['loaded_mb']:.0f} | "
            f"{', '.join(r['flagged']) or '-'} |"
        )
    if e is not None:
        print(
            f"\nSlipway is {e['seconds'] / s['seconds']:.1f}x faster "
            f"(goal: at least 5x); extra memory {s['peak_mb'] - s['loaded_mb']:.0f} MB vs "
            f"{e['peak_mb'] - e['loaded_mb']:.0f} MB."
        )
    print(
        f"\nCBPE over {args.rows:,} served rows (accuracy, precision, recall, F1, ROC-AUC with "
        f"bands): {c['seconds']:.2f} s, {c['seconds'] / s['seconds']:.2f}x the drift run's "
        f"{s['seconds']:.2f} s; peak RSS {c['peak_mb']:.0f} MB. Estimates: "
        f"{', '.join(c['flagged'])}."
    )
    if store:
        print(
            f"\nStore-backed Monitor.run over the same {store['rows']:,} logged rows (SQLite): "
            f"{store['seconds']:.2f} s (reading and parsing the log included), peak RSS "
            f"{store['peak_mb']:.0f} MB; writing the log took {store['write_seconds']:.0f} s."
        )


if __name__ == "__main__":
    main()
