"""The model zoo: which common pipelines get the verified ONNX fast path, and what it buys.

Twelve pipelines people use for tabular data, each behind the same ColumnTransformer (median
imputer + scaler on numbers, one-hot on a category, a boolean passed through; or ordinal codes
for HistGradientBoosting's native categorical splits), trained on a frame with NaN in a numeric
column, a column named ``balance/limit``, an integer, a category and a boolean. Each is
registered the ordinary way (so the fast path is granted only by the parity check,
``backends.assess``), then, per model:

- backend: what `slipway serve` answers with (onnx, or sklearn and why);
- max diff: the largest difference from scikit-learn (probabilities, or values relative to
  their magnitude) on held-out rows, and whether every label is identical;
- latency per row, alone (one record) and in a 1,000-row batch: `slipway.load`-style
  ``Model`` with the served backend vs the scikit-learn pipeline on a DataFrame;
- served req/s at 32 clients (wrk, single rows): `slipway serve` with every production feature
  on vs a naive FastAPI server (``bench/servers/naive_zoo.py``) answering the same model.

    .venv/bin/python bench/zoo.py            # about 4 minutes
    .venv/bin/python bench/zoo.py --quick    # small models, 1 s load runs: a smoke run
    .venv/bin/python bench/zoo.py --no-serve # the table without the HTTP load runs
    .venv/bin/python bench/zoo.py --only hgb,forest  # some of the models

A model slower than the load run's window (SVC served by scikit-learn in a --quick run's 1 s)
can show 0 req/s there: wrk counts only the answers that arrive inside the window.

Needs wrk (apt-get install wrk) for the served columns.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before scikit-learn: one core per process

import joblib
import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import (
    ExtraTreesClassifier,
    GradientBoostingClassifier,
    HistGradientBoostingClassifier,
    HistGradientBoostingRegressor,
    RandomForestClassifier,
    RandomForestRegressor,
)
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression, Ridge
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.svm import SVC
from sklearn.tree import DecisionTreeClassifier

from serve import uvicorn, wrk  # bench/serve.py: the same load generator and baselines
from slipway.config import Settings
from slipway.keys import KeyStore
from slipway.registry import Registry
from slipway.serving.process import ServerProcess

NUMBERS = ["amount", "balance/limit", "age"]


def data(n: int, seed: int = 0) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """Numbers with NaN, an oddly named column, an integer, a category and a boolean."""
    rng = np.random.default_rng(seed)
    X = pd.DataFrame(
        {
            "amount": rng.lognormal(3, 1, n),
            "balance/limit": rng.uniform(0, 1, n),
            "age": rng.integers(18, 90, n),
            "country": rng.choice(["DE", "FR", "GB", "BR", "IT"], n),
            "is_new": rng.random(n) < 0.3,
        }
    )
    X.loc[rng.random(n) < 0.1, "amount"] = np.nan
    amount = np.nan_to_num(X["amount"].to_numpy())
    noise = rng.random(n) < 0.1
    y = ((amount > 30) ^ (X["balance/limit"] > 0.7) ^ X["is_new"] ^ noise).astype(int).to_numpy()
    value = amount * 2 + X["balance/limit"].to_numpy() * 100 + X["age"].to_numpy() / 3
    return X, y, value + rng.normal(0, 5, n)


def standard() -> ColumnTransformer:
    """Imputer + scaler on numbers, one-hot on the category, the boolean passed through."""
    return ColumnTransformer(
        [
            ("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), NUMBERS),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["country"]),
            ("bool", "passthrough", ["is_new"]),
        ]
    )


def native() -> ColumnTransformer:
    """Ordinal codes for the category (native categorical splits), the rest as they are."""
    encoder = OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan)
    return ColumnTransformer([("cat", encoder, ["country"])], remainder="passthrough")


def zoo(trees: int) -> dict[str, tuple[Callable[[], Any], Callable[[], Any], bool]]:
    """name -> (preprocessing, estimator, is a regressor)."""
    return {
        "logistic": (standard, lambda: LogisticRegression(max_iter=1000), False),
        "gboost": (standard, lambda: GradientBoostingClassifier(n_estimators=trees), False),
        "hgb": (standard, lambda: HistGradientBoostingClassifier(max_iter=trees), False),
        "hgb-reg-nan": (native, lambda: HistGradientBoostingRegressor(max_iter=trees), True),
        "hgb-native-cat": (
            native,
            lambda: HistGradientBoostingClassifier(max_iter=trees, categorical_features=[0]),
            False,
        ),
        "forest": (standard, lambda: RandomForestClassifier(trees, random_state=0), False),
        "forest-reg": (standard, lambda: RandomForestRegressor(trees, random_state=0), True),
        "extra-trees": (standard, lambda: ExtraTreesClassifier(trees, random_state=0), False),
        "svc": (standard, lambda: SVC(probability=True, random_state=0), False),
        "knn": (standard, KNeighborsClassifier, False),
        "tree": (standard, lambda: DecisionTreeClassifier(random_state=0), False),
        "ridge": (standard, Ridge, True),
    }


def per_row_us(fn: Callable[[], Any], rows: int, budget_s: float) -> float:
    """Median time of ``fn`` over repeats filling ``budget_s``, in microseconds per row."""
    fn()  # warm
    times = []
    deadline = time.perf_counter() + budget_s
    while len(times) < 3 or (time.perf_counter() < deadline and len(times) < 2000):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return float(np.median(times)) * 1e6 / rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="Small models, 1 s load runs.")
    parser.add_argument("--no-serve", action="store_true", help="Skip the HTTP load runs.")
    parser.add_argument("--seconds", type=int, default=5, help="Duration of each load run.")
    parser.add_argument("--only", help="Comma-separated model names (default: all twelve).")
    args = parser.parse_args()
    serve = not args.no_serve
    if serve and shutil.which("wrk") is None:
        sys.exit("bench/zoo.py needs wrk for the served columns (or pass --no-serve)")
    started = time.perf_counter()
    n, trees = (2_000, 20) if args.quick else (20_000, 100)
    budget = 0.2 if args.quick else 1.0
    seconds = 1 if args.quick else args.seconds
    tmp = Path(tempfile.mkdtemp(prefix="slipway-zoo-"))
    registry = Registry(Settings(home=tmp / "home", user="bench"))
    X, y, value = data(n + 1_000)
    X_train, X_test = X.iloc[:n], X.iloc[n:].reset_index(drop=True)
    record = json.loads(X_test.dropna().iloc[[0]].to_json(orient="records"))[0]  # no NaN
    models = tmp / "models"
    models.mkdir()
    rows: list[dict[str, Any]] = []
    chosen = zoo(trees)
    if args.only:
        chosen = {k: v for k, v in chosen.items() if k in args.only.split(",")}
    print(f"training and registering {len(chosen)} pipelines on {n:,} rows", flush=True)
    for name, (pre, estimator, regressor) in chosen.items():
        target = value[:n] if regressor else y[:n]
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)  # SVC(probability=True) in 1.9
            pipe = Pipeline([("pre", pre()), ("model", estimator())]).fit(X_train, target)
            mv = registry.register(pipe, name, X_train, target, alias="production")
            model = registry.load(f"{name}:{mv.version}", backend="auto")
        verdict = mv.meta.get("onnx", {})
        joblib.dump(pipe, models / f"{name}.joblib")
        ours = model.predict if regressor else model.predict_proba
        theirs = pipe.predict if regressor else pipe.predict_proba
        got, expected = np.asarray(ours(X_test), float), np.asarray(theirs(X_test), float)
        diff = float(np.max(np.abs(got - expected) / np.maximum(1.0, np.abs(expected))))
        same_labels = regressor or bool(np.array_equal(model.predict(X_test), pipe.predict(X_test)))
        one, batch = [record], X_test.iloc[:1_000]
        one_frame = pd.DataFrame([record])
        row = {
            "model": name,
            "backend": model.engine.name if hasattr(model, "engine") else "sklearn",
            "precision": verdict.get("precision") or "",
            "reason": "" if verdict.get("accepted") else verdict.get("reason", ""),
            "diff": diff,
            "labels": same_labels,
            "alone": per_row_us(lambda o=ours, r=one: o(r), 1, budget),
            "alone_sk": per_row_us(lambda t=theirs, f=one_frame: t(f), 1, budget),
            "batch": per_row_us(lambda o=ours, b=batch: o(b), len(batch), budget),
            "batch_sk": per_row_us(lambda t=theirs, b=batch: t(b), len(batch), budget),
        }
        rows.append(row)
        print(f"  {name:<15} {row['backend']:<8} max diff {diff:.1e}", flush=True)
    if serve:
        served(registry, tmp, models, record, rows, seconds)
    report(rows, args.quick, time.perf_counter() - started)
    registry.store.dispose()
    shutil.rmtree(tmp, ignore_errors=True)


def served(
    registry: Registry,
    tmp: Path,
    models: Path,
    record: dict[str, Any],
    rows: list[dict[str, Any]],
    seconds: int,
) -> None:
    """Single-row req/s at 32 clients for every model: slipway serve vs the naive server."""
    token = KeyStore(registry.store).create("bench", "predict")[1]
    env = {
        "OMP_NUM_THREADS": "1",
        "SLIPWAY_HOME": str(tmp / "home"),
        "SLIPWAY_BENCH_MODELS": str(models),
    }
    body = json.dumps(record)
    with uvicorn("naive_zoo:app", 1, env, access_log=True) as (server, _):
        for row in rows:
            wrk(f"{server.url}/predict/{row['model']}", body, {}, 32, 1)  # warm-up
            row["naive_rps"] = wrk(f"{server.url}/predict/{row['model']}", body, {}, 32, seconds)
    slipway_env = {
        **env,
        "SLIPWAY_SERVE_RATE_LIMIT": "1000000",
        "SLIPWAY_SERVE_RATE_BURST": "1000000",
    }
    auth = {"Authorization": f"Bearer {token}"}
    body = json.dumps({"instances": [record]})
    with ServerProcess(env=slipway_env, log_dir=tmp / "slipway", poll_seconds=0.01) as server:
        for row in rows:
            url = f"{server.url}/v1/models/{row['model']}/predict"
            wrk(url, body, auth, 32, 1)  # warm-up
            row["rps"] = wrk(url, body, auth, 32, seconds)


def report(rows: list[dict[str, Any]], quick: bool, elapsed: float) -> None:
    print()
    if quick:
        print("QUICK RUN (small models, short load runs): for checking the script, not figures")
    header = (
        f"{'model':<15} {'backend':<12} {'max diff':>8} {'labels':>6} "
        f"{'µs/row alone':>14} {'µs/row in 1k':>14} {'req/s @32':>10} {'naive':>7} {'x':>5}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        f64 = r["backend"] == "onnx" and r["precision"] == "double"
        backend = r["backend"] + (" f64" if f64 else "")
        served = ""
        if "rps" in r:
            rps, naive = r["rps"], r["naive_rps"]
            bad = " !" if rps.errors or naive.errors else ""
            served = f"{rps.rps:>10.0f} {naive.rps:>7.0f} {rps.rps / naive.rps:>5.1f}{bad}"
        print(
            f"{r['model']:<15} {backend:<12} {r['diff']:>8.1e} "
            f"{'same' if r['labels'] else 'DIFF':>6} "
            f"{r['alone']:>6.0f} ({r['alone_sk']:>5.0f}) "
            f"{r['batch']:>6.1f} ({r['batch_sk']:>5.1f}) "
            f"{served}"
        )
    fast = sum(r["backend"] == "onnx" for r in rows)
    print(f"\nverified fast path: {fast} of {len(rows)}")
    for r in rows:
        if r["reason"]:
            print(f"  {r['model']}: served by scikit-learn: {r['reason']}")
    print(
        "µs/row: the loaded Model with its served backend (scikit-learn's pipeline on a DataFrame "
        "in brackets); req/s @32: slipway serve (keys, rate limit, metrics, access log, "
        "prediction log) vs the naive FastAPI server, single rows, 32 connections, 1 worker each"
    )
    print(f"bench finished in {elapsed:.0f} s")


if __name__ == "__main__":
    main()
