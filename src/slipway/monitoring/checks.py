"""Checking one window against its baseline, and :func:`monitor` for frames and arrays.

The runner (store-backed, per model and window) and :func:`monitor` (two frames in a notebook)
both end here: prepared columns in, decided :class:`FeatureResult` objects out.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from typing import Any

import pandas as pd

from slipway.monitoring import columns as cols
from slipway.monitoring.columns import Column, Kind
from slipway.monitoring.drift import FeatureResult, StatisticSpec, compare, decide
from slipway.monitoring.policy import Policy, make_policy
from slipway.monitoring.quality import Expectation, check_quality
from slipway.monitoring.report import DriftReport, WindowReport


def feature_checks(
    reference: Mapping[str, Column],
    current: Mapping[str, Column],
    policy: Policy,
    *,
    group: str = "feature",
    baseline: str = "reference",
    statistics: Mapping[str, StatisticSpec] | None = None,
) -> list[FeatureResult]:
    """Compare every feature on either side (undecided: pass all of a run's results to decide)."""
    names = list(dict.fromkeys([*reference, *current]))
    return [
        compare(
            name,
            reference.get(name),
            current.get(name),
            policy.for_feature(name),
            min_rows=policy.min_rows,
            group=group,
            baseline=baseline,
            statistics=statistics,
        )
        for name in names
    ]


def prepare_frame(frame: pd.DataFrame, kinds: Mapping[str, Kind]) -> dict[str, Column]:
    """Prepare each column of a frame as its kind (inferred when not given)."""
    return {
        name: cols.prepare(frame[name], kinds.get(name) or cols.infer_kind(frame[name]))
        for name in frame.columns
    }


def monitor(
    reference: Any,
    current: Any,
    *,
    categorical: Collection[str] = (),
    features: Sequence[str] | None = None,
    reference_predictions: Any = None,
    current_predictions: Any = None,
    statistics: Mapping[str, StatisticSpec] | None = None,
    policy: Policy | None = None,
    thresholds: Mapping[str, Any] | None = None,
    **options: Any,
) -> DriftReport:
    """Check ``current`` data against ``reference`` data and return a :class:`DriftReport`.

    Both sides may be DataFrames, mappings of columns, or 1-D/2-D arrays (columns named
    ``feature_0``, ``feature_1``, ...). Number columns are compared with KS and effect sizes,
    other columns (and those named in ``categorical``) with chi-square and Jensen-Shannon.
    ``thresholds`` sets effect floors per feature, e.g. ``{"amount": {"mean_shift": 0.2}}``
    (the key ``"*"`` sets every feature's); other options (``alpha``, ``correction``,
    ``min_rows``) are fields of :class:`Policy`. ``statistics`` adds extra drift statistics
    (:class:`~slipway.monitoring.Statistic`), ``name -> fn(reference, current)`` (reported),
    ``name -> (fn, floor)`` (also an effect that can flag) or ``name -> (fn, floor or None,
    "categorical")`` for categorical columns (category counts). Give
    ``reference_predictions`` and ``current_predictions`` (arrays or frames of model outputs)
    to check prediction drift too.
    """
    pol = make_policy(policy, thresholds=thresholds, **options)
    ref = cols.as_frame(reference, features)
    cur = cols.as_frame(
        current, list(ref.columns) if not isinstance(current, pd.DataFrame) else None
    )
    if features is not None and isinstance(reference, pd.DataFrame):
        ref = ref.loc[:, [f for f in features if f in ref.columns]]
    if features is not None and isinstance(current, pd.DataFrame):
        cur = cur.loc[:, [f for f in features if f in cur.columns]]
    kinds: dict[str, Kind] = {
        name: "categorical" if name in categorical else cols.infer_kind(ref[name])
        for name in ref.columns
    }
    ref_cols = prepare_frame(ref, kinds)
    cur_cols = prepare_frame(cur, kinds)
    results = feature_checks(ref_cols, cur_cols, pol, statistics=statistics)
    predictions: list[FeatureResult] = []
    if reference_predictions is not None and current_predictions is not None:
        ref_p = cols.as_frame(reference_predictions, ["prediction"])
        cur_p = cols.as_frame(current_predictions, list(ref_p.columns))
        pkinds = {n: cols.infer_kind(ref_p[n]) for n in ref_p.columns}
        predictions = feature_checks(
            prepare_frame(ref_p, pkinds), prepare_frame(cur_p, pkinds), pol, group="prediction"
        )
    decide([*results, *predictions], pol)
    expected = {name: Expectation.of(col) for name, col in ref_cols.items()}
    window = WindowReport(
        None,
        None,
        len(cur),
        results,
        predictions,
        quality=check_quality(cur_cols, expected, pol.quality),
    )
    window.judge()
    return DriftReport([window], pol.to_dict())
