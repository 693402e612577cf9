"""Per-feature drift checks, and the verdict across every check of a run.

:func:`compare` measures one feature of a window against its baseline: a test (KS for
numbers, chi-square for categories) and effect sizes. :func:`decide` then corrects the
p-values across all of a run's tests and flags a feature only when its corrected p-value is
below alpha AND one of its effects exceeds its floor. Edge cases (an empty window, a single
row, an all-null or constant feature, a feature missing on one side) get a status of their
own instead of a verdict.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from slipway.exceptions import ConfigError
from slipway.monitoring import stats
from slipway.monitoring.columns import Column
from slipway.monitoring.policy import Policy, Thresholds
from slipway.problems import jsonable

OK = "ok"
DRIFT = "drift"
MINOR = "minor"  # significant, but every effect is below its floor: not flagged
INSUFFICIENT = "insufficient_data"
EMPTY = "empty"
ALL_NULL = "all_null"
CONSTANT = "constant"
NOT_IN_REFERENCE = "not_in_reference"
MISSING = "missing"
SKIPPED = "skipped"
PENDING = "pending"
_BASELINES = {"previous": "previous window", "validation": "validation predictions"}

HISTOGRAM_BINS = 20
TOP_CATEGORIES = 12
# Chi-square's approximation needs expected counts of about 5; rarer categories are pooled.
MIN_EXPECTED = 5.0


class Statistic(Protocol):
    """A drift statistic: ``(reference, current) -> float`` for one column.

    On numeric columns the arguments are the sorted present values (float arrays); on
    categorical ones, the count of each category, aligned on the sorted union of both sides'
    categories. The built-in effects below are statistics too, registered in :data:`BUILTIN`.
    """

    def __call__(self, reference: np.ndarray, current: np.ndarray) -> float:
        """The statistic's value (NaN or an exception: recorded, never fatal)."""
        ...


# What monitor(statistics=...) and Monitor(statistics=...) take, per name: a statistic of
# numeric columns, (statistic, floor) to flag above a floor too, or (statistic, floor or None,
# "numeric" | "categorical") to say which columns it measures.
StatisticSpec = Statistic | tuple[Statistic, float] | tuple[Statistic, float | None, str]


def mean_shift(reference: np.ndarray, current: np.ndarray) -> float:
    """Difference of means in reference standard deviations."""
    sd = float(reference.std())
    shift = abs(float(current.mean()) - float(reference.mean()))
    return shift / sd if sd > 0 else (math.inf if shift > 0 else 0.0)


def variance_ratio(reference: np.ndarray, current: np.ndarray) -> float:
    """Sample variance of the current values over the reference's."""
    ref_var = float(reference.var(ddof=1)) if reference.size > 1 else 0.0
    cur_var = float(current.var(ddof=1)) if current.size > 1 else 0.0
    return cur_var / ref_var if ref_var > 0 else (math.inf if cur_var > 0 else 1.0)


def wasserstein(reference: np.ndarray, current: np.ndarray) -> float:
    """Wasserstein distance in reference standard deviations."""
    sd = float(reference.std())
    _, dist = stats.ks_wasserstein(reference, current)  # memory bounded at any size
    return dist / sd if sd > 0 else (math.inf if dist > 0 else 0.0)


def psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Population stability index over the reference's deciles."""
    edges = stats.decile_edges(reference)
    return stats.psi(stats.bin_shares(reference, edges), stats.bin_shares(current, edges))


def js(reference: np.ndarray, current: np.ndarray) -> float:
    """Jensen-Shannon distance (base 2) between the category shares."""
    return stats.jensen_shannon(reference, current)


def unseen_share(reference: np.ndarray, current: np.ndarray) -> float:
    """Share of current values in categories the reference never had."""
    return float(current[reference == 0].sum() / current.sum())


# The built-in effects by column kind, in report order; each is a Statistic like users' own.
BUILTIN: dict[str, dict[str, Statistic]] = {
    "numeric": {
        "mean_shift": mean_shift,
        "variance_ratio": variance_ratio,
        "wasserstein": wasserstein,
        "psi": psi,
    },
    "categorical": {"js": js, "unseen_share": unseen_share},
}
# Effects whose floor comes from the policy's Thresholds (unseen_share is reported only).
_FLOORED = ("mean_shift", "variance_ratio", "wasserstein", "psi", "js")


@dataclass
class FeatureResult:
    """What one check found for one feature (or one prediction output) in one window."""

    name: str
    kind: str
    status: str = PENDING
    group: str = "feature"  # "feature" or "prediction"
    baseline: str = "reference"  # "reference", "previous" or "validation"
    reference_rows: int = 0
    current_rows: int = 0
    null_rate: float = 0.0
    reference_null_rate: float = 0.0
    test: str | None = None
    statistic: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    effects: dict[str, float | None] = field(default_factory=dict)
    floors: dict[str, float] = field(default_factory=dict)
    exceeded: list[str] = field(default_factory=list)
    min_detectable: float | None = None
    detectable_unit: str | None = None
    severity: str = "alert"
    message: str = ""
    histogram: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def flagged(self) -> bool:
        """True when the shift is both significant and large enough to matter."""
        return self.status == DRIFT

    @property
    def key(self) -> str:
        """Unique within a window: the group, name and baseline."""
        if self.group == "feature":
            return self.name
        return f"{self.group}:{self.name}@{self.baseline}"

    def to_dict(self, *, histogram: bool = True) -> dict[str, Any]:
        """JSON-ready view; non-finite numbers become null."""
        out = asdict(self)
        if not histogram:
            out["histogram"] = None
        return jsonable(out)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> FeatureResult:
        """Inverse of :meth:`to_dict`."""
        return cls(**dict(data))


def compare(
    name: str,
    reference: Column | None,
    current: Column | None,
    thresholds: Thresholds,
    *,
    min_rows: int,
    group: str = "feature",
    baseline: str = "reference",
    statistics: Mapping[str, StatisticSpec] | None = None,
) -> FeatureResult:
    """Measure one feature of a window against its baseline; the verdict comes from decide()."""
    side = current if current is not None else reference
    kind = side.kind if side is not None else "skipped"
    out = FeatureResult(name, kind, group=group, baseline=baseline, severity=thresholds.severity)
    if reference is not None:
        out.reference_rows, out.reference_null_rate = reference.present, reference.null_rate
    if current is not None:
        out.current_rows, out.null_rate = current.present, current.null_rate
    where = _BASELINES.get(baseline, baseline)
    if reference is None:
        return _status(out, NOT_IN_REFERENCE, f"{name} never appears in the {where}")
    if current is None:
        return _status(out, MISSING, f"{name} is absent from the window")
    if reference.kind == "skipped" or current.kind == "skipped":
        return _status(out, SKIPPED, f"{name} is not compared (date-times always move)")
    if reference.kind != current.kind:
        return _status(
            out, SKIPPED, f"{name} is {reference.kind} in the {where}, {current.kind} now"
        )
    if current.rows == 0:
        return _status(out, EMPTY, "the window has no rows")
    if current.present == 0:
        rate = f"{reference.null_rate:.1%}"
        return _status(out, ALL_NULL, f"every value is missing (reference: {rate} missing)")
    if current.present < min_rows or reference.present < min_rows:
        short, n = (
            ("window", current.present)
            if current.present < min_rows
            else (where, reference.present)
        )
        return _status(
            out, INSUFFICIENT, f"{n} value(s) in the {short}; at least {min_rows} are needed"
        )
    if reference.constant and current.constant and _same_value(reference, current):
        return _status(out, CONSTANT, "a single value, the same as in the reference")
    if reference.kind == "numeric":
        r, c = _numeric(out, reference, current)
    else:
        r, c = _categorical(out, reference, current)
    _effects(out, reference.kind, r, c, thresholds, statistics or {})
    return out


def decide(results: Sequence[FeatureResult], policy: Policy) -> None:
    """Correct the p-values of every pending check across the run, then flag or clear each."""
    pending = [r for r in results if r.status == PENDING]
    p = np.array([r.p_value for r in pending], dtype=np.float64)
    if policy.correction == "bh":
        adjusted, level = stats.benjamini_hochberg(p), policy.alpha / max(len(pending), 1)
    elif policy.correction == "bonferroni":
        adjusted, level = stats.bonferroni(p), policy.alpha / max(len(pending), 1)
    else:
        adjusted, level = p, policy.alpha
    for r, p_adj in zip(pending, adjusted.tolist(), strict=True):
        r.p_adjusted = p_adj
        _detectable(r, level)
        significant = p_adj <= policy.alpha
        shown = _effects_text(r)
        p_text = f"{r.test} p={_p(r.p_value)}, corrected {_p(p_adj)}"
        if significant and r.exceeded:
            r.status = DRIFT
            big = ", ".join(_effect_text(r, e) for e in r.exceeded)
            r.message = f"shifted: {big} ({p_text})"
        elif significant:
            r.status = MINOR
            r.message = f"significant but small: {shown}, each below its floor ({p_text})"
        else:
            r.status = OK
            unit = "SD" if r.detectable_unit == "sd" else "JS"
            r.message = (
                f"no significant shift ({p_text}); this sample detects shifts of "
                f"{r.min_detectable:.3g} {unit} or more"
            )


# -- numbers -------------------------------------------------------------------------------


def _numeric(out: FeatureResult, ref: Column, cur: Column) -> tuple[np.ndarray, np.ndarray]:
    d, _ = stats.ks_wasserstein(ref.values, cur.values)  # merged a range at a time
    out.test, out.statistic = "ks", d
    out.p_value = stats.ks_pvalue(d, ref.present, cur.present)
    out.histogram = _numeric_histogram(ref, cur)
    return ref.values, cur.values


def _effects(
    out: FeatureResult,
    kind: str,
    r: np.ndarray,
    c: np.ndarray,
    th: Thresholds,
    statistics: Mapping[str, StatisticSpec],
) -> None:
    """Every built-in effect of the column's kind, then the user's statistics of that kind."""
    out.effects = {name: fn(r, c) for name, fn in BUILTIN[kind].items()}
    out.floors = {k: float(getattr(th, k)) for k in out.effects if k in _FLOORED}
    for name, spec in statistics.items():
        fn, floor, applies = _unpack(spec)
        if applies != kind:
            continue
        try:
            value = float(fn(r, c))
        except Exception as exc:  # a user's statistic must not sink the run
            out.extra[name] = {"error": f"{type(exc).__name__}: {exc}"}
            continue
        out.extra[name] = value
        if floor is not None:
            out.effects[name], out.floors[name] = value, float(floor)
    out.exceeded = [k for k in out.floors if _exceeds(k, out.effects[k], out.floors[k])]


def _unpack(spec: StatisticSpec) -> tuple[Statistic, float | None, str]:
    if not isinstance(spec, tuple):
        return spec, None, "numeric"
    if len(spec) == 2:
        return spec[0], spec[1], "numeric"
    fn, floor, kind = spec
    if kind not in BUILTIN:
        raise ConfigError(
            f"A drift statistic applies to 'numeric' or 'categorical' columns, not {kind!r}."
        )
    return fn, floor, kind


def _exceeds(effect: str, value: float | None, floor: float) -> bool:
    if value is None or math.isnan(value):
        return False
    if effect == "variance_ratio":
        return value >= floor or value <= 1 / floor
    return value > floor


def _numeric_histogram(ref: Column, cur: Column) -> dict[str, Any]:
    lo, hi = float(ref.values[0]), float(ref.values[-1])
    if hi <= lo:
        lo, hi = lo - 0.5, hi + 0.5
    edges = np.linspace(lo, hi, HISTOGRAM_BINS + 1)

    def shares(values: np.ndarray) -> tuple[list[float], float, float]:
        cuts = np.searchsorted(values, edges, side="left")
        cuts[-1] = np.searchsorted(values, hi, side="right")
        n = max(values.size, 1)
        return (np.diff(cuts) / n).tolist(), cuts[0] / n, (values.size - cuts[-1]) / n

    ref_shares, _, _ = shares(ref.values)
    cur_shares, below, above = shares(cur.values)
    return {
        "edges": edges.tolist(),
        "reference": ref_shares,
        "current": cur_shares,
        "current_below": float(below),
        "current_above": float(above),
    }


# -- categories ----------------------------------------------------------------------------


def _categorical(out: FeatureResult, ref: Column, cur: Column) -> tuple[np.ndarray, np.ndarray]:
    cats = np.union1d(ref.categories.astype(str), cur.categories.astype(str))
    r = _aligned(ref, cats)
    c = _aligned(cur, cats)
    table_r, table_c = _pool_rare(r, c)
    test = stats.chi_square(table_r, table_c)
    out.test, out.statistic, out.p_value = "chi2", test.statistic, test.p_value
    out.extra["categories_tested"] = len(table_r)
    ref_share, cur_share = r / r.sum(), c / c.sum()
    top = np.argsort(-np.maximum(ref_share, cur_share), kind="stable")[:TOP_CATEGORIES]
    rest = np.setdiff1d(np.arange(cats.size), top)
    hist: dict[str, Any] = {
        "categories": [str(x) for x in cats[top]],
        "reference": ref_share[top].tolist(),
        "current": cur_share[top].tolist(),
        "unseen": [bool(r[i] == 0) for i in top],
    }
    if rest.size:
        hist["categories"].append(f"({rest.size} others)")
        hist["reference"].append(float(ref_share[rest].sum()))
        hist["current"].append(float(cur_share[rest].sum()))
        hist["unseen"].append(False)
    out.histogram = hist
    return r, c


def _aligned(col: Column, cats: np.ndarray) -> np.ndarray:
    out = np.zeros(cats.size, dtype=np.float64)
    idx = np.searchsorted(cats, col.categories.astype(str))
    np.add.at(out, idx, col.counts)
    return out


def _pool_rare(r: np.ndarray, c: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    total = r + c
    n_r, n_c = r.sum(), c.sum()
    expected_min = np.minimum(total * n_r, total * n_c) / (n_r + n_c)
    rare = expected_min < MIN_EXPECTED
    if not rare.any():
        return r, c
    return (np.append(r[~rare], r[rare].sum()), np.append(c[~rare], c[rare].sum()))


# -- shared --------------------------------------------------------------------------------


def _detectable(r: FeatureResult, level: float) -> None:
    if r.test == "ks":
        shift = stats.detectable_mean_shift(r.reference_rows, r.current_rows, level)
        r.min_detectable = max(shift, r.floors.get("mean_shift", 0.0))
        r.detectable_unit = "sd"
    elif r.test == "chi2":
        k = int(r.extra.get("categories_tested", 2))
        js = stats.detectable_js_distance(r.reference_rows, r.current_rows, k, level)
        r.min_detectable = max(js, r.floors.get("js", 0.0))
        r.detectable_unit = "js"


def _same_value(ref: Column, cur: Column) -> bool:
    if ref.kind == "numeric":
        return bool(ref.values[0] == cur.values[0])
    return str(ref.categories[ref.counts > 0][0]) == str(cur.categories[cur.counts > 0][0])


def _status(out: FeatureResult, status: str, message: str) -> FeatureResult:
    out.status, out.message = status, message
    return out


_LABELS = {
    "mean_shift": ("mean moved", " SD"),
    "variance_ratio": ("variance ratio", "x"),
    "wasserstein": ("Wasserstein", " SD"),
    "psi": ("PSI", ""),
    "js": ("Jensen-Shannon", ""),
    "unseen_share": ("unseen share", ""),
}


def _effect_text(r: FeatureResult, effect: str) -> str:
    label, unit = _LABELS.get(effect, (effect, ""))
    value = r.effects.get(effect)
    shown = "n/a" if value is None else f"{value:.3g}{unit}"
    floor = r.floors.get(effect)
    return f"{label} {shown}" + (f" (floor {floor:g})" if floor is not None else "")


def _effects_text(r: FeatureResult) -> str:
    return ", ".join(_effect_text(r, e) for e in r.floors)


def _p(p: float | None) -> str:
    return "n/a" if p is None else f"{p:.2g}"
