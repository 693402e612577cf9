"""The live-traffic numbers: the prediction log per version over an hour or a day, and this
server's own counters right now.

The log covers every worker and replica and survives restarts; it gives predictions per
second, latency percentiles and contract refusals per version and time bucket. The server's
Prometheus counters are cumulative since it started; the page polls them and plots the
differences between polls (requests per second, error share, latency of the last seconds).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from slipway.exceptions import InvalidRequest
from slipway.serving.metrics import LATENCY_BUCKETS
from slipway.serving.service import Service
from slipway.store.traffic import LATENCY_BOUNDS_MS, prediction_buckets, refusal_buckets

# window -> (length, bucket) in seconds
WINDOWS = {"1h": (3600, 60), "1d": (86400, 900)}


def quantile(q: float, bounds: Sequence[float], at_most: Sequence[float], total: float) -> float:
    """The ``q`` quantile from counts at or under each bound, interpolated within the bucket
    (as Prometheus's ``histogram_quantile``); the last bound when it lies beyond."""
    if total <= 0:
        return float("nan")
    rank = q * total
    below, lower = 0.0, 0.0
    for bound, count in zip(bounds, at_most, strict=True):
        if count >= rank:
            if count == below:
                return float(bound)
            return lower + (bound - lower) * (rank - below) / (count - below)
        below, lower = float(count), float(bound)
    return float(bounds[-1])


def history(service: Service, window: str, now: datetime | None = None) -> dict[str, Any]:
    """Per model and version: predictions/s, p50/p99 latency (ms), refusals/s and refused
    share, on a grid of buckets covering ``window`` (``1h`` or ``1d``)."""
    if window not in WINDOWS:
        raise InvalidRequest(
            f"window {window!r} is not one of {', '.join(WINDOWS)}; use ?window=1h or ?window=1d."
        )
    span, step = WINDOWS[window]
    now = now or datetime.now(UTC)
    end_bucket = int(now.timestamp()) // step + 1
    start_bucket = end_bucket - span // step
    start = datetime.fromtimestamp(start_bucket * step, UTC)
    end = datetime.fromtimestamp(end_bucket * step, UTC)
    grid = [b * step for b in range(start_bucket, end_bucket)]
    index = {t: i for i, t in enumerate(grid)}
    store = service.registry.store
    models: dict[str, dict[str, dict[str, list[float | None]]]] = {}

    def series(model: str, version: int) -> dict[str, list[float | None]]:
        versions = models.setdefault(model, {})
        if str(version) not in versions:
            # Rates are 0 in a bucket without rows; latency and shares are undefined there.
            versions[str(version)] = {
                "predictions_per_s": [0.0] * len(grid),
                "p50_ms": [None] * len(grid),
                "p99_ms": [None] * len(grid),
                "refused_per_s": [0.0] * len(grid),
                "refused_share": [None] * len(grid),
            }
        return versions[str(version)]

    predicted: dict[tuple[str, int, int], int] = {}
    refused: dict[tuple[str, int, int], int] = {}
    for b in prediction_buckets(store, start, end, step):
        i = index.get(int(b.start.timestamp()))
        if i is None:
            continue
        s = series(b.model, b.version)
        s["predictions_per_s"][i] = b.predictions / step
        s["p50_ms"][i] = _round(quantile(0.5, LATENCY_BOUNDS_MS, b.at_most, b.predictions))
        s["p99_ms"][i] = _round(quantile(0.99, LATENCY_BOUNDS_MS, b.at_most, b.predictions))
        predicted[(b.model, b.version, i)] = b.predictions
    for r in refusal_buckets(store, start, end, step):
        i = index.get(int(r.start.timestamp()))
        if i is None:
            continue
        s = series(r.model, r.version)
        s["refused_per_s"][i] = r.requests / step
        refused[(r.model, r.version, i)] = r.rows
    for model, version, i in {*predicted, *refused}:
        rows = refused.get((model, version, i), 0)
        total = rows + predicted.get((model, version, i), 0)
        series(model, version)["refused_share"][i] = rows / total if total else None
    return {
        "window": window,
        "step": step,
        "start": start.isoformat(),
        "end": end.isoformat(),
        "x": grid,
        "models": {
            m: dict(sorted(v.items(), key=lambda kv: int(kv[0]))) for m, v in sorted(models.items())
        },
    }


def server_now(service: Service) -> dict[str, Any]:
    """This server's cumulative counters now, per model version and in all."""
    metrics = service.metrics
    versions: dict[str, dict[str, Any]] = {}

    def entry(labels: dict[str, str]) -> dict[str, Any]:
        key = f"{labels['model']}:{labels['version']}"
        return versions.setdefault(
            key, {"ok": 0.0, "invalid": 0.0, "at_most": [0.0] * len(LATENCY_BUCKETS), "count": 0.0}
        )

    for name, labels, value in metrics.samples(
        "slipway_model_requests", "slipway_model_request_duration_seconds"
    ):
        if name == "slipway_model_requests_total":
            e = entry(labels)
            e[labels["outcome"]] = e.get(labels["outcome"], 0.0) + value
        elif name == "slipway_model_request_duration_seconds_bucket" and labels["le"] != "+Inf":
            e = entry(labels)
            e["at_most"][LATENCY_BUCKETS.index(float(labels["le"]))] += value
        elif name == "slipway_model_request_duration_seconds_count":
            entry(labels)["count"] += value
    requests = errors = 0.0
    for name, labels, value in metrics.samples("slipway_http_requests"):
        if name == "slipway_http_requests_total":
            requests += value
            if labels["status"].startswith("5"):
                errors += value
    return {
        "at": datetime.now(UTC).timestamp(),
        "bounds_ms": [b * 1000 for b in LATENCY_BUCKETS],
        "requests": requests,
        "errors": errors,
        "versions": dict(sorted(versions.items())),
    }


def _round(v: float) -> float | None:
    return None if v != v else round(v, 3)
