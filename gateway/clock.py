"""The gateway's clock: the one place that reads the time of day."""

from __future__ import annotations

import time


def now_ms() -> int:
    """Wall-clock time, ms since 1970-01-01 UTC."""
    return time.time_ns() // 1_000_000
