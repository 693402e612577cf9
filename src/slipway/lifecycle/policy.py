"""The gate's policy: what `slipway check` compares and how strict it is, from a TOML file.

Every key has a documented default (docs/lifecycle.md); an unknown key or a bad value is a
``ConfigError`` naming the key.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from slipway.exceptions import ConfigError

SliceMetric = Literal["accuracy", "brier", "log_loss", "absolute_error", "squared_error"]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class SlicePolicy(_Strict):
    """Per-slice comparison: each category value, and quantile bins of each number."""

    metric: SliceMetric | None = None  # default: accuracy (classifiers), absolute_error
    tolerance: float = Field(0.02, ge=0)
    min_rows: int = Field(50, ge=5)
    bins: int = Field(4, ge=2, le=20)
    max_categories: int = Field(20, ge=1)


class CalibrationPolicy(_Strict):
    """Brier score, expected calibration error and the reliability table (classifiers)."""

    bins: int = Field(10, ge=2, le=50)
    ece_tolerance: float = Field(0.02, ge=0)


class InvariancePolicy(_Strict):
    """Perturbations the predictions must not care about.

    ``perturb`` maps a field to a number (each value moved by ± that much) or to a list of
    categories that may stand in for each other.
    """

    perturb: dict[str, float | list[str]] = Field(default_factory=dict)
    rows: int = Field(1000, ge=10)
    max_label_flips: float = Field(0.0, ge=0, le=1)
    max_probability_change: float = Field(0.05, ge=0)
    max_value_change: float | None = Field(None, ge=0)


class SpeedPolicy(_Strict):
    """In-process latency on the backend the candidate would be served with."""

    max_slowdown: float = Field(3.0, gt=0)
    max_row_ms: float | None = Field(None, gt=0)
    max_batch_ms: float | None = Field(None, gt=0)
    repeats: int = Field(100, ge=5)


class CheckPolicy(_Strict):
    """A whole gate policy; ``CheckPolicy()`` is the documented default."""

    target: str | None = None
    metrics: list[str] | None = None  # default: accuracy, roc_auc / mae, rmse
    require: Literal["not_worse", "better"] = "not_worse"
    margin: float = Field(0.0, ge=0)
    alpha: float = Field(0.05, gt=0, lt=1)
    resamples: int = Field(1000, ge=100)
    seed: int = 0
    min_rows: int = Field(100, ge=10)
    holdout_since: str = "30d"
    slices: SlicePolicy = Field(default_factory=lambda: SlicePolicy())
    calibration: CalibrationPolicy = Field(default_factory=lambda: CalibrationPolicy())
    invariance: InvariancePolicy = Field(default_factory=lambda: InvariancePolicy())
    speed: SpeedPolicy = Field(default_factory=lambda: SpeedPolicy())

    def gated(self, task: str) -> list[str]:
        """The metrics the gate decides on."""
        if self.metrics is not None:
            return list(self.metrics)
        return ["accuracy", "roc_auc"] if task == "classification" else ["mae", "rmse"]

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready view, stored with each check result."""
        return self.model_dump()


def load_check_policy(path: Path | str | None) -> CheckPolicy:
    """Read a TOML policy file (None: the defaults); every problem is reported at once."""
    if path is None:
        return CheckPolicy()
    try:
        raw = tomllib.loads(Path(path).read_text())
    except FileNotFoundError:
        raise ConfigError(f"Policy file {path} does not exist.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Policy file {path} is not valid TOML: {exc}") from None
    return policy_from_dict(raw, str(path))


def policy_from_dict(raw: dict[str, Any], source: str = "policy") -> CheckPolicy:
    """A policy from already parsed data; ConfigError lists every bad key."""
    try:
        return CheckPolicy.model_validate(raw)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
            for err in exc.errors()
        ]
        raise ConfigError(f"{source} has {len(problems)} problem(s):", problems) from None
