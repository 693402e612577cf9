"""Fixtures for features: a registered model with features (see helpers.py)."""

from __future__ import annotations

import pytest

from tests.features.helpers import make_feature_model


@pytest.fixture
def feature_model():
    """Factory: ``feature_model(registry, **register_options)`` ingests events, trains on
    point-in-time features and registers ``fraud`` (production) with them."""
    return make_feature_model
