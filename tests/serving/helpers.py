"""Helpers shared by the serving tests."""

from __future__ import annotations

from slipway.config import Settings


def subprocess_env(settings: Settings, **extra: str) -> dict[str, str]:
    """Environment for a `slipway serve` child process on the same store."""
    env = {
        "SLIPWAY_HOME": str(settings.home),
        "SLIPWAY_USER": "tester",
        "SLIPWAY_SERVE_POLL_SECONDS": "0.2",
        "SLIPWAY_SERVE_LOG_FLUSH_SECONDS": "0.05",
        "OMP_NUM_THREADS": "1",
        # Load tests measure correctness under load, not the limiter (tested in process).
        "SLIPWAY_SERVE_RATE_LIMIT": "0",
        "SLIPWAY_DATABASE_URL": settings.database_url or "",
        **extra,
    }
    return env
