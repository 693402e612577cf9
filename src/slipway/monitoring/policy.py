"""When a shift counts: the significance level, the effect floors, and their per-feature overrides.

A feature is flagged only when its test is significant after correction across every test of
the run (Benjamini-Hochberg by default) AND at least one of its effect sizes reaches that
effect's floor. The defaults follow the usual rules of thumb: the mean moved by more than 10%
of the reference standard deviation, the variance halved or doubled, a normalized Wasserstein
distance or a Jensen-Shannon distance of 0.1, a PSI of 0.2.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path
from typing import Any, Literal

from slipway.exceptions import ConfigError

Correction = Literal["bh", "bonferroni", "none"]
Severity = Literal["warn", "alert"]


@dataclass(frozen=True)
class Thresholds:
    """Effect floors for one feature (or the defaults for all), and how loud a flag is.

    ``mean_shift``: |mean change| / reference standard deviation. ``variance_ratio``: flagged
    when the variance ratio is at least this or at most its inverse. ``wasserstein``: the
    Wasserstein distance / reference standard deviation. ``psi``: population stability index
    over the reference deciles. ``js``: Jensen-Shannon distance (base 2) of category shares.
    ``severity``: whether a flag on this feature makes the run WARN or ALERT.
    """

    mean_shift: float = 0.1
    variance_ratio: float = 2.0
    wasserstein: float = 0.1
    psi: float = 0.2
    js: float = 0.1
    severity: Severity = "alert"


@dataclass(frozen=True)
class QualityFloors:
    """How far a data-quality rate may rise above its reference before the run WARNs.

    A rate is flagged when the lower end of its 95% Wilson interval exceeds the reference rate
    plus the floor, so a handful of odd rows in a small window does not raise a flag.
    """

    null_rate: float = 0.05
    out_of_range: float = 0.01
    unseen_category: float = 0.01
    contract_violations: float = 0.01


@dataclass(frozen=True)
class Policy:
    """Everything that decides a verdict; the defaults are documented in docs/monitoring.md.

    ``features`` maps a feature name to its own :class:`Thresholds`; every other feature uses
    ``thresholds``. ``min_rows`` is the fewest non-null values a window (and its baseline) must
    hold for a feature to be judged; below it the feature says "insufficient_data".
    """

    alpha: float = 0.05
    correction: Correction = "bh"
    min_rows: int = 50
    thresholds: Thresholds = field(default_factory=Thresholds)
    features: Mapping[str, Thresholds] = field(default_factory=dict)
    quality: QualityFloors = field(default_factory=QualityFloors)
    min_labels: int = 50
    performance_tolerance: float = 0.02
    bootstrap: int = 200
    seed: int = 0
    on_alert: str | None = None  # a command `slipway monitor` runs after an ALERT

    def __post_init__(self) -> None:
        problems = []
        if not 0 < self.alpha < 1:
            problems.append(f"alpha must be between 0 and 1, got {self.alpha}")
        if self.correction not in ("bh", "bonferroni", "none"):
            problems.append(f"correction must be bh, bonferroni or none, got {self.correction!r}")
        if self.min_rows < 2:
            problems.append(f"min_rows must be at least 2, got {self.min_rows}")
        if self.bootstrap < 20:
            problems.append(f"bootstrap must be at least 20 resamples, got {self.bootstrap}")
        if problems:
            raise ConfigError("Invalid monitoring policy:", problems)

    def for_feature(self, name: str) -> Thresholds:
        """The thresholds that apply to one feature."""
        return self.features.get(name, self.thresholds)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view, recorded in every report."""
        out = asdict(self)
        out["features"] = {k: asdict(v) for k, v in self.features.items()}
        return out


def make_policy(
    policy: Policy | None = None,
    *,
    thresholds: Mapping[str, Any] | None = None,
    **options: Any,
) -> Policy:
    """A Policy from keyword options; ``thresholds`` maps feature names to floors (mappings or
    :class:`Thresholds`), and the key ``"*"`` sets the defaults for every feature."""
    base = policy or Policy()
    per_feature = dict(base.features)
    defaults = base.thresholds
    for name, value in (thresholds or {}).items():
        if name == "*":
            defaults = _thresholds(value, Thresholds(), "*")
    for name, value in (thresholds or {}).items():
        if name != "*":
            per_feature[name] = _thresholds(value, defaults, name)
    unknown = set(options) - {f.name for f in fields(Policy)}
    if unknown:
        raise ConfigError(f"Unknown monitoring option(s): {', '.join(sorted(unknown))}.")
    return replace(base, thresholds=defaults, features=per_feature, **options)


def load_policy(path: Path) -> Policy:
    """Read a TOML policy file: top-level options, ``[thresholds]`` and ``[features.NAME]``."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"Cannot read monitoring config {path}: {exc.strerror}.") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"Monitoring config {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8."
        ) from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Monitoring config {path} is not valid TOML: {exc}.") from None
    floors = {"*": data.pop("thresholds", {}), **data.pop("features", {})}
    quality = data.pop("quality", None)
    if quality is not None:
        data["quality"] = _quality(quality)
    return make_policy(thresholds=floors, **data)


def _thresholds(value: Any, defaults: Thresholds, name: str) -> Thresholds:
    if isinstance(value, Thresholds):
        return value
    if not isinstance(value, Mapping):
        raise ConfigError(f"Thresholds for {name!r} must be a mapping, got {value!r}.")
    known = {f.name for f in fields(Thresholds)}
    problems = [f"{name}.{k}: unknown threshold" for k in value if k not in known]
    for k, v in value.items():
        if k == "severity":
            if v not in ("warn", "alert"):
                problems.append(f"{name}.severity: must be 'warn' or 'alert', got {v!r}")
        elif k in known and (not isinstance(v, int | float) or isinstance(v, bool) or v < 0):
            problems.append(f"{name}.{k}: must be a non-negative number, got {v!r}")
    if value.get("variance_ratio", 2.0) < 1:
        problems.append(f"{name}.variance_ratio: must be at least 1 (it is symmetric)")
    if problems:
        raise ConfigError(f"Invalid thresholds (known: {', '.join(sorted(known))}):", problems)
    return replace(defaults, **dict(value))


def _quality(value: Any) -> QualityFloors:
    known = {f.name for f in fields(QualityFloors)}
    if not isinstance(value, Mapping) or set(value) - known:
        raise ConfigError(f"[quality] takes only {', '.join(sorted(known))}.")
    return QualityFloors(**{k: float(v) for k, v in value.items()})
