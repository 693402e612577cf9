"""Batch scoring speed and memory, against the limit measured in the same run.

The reference model: a 100-tree GradientBoostingClassifier on 20 features behind a
StandardScaler. The limit is ``pipe.predict_proba`` on the whole frame already in memory (no
validation, no I/O, no output). Each case scores a Parquet input end to end with
``slipway.score_file`` (read, validate, predict, build output rows, write) into Parquet,
SQLite or PostgreSQL, in a child process of its own so its peak memory (ru_maxrss) is its
own. PostgreSQL cases run when SLIPWAY_BENCH_DATABASE_URL (or SLIPWAY_TEST_DATABASE_URL)
points at a server.

    .venv/bin/python bench/batch.py                  # 1M and 5M rows, best of 3 rounds
    .venv/bin/python bench/batch.py --rows 1000000   # one size
    .venv/bin/python bench/batch.py --repeat 5       # more rounds on a busy machine
    .venv/bin/python bench/batch.py --quick          # 100k rows, one round: a check in seconds
    .venv/bin/python bench/batch.py --quick --chunk-size 25000  # several chunks: overlap shows
    .venv/bin/python bench/batch.py --rows 1000000 --cases sqlite,postgresql \
        --baseline-src /tmp/main-src    # before/after: also each case with that src/ tree

``--baseline-src DIR`` runs every case a second time with ``DIR`` (a ``src`` directory, e.g.
``git archive main src | tar -x -C /tmp/main``, then ``/tmp/main/src``) first on PYTHONPATH,
alternating with the current code inside each round, so the machine's load hits both alike;
its rows are marked ``(baseline)``. ``cpu s`` is the child process's own CPU time (all its
threads; a PostgreSQL server's work is not in it).

At the default chunk size (100,000 rows) a 100k-row input is one chunk, so scoring never
overlaps writing and ``--quick`` alone understates what 1M rows reach.

Each round runs the limit and then every case; each keeps its fastest round, the usual way
to read through noise from other work on the machine (the limit is treated the same way).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

FEATURES = [f"x{i}" for i in range(20)]
GOALS = {"parquet": 0.7, "sqlite": 0.7, "postgresql": 0.7}


def make_rows(n: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame(rng.normal(size=(n, len(FEATURES))), columns=FEATURES)


def train_and_register(home: Path, database_url: str | None) -> str:
    from sklearn.ensemble import GradientBoostingClassifier
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from slipway.config import Settings
    from slipway.registry import Registry

    X = make_rows(10_000, 0)
    y = X.x0 + X.x1**2 - X.x2 * X.x3 + np.random.default_rng(1).normal(size=len(X)) > 1
    pipe = make_pipeline(StandardScaler(), GradientBoostingClassifier(random_state=0))
    pipe.fit(X, y.astype(int))
    registry = Registry(Settings(home=home, database_url=database_url, user="bench"))
    mv = registry.register(pipe, "reference", X, y.astype(int))
    registry.store.dispose()
    return mv.ref


def write_input(path: Path, n: int) -> None:
    """n rows in pieces of 500k, so generating 5M rows does not need 5M rows in memory."""
    schema = pa.Schema.from_pandas(make_rows(1, 0), preserve_index=False)
    with pq.ParquetWriter(path, schema) as writer:
        for i, start in enumerate(range(0, n, 500_000)):
            piece = make_rows(min(500_000, n - start), 100 + i)
            writer.write_table(pa.Table.from_pandas(piece, preserve_index=False))


# -- child processes ------------------------------------------------------------------------


def child_limit(args: argparse.Namespace) -> dict:
    from slipway.config import Settings
    from slipway.registry import Registry

    registry = Registry(Settings(home=args.home, user="bench"))
    pipe = registry.load(args.model).pipeline
    frame = pd.read_parquet(args.input)
    started = time.perf_counter()
    pipe.predict_proba(frame)
    return {"seconds": time.perf_counter() - started, "rows": len(frame)}


def child_batch(args: argparse.Namespace) -> dict:
    from slipway.batch import score_file
    from slipway.config import Settings
    from slipway.registry import Registry

    registry = Registry(Settings(home=args.home, database_url=args.database_url, user="bench"))
    model = registry.load(args.model)
    started = time.perf_counter()
    run = score_file(
        model, args.input, output=args.output, registry=registry, chunk_size=args.chunk_size
    )
    seconds = time.perf_counter() - started
    assert run.status == "succeeded" and run.rows_scored == run.rows_in, run
    return {"seconds": seconds, "rows": run.rows_in}


def peak_mib() -> float:
    """This process's own peak resident memory: VmHWM starts afresh at exec, whereas
    ru_maxrss keeps the high-water mark of the parent the child was forked from."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def run_child(*argv: str, src: str | None = None) -> dict:
    env = None
    if src is not None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([src, os.environ.get("PYTHONPATH", "")])}
    out = subprocess.run(
        [sys.executable, __file__, "--child", *argv],
        capture_output=True,
        text=True,
        check=False,
        env=env,
    )
    if out.returncode != 0:
        raise SystemExit(f"case {argv} failed:\n{out.stderr}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# -- the table --------------------------------------------------------------------------------


def pg_schema(base: str) -> tuple[str, str]:
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
    engine.dispose()
    url = sa.make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
    return schema, url.render_as_string(hide_password=False)


def drop_schema(base: str, schema: str) -> None:
    engine = sa.create_engine(base)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, action="append", help="input sizes (default 1M, 5M)")
    parser.add_argument("--repeat", type=int, default=3, help="rounds; each case's best counts")
    parser.add_argument("--quick", action="store_true", help="100,000 rows, one round")
    parser.add_argument(
        "--chunk-size", type=int, default=None, help="rows per chunk (default: score_file's)"
    )
    parser.add_argument(
        "--cases", default="parquet,sqlite,postgresql", help="outputs to run, comma-separated"
    )
    parser.add_argument(
        "--baseline-src", default=None, help="also run each case with this src/ tree (before)"
    )
    args = parser.parse_args()
    if args.quick:
        args.rows, args.repeat = args.rows or [100_000], 1
    sizes = args.rows or [1_000_000, 5_000_000]
    pg_base = os.environ.get("SLIPWAY_BENCH_DATABASE_URL") or os.environ.get(
        "SLIPWAY_TEST_DATABASE_URL"
    )
    work = Path(tempfile.mkdtemp(prefix="slipway-bench-batch-"))
    try:
        home = work / "home"
        model = train_and_register(home, None)
        results = []
        for n in sizes:
            data = work / f"input-{n}.parquet"
            write_input(data, n)
            wanted = args.cases.split(",")
            cases = [("parquet", str(work / "scores.parquet")), ("sqlite", "db")]
            if pg_base:
                cases.append(("postgresql", "db"))
            cases = [(name, output) for name, output in cases if name in wanted]
            # (case, src): the current code, and the baseline tree's right after it.
            variants = [(name, None) for name, _ in cases]
            if args.baseline_src:
                variants = [
                    v for name, _ in cases for v in ((name, None), (name, args.baseline_src))
                ]
            outputs = dict(cases)
            # Rounds of (limit, every case): the limit meets the same moments of noise from
            # other work on the machine as the cases; each keeps its fastest round.
            runs: dict[tuple[str, str | None], list[dict]] = {v: [] for v in variants}
            runs[("limit", None)] = []
            for _ in range(args.repeat):
                limit_args = ("limit", "--home", str(home), "--model", model, "--input", str(data))
                runs[("limit", None)].append(run_child(*limit_args))
                for name, src in variants:
                    runs[(name, src)].append(
                        one_case(
                            work, home, model, data, name, outputs[name], pg_base,
                            args.chunk_size, src,
                        )
                    )  # fmt: skip
            limit = best(runs[("limit", None)])
            limit_rate = n / limit["seconds"]
            results.append((n, "limit: predict_proba in memory", limit, limit_rate, None))
            for name, src in variants:
                label = f"parquet -> {name}" + (" (baseline)" if src else "")
                results.append((n, label, best(runs[(name, src)]), limit_rate, name))
            data.unlink()
        print_table(results, pg_base is not None)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def best(runs: list[dict]) -> dict:
    """The fastest run, with the highest peak memory seen in any of them."""
    fastest = min(runs, key=lambda r: r["seconds"])
    return {**fastest, "peak_mib": max(r["peak_mib"] for r in runs)}


def one_case(work, home, model, data, name, output, pg_base, chunk_size=None, src=None) -> dict:
    """Score ``data`` into a fresh store (a copy of the registry, or a new PostgreSQL schema)."""
    case_home = work / f"home-{name}"
    shutil.copytree(home, case_home)
    url = schema = None
    if name == "postgresql":
        schema, url = pg_schema(pg_base)
        train_and_register(case_home, url)
    argv = ["batch", "--home", str(case_home), "--model", model]
    argv += ["--input", str(data), "--output", output]
    if url:
        argv += ["--database-url", url]
    if chunk_size:
        argv += ["--chunk-size", str(chunk_size)]
    try:
        return run_child(*argv, src=src)
    finally:
        shutil.rmtree(case_home)
        Path(output).unlink(missing_ok=True)
        if schema:
            drop_schema(pg_base, schema)


def print_table(results: list, with_pg: bool) -> None:
    print(f"\nbatch scoring, reference GBC (100 trees, 20 features); cpus={os.cpu_count()}")
    print("goal (issue 16): 0.7 x limit into SQLite and PostgreSQL at 1M and 5M rows")
    print(f"{'rows':>10}  {'case':<32} {'seconds':>8} {'rows/s':>10} {'x limit':>8} {'goal':>6} "
          f"{'peak MiB':>9} {'cpu s':>7}")  # fmt: skip
    for n, name, r, limit_rate, kind in results:
        rate = n / r["seconds"]
        ratio = "" if kind is None else f"{rate / limit_rate:.2f}"
        goal = "" if kind is None else f"{GOALS[kind]:.2f}"
        print(
            f"{n:>10,}  {name:<32} {r['seconds']:>8.2f} {rate:>10,.0f} {ratio:>8} {goal:>6} "
            f"{r['peak_mib']:>9,.0f} {r.get('cpu_s', float('nan')):>7.1f}"
        )
    if not with_pg:
        print("(PostgreSQL skipped: set SLIPWAY_BENCH_DATABASE_URL to include it)")


def child_main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("case", choices=["limit", "batch"])
    parser.add_argument("--home", required=True)
    parser.add_argument("--model", required=True)
    parser.add_argument("--input", required=True)
    parser.add_argument("--output", default="db")
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--chunk-size", type=int, default=None)
    args = parser.parse_args(argv)
    result = child_limit(args) if args.case == "limit" else child_batch(args)
    result["peak_mib"] = peak_mib()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    print(json.dumps(result))


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        child_main(sys.argv[2:])
    else:
        main()
