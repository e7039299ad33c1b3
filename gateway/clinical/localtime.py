"""A patient's calendar: local dates and wall-clock times of an IANA zone as ms UTC.

Reports are written in the patient's local time (``patients.tz``): a period of local dates
[first, end) and sessions of the local day (morning 04:00-12:00 ...). This module turns
them into int64 ms UTC boundaries once per day of the period, so readings (int64 ms UTC)
are then classified with ``numpy.searchsorted`` instead of a zone conversion each.

Daylight-saving time is honoured day by day: a local day may last 23 or 25 hours, and
"04:00" is 04:00 on the wall clock of that day. A wall time that does not exist (skipped
by a DST change) or exists twice is taken with the offset in force before the change
(``fold=0``), the zoneinfo default.
"""

from __future__ import annotations

import datetime
import zoneinfo

import numpy as np

DAY_MINUTES = 24 * 60


class ZoneError(ValueError):
    """An unknown IANA zone name."""


def zone_of(name: str) -> zoneinfo.ZoneInfo:
    """The zone named ``name`` (e.g. Europe/Moscow), or ZoneError."""
    try:
        return zoneinfo.ZoneInfo(name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise ZoneError(f"time zone {name!r} is unknown: use an IANA name such as Europe/Moscow") from None


def wall_ms(zone: zoneinfo.ZoneInfo, day: datetime.date, minute: int = 0) -> int:
    """ms UTC of local wall time ``minute`` (0 .. 1440; 1440 = the next day's 00:00) of ``day``."""
    day = day + datetime.timedelta(days=minute // DAY_MINUTES)
    minute %= DAY_MINUTES
    local = datetime.datetime.combine(day, datetime.time(minute // 60, minute % 60), tzinfo=zone)
    return int(local.timestamp()) * 1000


def period_ms(zone: zoneinfo.ZoneInfo, first: datetime.date, end: datetime.date) -> tuple[int, int]:
    """[first, end) local dates -> [from, to) ms UTC (local midnights)."""
    return wall_ms(zone, first), wall_ms(zone, end)


def days_of(first: datetime.date, end: datetime.date) -> list[datetime.date]:
    """The local dates first, first + 1, ..., end - 1."""
    return [first + datetime.timedelta(days=i) for i in range((end - first).days)]


def day_starts(zone: zoneinfo.ZoneInfo, first: datetime.date, end: datetime.date) -> np.ndarray:
    """int64[n + 1]: ms UTC of the local midnight that starts each of the n days of
    [first, end), then the one that ends the last day."""
    return np.array([wall_ms(zone, d) for d in days_of(first, end)] + [wall_ms(zone, end)], dtype=np.int64)


def session_bounds(zone: zoneinfo.ZoneInfo, first: datetime.date, end: datetime.date,
                   start_minute: int, end_minute: int) -> tuple[np.ndarray, np.ndarray]:
    """(start int64[n], end int64[n]): ms UTC of local ``start_minute`` and ``end_minute``
    (minutes after midnight, end up to 1440) on each day of [first, end)."""
    days = days_of(first, end)
    return (np.array([wall_ms(zone, d, start_minute) for d in days], dtype=np.int64),
            np.array([wall_ms(zone, d, end_minute) for d in days], dtype=np.int64))


def day_index(starts: np.ndarray, t: np.ndarray) -> np.ndarray:
    """int64[len(t)]: the day of ``starts`` (from ``day_starts``) each time ``t`` (ms UTC)
    falls on; -1 before the first day, n at or after the end."""
    return np.searchsorted(starts, t, side="right") - 1
