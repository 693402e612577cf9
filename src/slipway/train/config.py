"""The `slipway train` config file: its sections as pydantic models, read from TOML."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from slipway.exceptions import ConfigError


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class DataConfig(_Strict):
    """Where the training data is and which columns matter.

    ``since`` (e.g. ``"90d"``) keeps the rows of that recent period only (needs
    ``time_column``); ``onehot_budget_mb`` caps the dense one-hot matrix the categorical columns
    would make.
    """

    path: str
    target: str
    features: list[str] | None = None
    exclude: list[str] = Field(default_factory=list)
    categorical: list[str] | None = None
    time_column: str | None = None
    since: str | None = None  # e.g. "90d": train on the rows of the last 90 days only
    onehot_budget_mb: float = Field(1024.0, gt=0)


class EstimatorConfig(_Strict):
    """The estimator, by dotted class path, with constructor params."""

    class_: str = Field(alias="class")
    params: dict[str, Any] = Field(default_factory=dict)


class ValidationConfig(_Strict):
    """Hold-out share (time-ordered when ``data.time_column`` is set) and optional k-fold CV."""

    fraction: float = Field(0.2, gt=0, lt=1)
    cv: int | None = Field(None, ge=2)
    seed: int = 0


class ContractConfig(_Strict):
    """How strictly serving inputs are checked."""

    unseen: Literal["reject", "flag"] = "reject"
    band: float = Field(10.0, gt=0)


class TrainConfig(_Strict):
    """A whole `slipway train` configuration file."""

    name: str
    description: str = ""
    tags: dict[str, str] = Field(default_factory=dict)
    alias: str | None = None
    format: Literal["joblib", "skops"] = "joblib"
    trusted: list[str] = Field(default_factory=list)
    data: DataConfig
    estimator: EstimatorConfig
    validation: ValidationConfig = Field(default_factory=lambda: ValidationConfig())
    contract: ContractConfig = Field(default_factory=lambda: ContractConfig())


def load_config(path: Path) -> TrainConfig:
    """Parse and check a TOML config; raise ConfigError listing every problem."""
    raw = read_toml(path)
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        problems = pydantic_problems(exc)
        raise ConfigError(f"Config file {path} has {len(problems)} problem(s):", problems) from None


def read_toml(path: Path) -> dict[str, Any]:
    """The TOML file as a dict; a missing file or bad syntax is a ConfigError at once."""
    try:
        return tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(f"Config file {path} does not exist.") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"Config file {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8."
        ) from None
    except OSError as exc:
        raise ConfigError(f"Cannot read config file {path}: {exc.strerror}.") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"Config file {path} is not valid TOML: {exc}") from None


def pydantic_problems(exc: ValidationError) -> list[str]:
    """One line per validation error: ``section.key: message``."""
    return [
        f"{'.'.join(str(p) for p in err['loc']) or '(top level)'}: {err['msg']}"
        for err in exc.errors()
    ]


_S = TypeVar("_S", bound=BaseModel)


def section(model: type[_S], raw: Any) -> _S | None:
    """A section on its own, so the others can be checked further when one is wrong."""
    try:
        return model.model_validate(raw)
    except ValidationError:
        return None  # already reported by the whole config's validation
