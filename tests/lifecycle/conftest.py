"""Factories for gate tests: a champion in production and candidates with planted flaws."""

from __future__ import annotations

import pytest

from tests.lifecycle.helpers import Models


@pytest.fixture
def models(registry):
    """A champion (fraud:1, production) and a factory for candidates."""
    m = Models(registry)
    m.register(alias="production")
    return m


@pytest.fixture
def log(registry):
    """Writes prediction-log and feedback rows into the test's store."""
    from tests.monitoring.helpers import Log

    return Log(registry)
