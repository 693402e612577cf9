"""Fixtures for experiments: the serving harness (a service with the experiment policy) and a
registry holding a production fraud model and a candidate."""

from __future__ import annotations

import pytest

from tests.serving.conftest import register, serve  # noqa: F401  (fixtures used here)


@pytest.fixture
def two_versions(registry, register, make_fitted):  # noqa: F811  (the imported fixture)
    """``fraud`` version 1 in production and version 2 (another fit) registered; the data."""
    first = register(registry, "fraud")
    second = make_fitted("frame", seed=1)
    registry.register(
        second.pipeline, "fraud", second.X_train, second.y_train, X_val=second.X_val,
        y_val=second.y_val, onnx=False,
    )  # fmt: skip
    return first, second
