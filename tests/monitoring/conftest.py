"""Factories for monitoring tests: seeded feature tables, and a logged model to monitor."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from slipway.testing import register_reference_model
from tests.monitoring.helpers import Log

CATEGORIES = np.array(["grocery", "travel", "gaming", "fuel", "online"])
SHARES = np.array([0.4, 0.25, 0.15, 0.15, 0.05])


def table(n: int, rng: np.random.Generator, *, shift: dict[int, float] | None = None):
    """20 features of mixed shapes: normal, skewed, integer-valued and categorical.

    ``shift`` moves numeric feature i by that many of its own standard deviations.
    """
    cols: dict[str, np.ndarray] = {}
    for i in range(6):
        cols[f"normal_{i}"] = rng.normal(10 * i, 1 + i, n)
    for i in range(4):
        cols[f"lognormal_{i}"] = rng.lognormal(1, 0.5 + 0.2 * i, n)
    for i in range(3):
        cols[f"exponential_{i}"] = rng.exponential(1 + i, n)
    for i in range(3):
        cols[f"count_{i}"] = rng.poisson(3 + 5 * i, n).astype(float)
    for i in range(4):
        cols[f"category_{i}"] = CATEGORIES[rng.choice(5, n, p=SHARES)]
    frame = pd.DataFrame(cols)
    for i, sds in (shift or {}).items():
        name = frame.columns[i]
        sd = {"normal": 1 + i} if name.startswith("normal") else None
        assert sd is not None, "shifts are planted in normal features"
        frame[name] = frame[name] + sds * sd["normal"]
    return frame


@pytest.fixture
def make_table():
    """Factory: ``make_table(n, seed, shift={feature_index: sds})`` -> a 20-feature frame."""

    def make(n: int, seed: int = 0, shift: dict[int, float] | None = None) -> pd.DataFrame:
        return table(n, np.random.default_rng(seed), shift=shift)

    return make


@pytest.fixture
def log(registry):
    """Factory for log rows in the test's store."""
    return Log(registry)


@pytest.fixture
def fraud(registry, make_fitted):
    """A registered, promoted binary classifier on mixed-type transactions: (registry, fitted)."""
    fitted = make_fitted("frame", n=3_000)
    register_reference_model(registry, fitted)
    return fitted
