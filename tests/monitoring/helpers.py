"""Helpers shared by the monitoring tests."""

from __future__ import annotations

from datetime import UTC, datetime

# The monitoring tests' "now": logs are written relative to it and Monitor's clock reads it.
NOW = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)
