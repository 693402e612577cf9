"""Prometheus metrics of one server: requests, latency, predictions, the log, model loads.

With one worker the metrics live in a registry of their own (so several apps in one process,
as in tests, never collide). With ``--workers N`` the CLI points ``PROMETHEUS_MULTIPROC_DIR`` at
a fresh directory before the workers start; prometheus-client then keeps each worker's values
in memory-mapped files there, and ``/metrics`` on any worker merges every worker's files:
counters and histograms are summed, the log queue depth is summed over live workers, the
serving version is the highest any live worker reports, and a background thread counts as
alive only if it is alive in every live worker.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)

AGE_BUCKETS = (1.0, 10.0, 60.0, 600.0, 3600.0, 6 * 3600.0, 86400.0, 7 * 86400.0, 30 * 86400.0)

BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


class Metrics:
    """Every metric the service exports, created once per app."""

    def __init__(self, multiprocess_dir: str | None = None) -> None:
        self.multiprocess_dir = multiprocess_dir
        self.registry = CollectorRegistry(auto_describe=True)
        r = self.registry
        self.http_requests = Counter(
            "slipway_http_requests_total",
            "HTTP requests by route template, method and status.",
            ["route", "method", "status"],
            registry=r,
        )
        self.http_latency = Histogram(
            "slipway_http_request_duration_seconds",
            "HTTP request latency by route template.",
            ["route", "method"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.model_requests = Counter(
            "slipway_model_requests_total",
            "Prediction requests per model version, by outcome (ok, invalid).",
            ["model", "version", "outcome"],
            registry=r,
        )
        self.model_latency = Histogram(
            "slipway_model_request_duration_seconds",
            "Latency of successful prediction requests per model version.",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.predictions = Counter(
            "slipway_predictions_total",
            "Rows predicted per model version.",
            ["model", "version"],
            registry=r,
        )
        self.validation_failures = Counter(
            "slipway_validation_failures_total",
            "Requests refused for breaking a model version's input contract (HTTP 422).",
            ["model", "version"],
            registry=r,
        )
        self.log_queue_depth = Gauge(
            "slipway_prediction_log_queue_depth",
            "Prediction-log rows waiting to be written.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self.log_written = Counter(
            "slipway_prediction_log_written_total",
            "Prediction-log rows written to the database.",
            registry=r,
        )
        self.log_dropped = Counter(
            "slipway_prediction_log_dropped_total",
            "Prediction-log rows dropped (queue full, or the database refused them).",
            ["reason"],
            registry=r,
        )
        self.model_loads = Counter(
            "slipway_model_loads_total",
            "Model version loads, by outcome (ok, failed).",
            ["model", "version", "outcome"],
            registry=r,
        )
        self.serving_version = Gauge(
            "slipway_serving_version",
            "The version of each model a worker serves.",
            ["model"],
            registry=r,
            multiprocess_mode="livemax",
        )
        self.batch_requests = Histogram(
            "slipway_model_batch_requests",
            "Requests answered by one model call (micro-batching; 1 when alone).",
            ["model", "version"],
            buckets=BATCH_BUCKETS,
            registry=r,
        )
        self.thread_alive = Gauge(
            "slipway_background_thread_alive",
            "1 while a background thread of the worker runs (prediction_log, key_refresher, "
            "alias_watcher), 0 once it died (the worker then reports not ready).",
            ["thread"],
            registry=r,
            multiprocess_mode="livemin",
        )
        self.rejected = Counter(
            "slipway_rejected_requests_total",
            "Requests refused before reaching a route, by reason.",
            ["reason"],
            registry=r,
        )
        self.feature_rows = Counter(
            "slipway_feature_rows_total",
            "Rows enriched with features, per model and event source.",
            ["model", "source"],
            registry=r,
        )
        self.feature_missing = Counter(
            "slipway_feature_missing_entities_total",
            "Enriched rows whose entity had no event in the source (features got their "
            "defaults); divide by slipway_feature_rows_total for the missing-entity rate.",
            ["model", "source"],
            registry=r,
        )
        self.feature_age = Histogram(
            "slipway_feature_event_age_seconds",
            "Freshness: age of the newest event a row's features used (row time minus event "
            "time), per model and source.",
            ["model", "source"],
            buckets=AGE_BUCKETS,
            registry=r,
        )
        self.shadow_predictions = Counter(
            "slipway_shadow_predictions_total",
            "Rows a shadow version scored, by outcome (ok, invalid, error).",
            ["model", "version", "outcome"],
            registry=r,
        )
        self.shadow_latency = Histogram(
            "slipway_shadow_call_duration_seconds",
            "Time of each shadow scoring call (one or several merged requests).",
            ["model", "version"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.shadow_dropped = Counter(
            "slipway_shadow_dropped_total",
            "Rows whose shadow scoring was dropped: queue_full, failing (the version failed on "
            "every request; one is let through every second), stalled (its call ran longer than "
            "log rows wait), late (answered after its log row was written), stopped, shutdown.",
            ["model", "reason"],
            registry=r,
        )
        self.shadow_queue_depth = Gauge(
            "slipway_shadow_queue_depth",
            "Rows waiting for a shadow version.",
            registry=r,
            multiprocess_mode="livesum",
        )
        self._model_children: dict[tuple[str, int], tuple[Any, Any, Any]] = {}
        self._shadow_children: dict[tuple[str, int, str], tuple[Any, Any]] = {}
        self._batch_children: dict[tuple[str, int], Any] = {}

    def served(self, model: str, version: int) -> tuple[Any, Any, Any]:
        """(ok counter, latency histogram, row counter) of a model version, bound once."""
        key = (model, version)
        children = self._model_children.get(key)
        if children is None:
            v = str(version)
            children = (
                self.model_requests.labels(model, v, "ok"),
                self.model_latency.labels(model, v),
                self.predictions.labels(model, v),
            )
            self._model_children[key] = children
        return children

    def batched(self, model: str, version: int) -> Any:
        """The batch-size histogram of a model version, bound once."""
        key = (model, version)
        child = self._batch_children.get(key)
        if child is None:
            child = self._batch_children[key] = self.batch_requests.labels(model, str(version))
        return child

    def features_observer(self, stats: Any) -> None:
        """Count one enriched batch's rows, missing entities and event ages (one source)."""
        self.feature_rows.labels(stats.model, stats.source).inc(stats.rows)
        if stats.missing:
            self.feature_missing.labels(stats.model, stats.source).inc(stats.missing)
        age = self.feature_age.labels(stats.model, stats.source)
        for seconds in stats.ages.tolist():
            age.observe(seconds)

    def shadowed(self, model: str, version: int, outcome: str) -> tuple[Any, Any]:
        """(row counter, call-time histogram) of a shadow version's outcome, bound once."""
        key = (model, version, outcome)
        children = self._shadow_children.get(key)
        if children is None:
            v = str(version)
            children = (
                self.shadow_predictions.labels(model, v, outcome),
                self.shadow_latency.labels(model, v),
            )
            self._shadow_children[key] = children
        return children

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition and its content type."""
        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            merged = CollectorRegistry()
            multiprocess.MultiProcessCollector(merged, path=self.multiprocess_dir)
            return generate_latest(merged), CONTENT_TYPE_LATEST
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def samples(self, *names: str) -> list[tuple[str, dict[str, str], float]]:
        """Current samples ``(name, labels, value)`` of the metric families ``names`` (every
        worker's, merged, in multi-worker mode); for pages that show the numbers."""
        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            source = CollectorRegistry()
            multiprocess.MultiProcessCollector(source, path=self.multiprocess_dir)
        else:
            source = self.registry
        wanted = set(names)
        return [
            (s.name, dict(s.labels), float(s.value))
            for family in source.collect()
            if family.name in wanted
            for s in family.samples
        ]

    def close(self) -> None:
        """Drop this worker's live gauges from the shared directory (multi-worker mode)."""
        if self.multiprocess_dir:
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(os.getpid(), self.multiprocess_dir)
