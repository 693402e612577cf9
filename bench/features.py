"""Features: offline point-in-time speed and memory, and the online enrichment's latency cost.

Offline: ``training_frame`` for N labelled rows over E events (count 30d, mean 7d, sum 30d,
max 1d of a card), against a naive pandas filter-per-row baseline (timed on a sample of rows and
scaled to N) and against pandas ``merge_asof`` on per-card cumulative sums (which can do counts,
sums and means, not maxima); DuckDB's range join when ``duckdb`` is importable. Each case runs in
a child process of its own, so its peak memory (ru_maxrss) is its own.

Online: ``slipway serve`` answering 1-row requests from 32 concurrent clients for a model with 10
aggregates per request over E events in the store, against the same pipeline registered without
features (requests then carry the feature values): the p99 difference is what enrichment adds.

    .venv/bin/python bench/features.py           # 1M rows over 10M events; online over 1M events
    .venv/bin/python bench/features.py --quick   # 100k over 1M; online over 100k (seconds)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

START = pd.Timestamp("2026-01-01", tz="UTC")
DAYS = 365


def events_frame(n: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    cards = max(10, n // 100)
    us = rng.integers(0, DAYS * 86_400_000_000, n)
    return pd.DataFrame(
        {
            "card_id": rng.integers(0, cards, n),
            "ts": START + pd.to_timedelta(us, unit="us"),
            "amount": rng.lognormal(3, 1, n).round(2),
        }
    )


def labels_frame(n: int, cards: int, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    us = rng.integers(30 * 86_400_000_000, DAYS * 86_400_000_000, n)
    return pd.DataFrame(
        {"card_id": rng.integers(0, cards, n), "ts": START + pd.to_timedelta(us, unit="us")}
    )


# -- offline cases (each in a child process) -------------------------------------------------


def case_slipway(events: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    import slipway.features as sf

    src = sf.EventSource(events, entity="card_id", timestamp="ts", name="tx")
    feats = [
        sf.Aggregate("count_30d", src, "count", window="30d"),
        sf.Aggregate("mean_7d", src, "mean", column="amount", window="7d"),
        sf.Aggregate("sum_30d", src, "sum", column="amount", window="30d"),
        sf.Aggregate("max_1d", src, "max", column="amount", window="1d"),
    ]
    return sf.training_frame(labels, feats, at="ts")


def case_merge_asof(events: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """Counts and sums as differences of per-card cumulative sums found by merge_asof."""
    ev = events.sort_values("ts", kind="stable").copy()
    ev["n"] = ev.groupby("card_id").cumcount() + 1
    ev["s"] = ev.groupby("card_id")["amount"].cumsum()
    ev = ev[["card_id", "ts", "n", "s"]]
    out = labels.reset_index(names="_row")

    def before(at: pd.Series) -> pd.DataFrame:
        q = pd.DataFrame({"_row": out["_row"], "card_id": out["card_id"], "ts": at})
        q = q.sort_values("ts", kind="stable")
        m = pd.merge_asof(q, ev, on="ts", by="card_id", allow_exact_matches=False)
        return m.set_index("_row").sort_index()[["n", "s"]].fillna(0.0)

    now = before(out["ts"])
    d30 = before(out["ts"] - pd.Timedelta(days=30))
    d7 = before(out["ts"] - pd.Timedelta(days=7))
    res = labels.copy()
    res["count_30d"] = (now.n - d30.n).to_numpy()
    res["sum_30d"] = (now.s - d30.s).to_numpy()
    n7 = (now.n - d7.n).to_numpy()
    res["mean_7d"] = np.where(n7 > 0, (now.s - d7.s).to_numpy() / np.maximum(n7, 1), np.nan)
    return res


def case_naive(events: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """For each row: the card's events, filtered by time, aggregated (groupby once)."""
    groups = {k: g for k, g in events.groupby("card_id")}
    rows = []
    empty = events.iloc[:0]
    for r in labels.itertuples():
        e = groups.get(r.card_id, empty)
        e = e[e.ts < r.ts]
        w30, w7, w1 = (e[e.ts >= r.ts - pd.Timedelta(days=d)] for d in (30, 7, 1))
        rows.append(
            (len(w30), w7.amount.mean(), w30.amount.sum(), w1.amount.max() if len(w1) else np.nan)
        )
    res = labels.copy()
    res[["count_30d", "mean_7d", "sum_30d", "max_1d"]] = rows
    return res


def case_duckdb(events: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    import duckdb

    con = duckdb.connect()
    lab = labels.reset_index(names="_row")
    con.register("ev", events)
    con.register("lab", lab)
    res = con.execute(
        """
        SELECT lab._row,
          count(ev.ts) FILTER (WHERE ev.ts >= lab.ts - INTERVAL 30 DAY) AS count_30d,
          avg(ev.amount) FILTER (WHERE ev.ts >= lab.ts - INTERVAL 7 DAY) AS mean_7d,
          coalesce(sum(ev.amount) FILTER (WHERE ev.ts >= lab.ts - INTERVAL 30 DAY), 0) AS sum_30d,
          max(ev.amount) FILTER (WHERE ev.ts >= lab.ts - INTERVAL 1 DAY) AS max_1d
        FROM lab LEFT JOIN ev ON ev.card_id = lab.card_id AND ev.ts < lab.ts
             AND ev.ts >= lab.ts - INTERVAL 30 DAY
        GROUP BY lab._row ORDER BY lab._row
        """
    ).df()
    return res


CASES = {
    "slipway (numpy engine)": case_slipway,
    "pandas merge_asof (count/sum/mean only)": case_merge_asof,
    "naive groupby-per-row": case_naive,
    "duckdb range join": case_duckdb,
}


def child(case: str, events_n: int, labels_n: int, sample: int | None, out: str) -> None:
    events = events_frame(events_n)
    labels = labels_frame(labels_n, max(10, events_n // 100))
    if sample is not None:
        labels = labels.sample(sample, random_state=0)
    if case.startswith("slipway"):
        import slipway.features  # noqa: F401  # imports are not what is measured
    if case.startswith("duckdb"):
        import duckdb  # noqa: F401
    start = time.perf_counter()
    result = CASES[case](events, labels)
    seconds = time.perf_counter() - start
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    check = {c: float(np.nansum(result[c].to_numpy(float)[:1000])) for c in ("count_30d",)}
    Path(out).write_text(json.dumps({"seconds": seconds, "peak_mib": peak, "check": check}))


def run_case(case: str, events_n: int, labels_n: int, sample: int | None = None) -> dict | None:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as f:
        out = f.name
    cmd = [sys.executable, __file__, "--child", case, str(events_n), str(labels_n),
           str(sample or 0), out]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ})
    if proc.returncode != 0:
        tail = proc.stderr.strip().splitlines()[-1:] or ["?"]
        print(f"  {case}: failed ({tail[0][:120]})")
        return None
    return json.loads(Path(out).read_text())


def offline(events_n: int, labels_n: int, naive_sample: int) -> None:
    print(f"\ntraining_frame: {labels_n:,} labelled rows over {events_n:,} events")
    print("| case | seconds | rows/s | x naive | peak MiB |\n|---|---:|---:|---:|---:|")
    naive = run_case("naive groupby-per-row", events_n, labels_n, naive_sample)
    naive_s = None if naive is None else naive["seconds"] * labels_n / naive_sample
    results = {}
    for case in CASES:
        if case == "naive groupby-per-row":
            continue
        if case == "duckdb range join":
            try:
                import duckdb  # noqa: F401
            except ImportError:
                print("| duckdb range join | (duckdb not installed) | | | |")
                continue
        results[case] = run_case(case, events_n, labels_n)
    for case, r in results.items():
        if r is None:
            continue
        ratio = "" if naive_s is None else f"{naive_s / r['seconds']:.0f}"
        print(f"| {case} | {r['seconds']:.2f} | {labels_n / r['seconds']:,.0f} | {ratio} | "
              f"{r['peak_mib']:,.0f} |")  # fmt: skip
    if naive is not None:
        print(f"| naive groupby-per-row ({naive_sample:,} rows, scaled) | {naive_s:.0f} | "
              f"{labels_n / naive_s:,.0f} | 1 | {naive['peak_mib']:,.0f} |")  # fmt: skip


# -- online ------------------------------------------------------------------------------------


def online(events_n: int, seconds: float, clients: int = 32) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    import slipway.features as sf
    from slipway.config import Settings
    from slipway.features.ingest import ingest
    from slipway.keys import KeyStore
    from slipway.registry import Registry
    from slipway.serving.process import ServerProcess

    home = Path(tempfile.mkdtemp(prefix="slipway-bench-features-"))
    registry = Registry(Settings(home=home, user="bench"))
    events = events_frame(events_n, seed=3)
    events["card_id"] = "c" + events.card_id.astype(str)
    events["event_id"] = np.arange(len(events)).astype(str)
    src = sf.EventSource("tx", entity="card_id", timestamp="ts", id="event_id")
    t = time.perf_counter()
    ingest(registry.store, events, src)
    print(f"\nonline: ingested {events_n:,} events in {time.perf_counter() - t:.1f}s")
    aggs = [sf.Aggregate(f"count_{w}", src, "count", window=w) for w in ("1h", "1d", "7d", "30d")]
    aggs += [sf.Aggregate(f"mean_{w}", src, "mean", column="amount", window=w, fillna=0.0)
             for w in ("7d", "30d")]  # fmt: skip
    aggs += [sf.Aggregate("sum_1d", src, "sum", column="amount", window="1d")]
    aggs += [sf.Aggregate(f"max_{w}", src, "max", column="amount", window=w, fillna=0.0)
             for w in ("1d", "7d")]  # fmt: skip
    aggs += [sf.Aggregate("min_7d", src, "min", column="amount", window="7d", fillna=0.0)]
    card = sf.FeatureSet("card", entity="card_id", features=aggs)
    labels = events.sample(5000, random_state=0)[["card_id", "ts", "amount"]]
    train = sf.training_frame(labels, [card], at="ts", store=registry.store)
    names = ["amount", *[a.name for a in aggs]]
    y = (train.amount > train.mean_7d).astype(int)
    pipe = make_pipeline(StandardScaler(), LogisticRegression(max_iter=300)).fit(train[names], y)
    registry.register(pipe, "with", train, y, features=[card], alias="production", onnx=False)
    registry.register(pipe, "without", train[names], y, alias="production", onnx=False)
    token = KeyStore(registry.store).create("bench", "predict")[1]
    sample = train.sample(2000, random_state=1)
    raw = [{"card_id": r.card_id, "ts": r.ts.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "amount": r.amount} for r in sample.itertuples()]  # fmt: skip
    plain = json.loads(sample[names].to_json(orient="records"))
    env = {"SLIPWAY_HOME": str(home), "SLIPWAY_SERVE_RATE_LIMIT": "0", "OMP_NUM_THREADS": "1",
           "SLIPWAY_ACCESS_LOG": "false"}  # fmt: skip
    print(f"{clients} clients, 1-row requests, {seconds:.0f}s each")
    print("| model | requests | req/s | p50 ms | p99 ms |\n|---|---:|---:|---:|---:|")
    p99 = {}
    for name, rows in (("without", plain), ("with", raw)):
        with ServerProcess(["--model", name], env=env, log_dir=home / f"srv-{name}") as server:
            lat = asyncio.run(load(server.url, token, name, rows, clients, seconds))
        lat.sort()
        q50, q99 = lat[len(lat) // 2] * 1000, lat[int(len(lat) * 0.99)] * 1000
        p99[name] = q99
        print(f"| {name} features | {len(lat):,} | {len(lat) / seconds:,.0f} | {q50:.2f} | "
              f"{q99:.2f} |")  # fmt: skip
    print(
        f"p99 added by enrichment (10 aggregates): {p99['with'] - p99['without']:.2f} ms "
        "(goal <= 2 ms)"
    )


async def load(url: str, token: str, name: str, rows: list, clients: int, seconds: float) -> list:
    import httpx

    latencies: list[float] = []
    warm_until = time.perf_counter() + 1.0  # connections opened, code paths warm: not counted
    deadline = warm_until + seconds
    headers = {"Authorization": f"Bearer {token}"}

    async def client(i: int) -> None:
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as c:
            k = i
            while time.perf_counter() < deadline:
                body = {"instances": [rows[k % len(rows)]]}
                t = time.perf_counter()
                r = await c.post(f"/v1/models/{name}/predict", json=body)
                if t >= warm_until:
                    latencies.append(time.perf_counter() - t)
                r.raise_for_status()
                k += clients

    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "--child":
        _, _, case, e, n, s, out = sys.argv
        child(case, int(e), int(n), int(s) or None, out)
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="small sizes: seconds, not minutes")
    parser.add_argument("--skip-online", action="store_true")
    args = parser.parse_args()
    if args.quick:
        offline(1_000_000, 100_000, 300)
        if not args.skip_online:
            online(100_000, 5)
    else:
        offline(10_000_000, 1_000_000, 1000)
        if not args.skip_online:
            online(1_000_000, 20)


if __name__ == "__main__":
    main()
