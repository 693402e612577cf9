"""The one clock: timezone-aware UTC, which is all Slipway stores and compares; and the one
way to read a duration (``--since 30d``, ``holdout_since: 90d``)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

from slipway.exceptions import ConfigError

DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def utcnow() -> datetime:
    """The current time in UTC, timezone-aware."""
    return datetime.now(UTC)


def parse_duration(text: str, option: str = "duration") -> timedelta:
    """``"90s"``, ``"15m"``, ``"24h"``, ``"30d"``, ``"2w"`` -> timedelta; anything else is a
    ConfigError naming ``option``."""
    m = DURATION.match(text)
    if not m or float(m[1]) <= 0:
        raise ConfigError(
            f"{option} {text!r} is not a duration; use a positive number and a unit s, m, h, d "
            "or w (e.g. 24h, 30d)."
        )
    return timedelta(**{_UNITS[m[2]]: float(m[1])})
