"""gateway.clinical.localtime: local dates and wall-clock sessions as ms UTC, DST included."""

import datetime

import numpy as np
import pytest

from gateway.clinical.localtime import ZoneError, day_index, day_starts, period_ms, session_bounds, wall_ms, zone_of

BERLIN = zone_of("Europe/Berlin")
HOUR = 3_600_000


def test_day_starts_follow_dst_days_of_23_and_25_hours():
    spring = day_starts(BERLIN, datetime.date(2026, 3, 28), datetime.date(2026, 3, 31))
    assert np.diff(spring).tolist() == [24 * HOUR, 23 * HOUR, 24 * HOUR]
    autumn = day_starts(BERLIN, datetime.date(2026, 10, 24), datetime.date(2026, 10, 27))
    assert np.diff(autumn).tolist() == [24 * HOUR, 25 * HOUR, 24 * HOUR]


def test_wall_times_and_period():
    day = datetime.date(2026, 3, 29)
    assert wall_ms(BERLIN, day, 4 * 60) == int(datetime.datetime(2026, 3, 29, 2, tzinfo=datetime.timezone.utc)
                                               .timestamp()) * 1000
    assert wall_ms(BERLIN, day, 24 * 60) == wall_ms(BERLIN, datetime.date(2026, 3, 30))
    moscow = zone_of("Europe/Moscow")
    assert period_ms(moscow, datetime.date(2026, 3, 1), datetime.date(2026, 3, 2)) == (1_772_312_400_000,
                                                                                       1_772_398_800_000)


def test_sessions_and_day_index():
    first, end = datetime.date(2026, 3, 28), datetime.date(2026, 3, 30)
    start, stop = session_bounds(BERLIN, first, end, 18 * 60, 24 * 60)
    assert (stop - start).tolist() == [6 * HOUR, 6 * HOUR]
    starts = day_starts(BERLIN, first, end)
    t = np.array([starts[0] - 1, starts[0], starts[1] - 1, starts[1], starts[2]])
    assert day_index(starts, t).tolist() == [-1, 0, 0, 1, 2]


def test_unknown_zone():
    with pytest.raises(ZoneError, match="Mars/Olympus"):
        zone_of("Mars/Olympus")
