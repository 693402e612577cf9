"""The store-backed monitor: a registered model's prediction log, window by window.

:class:`Monitor` reads the log, feedback and contract refusals of a model for a time range,
checks each window against the version's reference (or the previous window), stores the run
in ``monitoring_runs`` and hands the verdict to the alert sinks.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any, Literal

from slipway.clock import DURATION, parse_duration, utcnow
from slipway.exceptions import ConfigError, ModelNotFound
from slipway.monitoring import columns as cols
from slipway.monitoring.checks import feature_checks
from slipway.monitoring.columns import Column, Kind
from slipway.monitoring.drift import FeatureResult, StatisticSpec, decide
from slipway.monitoring.estimated import estimate_window
from slipway.monitoring.log import LogSchema
from slipway.monitoring.outcomes import performance_by_version, prediction_columns
from slipway.monitoring.policy import Policy
from slipway.monitoring.quality import Expectation, Tally, check_quality, tally
from slipway.monitoring.report import ALERT, DriftReport, Reason, WindowReport
from slipway.monitoring.sinks import Route, deliver, routes
from slipway.monitoring.sources import Source, open_source
from slipway.monitoring.traffic import Traffic, give_back, heap_pool, violation_summary
from slipway.registry import Registry
from slipway.store import monitoring as stored
from slipway.versions import ModelVersion, check_name

Baseline = Literal["reference", "previous"]
Progress = Callable[[str, int, "int | None"], None]  # (step, done, total or None)
READING, CHECKING = "reading the log", "checking windows"
HISTORY_POINTS = 30
_KINDS: dict[str, Kind] = {
    "number": "numeric",
    "integer": "numeric",
    "category": "categorical",
    "boolean": "categorical",
    "datetime": "skipped",
}


def parse_until(text: str, now: datetime, option: str = "--until") -> datetime:
    """When a checked span ends: an ISO 8601 time (``2026-11-05T14:00:00Z``; no zone means
    UTC), a date (``2026-11-05``, midnight UTC), or a duration ago (``2h``: two hours before
    ``now``)."""
    if DURATION.match(text):
        return now - parse_duration(text, option)
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ConfigError(
            f"{option} {text!r} is neither a time nor a duration; use an ISO 8601 time "
            "(2026-11-05T14:00:00Z; UTC when no zone is given), a date (2026-11-05) or how "
            "long ago (2h, 1d)."
        ) from None
    return at.replace(tzinfo=UTC) if at.tzinfo is None else at.astimezone(UTC)


def window_bounds(
    end: datetime, since: timedelta, window: timedelta | None
) -> list[tuple[datetime, datetime]]:
    """Consecutive windows of length ``window`` ending at ``end`` and covering ``since``, oldest
    first; the oldest is cut short when ``since`` is not a multiple of ``window``."""
    step = window or since
    if step > since:
        raise ConfigError(f"--window ({step}) is longer than --since ({since}).")
    start = end - since
    out = []
    right = end
    while right > start:
        left = max(right - step, start)
        out.append((left, right))
        right = left
    return out[::-1]


@dataclass(frozen=True)
class RunSummary:
    """One stored monitoring run, as `slipway monitor history` lists it."""

    id: int
    model: str
    version: int | None
    created_at: datetime
    status: str
    window_start: datetime | None
    window_end: datetime | None
    rows: int
    reasons: list[str]
    alerts: list[dict[str, Any]]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view."""
        out = dict(self.__dict__)
        for key in ("created_at", "window_start", "window_end"):
            out[key] = None if out[key] is None else out[key].isoformat()
        return out


class Monitor:
    """Checks registered models' prediction logs and keeps every run.

    ``sinks`` defaults to what settings ask for (a log line, and the webhook when
    ``SLIPWAY_ALERT_WEBHOOK_URL`` is set). ``clock`` returns the current UTC time.
    ``statistics`` adds drift statistics to every feature check, as :func:`monitor` takes them.
    """

    def __init__(
        self,
        registry: Registry,
        policy: Policy | None = None,
        *,
        sinks: Sequence[Route] | None = None,
        clock: Callable[[], datetime] = utcnow,
        sleep: Callable[[float], None] | None = None,
        statistics: Mapping[str, StatisticSpec] | None = None,
    ) -> None:
        self.registry = registry
        self.statistics = dict(statistics or {})
        self.policy = policy or Policy()
        self.sinks = list(routes(registry.settings) if sinks is None else sinks)
        self.clock = clock
        self._sleep = sleep

    def run(
        self,
        ref: str,
        *,
        since: timedelta = timedelta(hours=24),
        window: timedelta | None = None,
        baseline: Baseline = "reference",
        store: bool = True,
        until: datetime | None = None,
        progress: Progress | None = None,
        source: str | Source = "log",
        engine: str = "local",
        scheduler: str | None = None,
    ) -> DriftReport:
        """Check ``ref`` (``name``: production, else latest) over the ``since`` before
        ``until`` (default: now).

        ``source`` is what is read: ``"log"`` (the prediction log), ``"batch"`` or
        ``"batch:RUN_ID"`` (batch outputs kept with their inputs), the path of a log exported
        to Parquet, or a :class:`~slipway.monitoring.sources.Source`. ``engine="dask"`` reads
        an exported log on a Dask cluster (``scheduler``; a local one when None).

        ``progress`` is called as ``progress(step, done, total)`` while the run reads the log
        (0 rows, then the rows read; total unknown) and checks its windows (windows done of
        all).
        """
        if baseline not in ("reference", "previous"):
            raise ConfigError(f"baseline must be 'reference' or 'previous', not {baseline!r}.")
        if until is not None and until.tzinfo is None:
            raise ConfigError(f"until={until!r} has no time zone; give a UTC time.")
        mv = self.registry.get(ref)
        bounds = window_bounds(until or self.clock(), since, window)
        tell = progress or _silent
        step = bounds[-1][1] - bounds[-1][0]
        reader = open_source(source, self.registry.store, engine=engine, scheduler=scheduler)
        schema = LogSchema.of(mv, self.registry.versions(mv.name))
        tell(READING, 0, None)
        with heap_pool():
            traffic, labels = reader.traffic_and_labeled(
                schema, mv.name, bounds[0][0] - step, bounds[-1][1], bounds[0][0]
            )
        tell(READING, len(traffic), None)
        refused = reader.refusals(mv.name, bounds[0][0], bounds[-1][1])
        kinds = {f.name: _KINDS[f.kind] for f in mv.contract.fields}
        reference = _prepare(self.registry.reference_sample(mv), kinds)
        expected = _expectations(mv, self.registry.profile(mv), reference)
        ref_preds = prediction_columns(self.registry.reference_predictions(mv), mv)
        versions: dict[int, ModelVersion] = {mv.version: mv}
        estimator = self.registry.estimator(mv)
        windows: list[WindowReport] = []
        tell(CHECKING, 0, len(bounds))
        for start, end in bounds:
            current, previous = traffic.between(start, end), traffic.between(start - step, start)
            # Each feature prepared once, when the drift check asks for it, and let go after
            # its check: one feature's sorted numbers in memory at a time.
            cur_cols = _OneAtATime(current.inputs, kinds, expected)
            window_report = self._window(
                mv, current, previous, cur_cols, reference, ref_preds, kinds, expected, baseline
            )
            window_report.start, window_report.end = start, end
            window_report.quality = check_quality(
                cur_cols.tallies(),
                expected,
                self.policy.quality,
                violation_summary(refused, start, end),
            )
            labeled = labels.between(start, end)
            give_back()  # each step's freed temporaries, before the next one adds its own
            window_report.performance = performance_by_version(
                current, labeled, lambda v: self._version(mv.name, v, versions), self.policy
            )
            give_back()
            window_report.estimation = estimate_window(mv, current, labeled, estimator, self.policy)
            give_back()
            window_report.judge()
            windows.append(window_report)
            tell(CHECKING, len(windows), len(bounds))
        skew = self._skew(mv, windows[-1]) if "features" in mv.meta else None
        report = DriftReport(
            windows,
            self.policy.to_dict(),
            model=mv.name,
            version=mv.version,
            baseline=baseline,
            created_at=self.clock(),
            history=self._timeline(mv.name, bounds[0][0]) if store else [],
            skew=skew,
        )
        if store:
            self._store(report, mv.name)
        return report

    def history(self, name: str, *, limit: int = 20) -> list[RunSummary]:
        """Stored runs of a model, newest first."""
        check_name(name)
        return [
            RunSummary(
                r["id"],
                r["model_name"],
                r["version"],
                r["created_at"],
                r["status"],
                r["window_start"],
                r["window_end"],
                int(r["rows"]),
                [x["message"] for x in (r["summary"] or {}).get("reasons", [])],
                list(r["alerts"] or []),
            )
            for r in stored.runs(self.registry.store, name, limit=limit)
        ]

    def latest(self, name: str) -> dict[str, Any] | None:
        """The newest stored report of a model as JSON-ready data, or None before any run.

        Raises ModelNotFound for a model the registry does not know.
        """
        check_name(name)
        return stored.latest_report(self.registry.store, name)

    # -- internals -------------------------------------------------------------------------

    def _window(
        self,
        mv: ModelVersion,
        current: Traffic,
        previous: Traffic,
        cur_cols: Mapping[str, Column],
        reference: dict[str, Column],
        ref_preds: dict[str, Column],
        kinds: dict[str, Kind],
        expected: dict[str, Expectation],
        baseline: Baseline,
    ) -> WindowReport:
        base_cols = reference if baseline == "reference" else _prepare(previous.inputs, kinds)
        features = feature_checks(
            base_cols, cur_cols, self.policy, baseline=baseline, statistics=self.statistics
        )
        mine, before = (
            current.where(current.versions == mv.version),
            previous.where(previous.versions == mv.version),
        )
        cur_preds = prediction_columns(mine, mv)
        predictions: list[FeatureResult] = [
            *feature_checks(
                ref_preds, cur_preds, self.policy, group="prediction", baseline="validation"
            ),
            *feature_checks(
                prediction_columns(before, mv),
                cur_preds,
                self.policy,
                group="prediction",
                baseline="previous",
            ),
        ]
        decide([*features, *predictions], self.policy)
        return WindowReport(None, None, len(current), features, predictions)

    def _skew(self, mv: ModelVersion, window: WindowReport) -> dict[str, Any]:
        """The skew audit of the window's served features (a sample); a reason when it differs."""
        from slipway.features.audit import audit

        assert window.start is not None and window.end is not None
        found = audit(
            self.registry.store,
            mv.name,
            lambda v: self.registry.get(f"{mv.name}:{v}"),
            since=window.end - window.start,
            end=window.end,
            sample=self.policy_skew_sample,
        )
        if found.status == "skew":
            names = [f.name for f in found.features if f.mismatches]
            window.reasons.append(
                Reason(
                    ALERT,
                    "feature_skew",
                    f"training/serving skew: {', '.join(names)} differ from their offline "
                    f"recomputation on {found.mismatches} value(s) of {found.rows} audited "
                    "predictions (slipway features audit)",
                )
            )
        return found.to_dict()

    policy_skew_sample = 1000  # predictions the monitoring run's skew audit recomputes

    def _version(
        self, name: str, version: int, cache: dict[int, ModelVersion]
    ) -> ModelVersion | None:
        if version not in cache:
            try:
                cache[version] = self.registry.get(f"{name}:{version}")
            except ModelNotFound:
                return None
        return cache[version]

    def _timeline(self, name: str, before: datetime) -> list[dict[str, Any]]:
        return stored.summaries(self.registry.store, name, before, HISTORY_POINTS)

    def _store(self, report: DriftReport, model: str) -> None:
        deciding = report.deciding

        def numbered(run_id: int) -> dict[str, Any]:
            report.run_id = run_id
            return report.to_dict()

        run_id = stored.add_run(
            self.registry.store,
            numbered,
            model=model,
            version=report.version,
            created_at=report.created_at,
            status=report.status,
            window_start=deciding.start,
            window_end=deciding.end,
            rows=deciding.rows,
            summary=report.summary(),
        )
        settings = self.registry.settings
        kwargs: dict[str, Any] = {
            "attempts": settings.alert_webhook_attempts,
            "backoff": settings.alert_webhook_backoff,
        }
        if self._sleep is not None:
            kwargs["sleep"] = self._sleep
        report.alerts = deliver(report, self.sinks, **kwargs)
        stored.set_alerts(self.registry.store, run_id, report.alerts, report.to_dict())


def _silent(step: str, done: int, total: int | None) -> None:
    """No progress shown."""


def latest_report(registry: Registry, name: str) -> dict[str, Any] | None:
    """The newest stored monitoring report of model ``name`` as JSON-ready data, or None.

    What ``GET /v1/models/{name}/monitoring`` returns; raises ModelNotFound for unknown models.
    """
    return Monitor(registry, sinks=[]).latest(name)


def _prepare(frame: Any, kinds: dict[str, Kind]) -> dict[str, Column]:
    return {name: cols.prepare(frame[name], kind) for name, kind in kinds.items() if name in frame}


class _OneAtATime(Mapping[str, Column]):
    """A window's features, each prepared when it is asked for and not kept: the drift checks
    take them one after another, so at volume one feature's sorted numbers are held at a time
    (all of them at once were about 400 MB at 10M rows). What the quality check needs from
    each is counted as it is prepared (:func:`~slipway.monitoring.quality.tally`)."""

    def __init__(
        self, frame: Any, kinds: dict[str, Kind], expected: Mapping[str, Expectation]
    ) -> None:
        self.frame, self.kinds, self.expected = frame, kinds, expected
        self.names = [name for name in kinds if name in frame]
        self._tallies: dict[str, Tally] = {}

    def __getitem__(self, name: str) -> Column:
        if name not in self.kinds or name not in self.frame:
            raise KeyError(name)
        column = cols.prepare(self.frame[name], self.kinds[name])
        self._tallies[name] = tally(column, self.expected.get(name, Expectation()))
        return column

    def __iter__(self) -> Iterator[str]:
        return iter(self.names)

    def __len__(self) -> int:
        return len(self.names)

    def tallies(self) -> dict[str, Tally]:
        """Each feature's quality tally, in the window's column order (a feature no check has
        asked for yet is prepared now)."""
        for name in self.names:
            if name not in self._tallies:
                self[name]  # prepares it and takes its tally
        return {name: self._tallies[name] for name in self.names}


def _expectations(
    mv: ModelVersion, profile: dict[str, Any], reference: dict[str, Column]
) -> dict[str, Expectation]:
    out = {}
    for spec in mv.contract.fields:
        null_rate = float(profile.get("features", {}).get(spec.name, {}).get("null_rate", 0.0))
        if spec.kind in ("number", "integer"):
            out[spec.name] = Expectation(null_rate, spec.min, spec.max)
        elif spec.kind in ("category", "boolean") and spec.categories is not None:
            out[spec.name] = Expectation(null_rate, categories=frozenset(map(str, spec.categories)))
        elif spec.name in reference:
            out[spec.name] = Expectation(
                null_rate, categories=Expectation.of(reference[spec.name]).categories
            )
        else:
            out[spec.name] = Expectation(null_rate)
    return out
