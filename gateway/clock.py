"""The gateway's clock: the one place that reads the time of day, and how its times are
written for people."""

from __future__ import annotations

import datetime
import time


def now_ms() -> int:
    """Wall-clock time, ms since 1970-01-01 UTC."""
    return time.time_ns() // 1_000_000


def format_ms(ms: int) -> str:
    """ms UTC -> ISO 8601 in UTC to the second, e.g. ``2025-11-25T12:00:00Z``."""
    when = datetime.datetime.fromtimestamp(ms / 1000, datetime.timezone.utc)
    return when.strftime("%Y-%m-%dT%H:%M:%SZ")
