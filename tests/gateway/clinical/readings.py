"""A small fixed data set for the report tests, with the values a person computed by hand.

Patient P1 (AH, DM2, Europe/Moscow: UTC+3 all year), period 2026-03-01 .. 2026-03-08
(7 days). Devices: T1 tonometer (position 0), G1 glucometer (1), C1 CGM (2).
"""

from __future__ import annotations

import datetime
import zoneinfo

import numpy as np

from core.codes import Flag, Kind
from gateway.store import ReadingColumns

TZ = "Europe/Moscow"
FIRST, END = datetime.date(2026, 3, 1), datetime.date(2026, 3, 8)
DEVICES = ("T1", "G1", "C1")
NAN = float("nan")


def local_ms(day: int, hour: int, minute: int = 0, *, month: int = 3, tz: str = TZ) -> int:
    """ms UTC of 2026-{month}-{day} hour:minute local time in ``tz``."""
    when = datetime.datetime(2026, month, day, hour, minute, tzinfo=zoneinfo.ZoneInfo(tz))
    return int(when.timestamp()) * 1000


def bp(day, hour, minute, sys, dia, pul=NAN, flags=0):
    return (Kind.BP, local_ms(day, hour, minute), sys, dia, pul, NAN, flags, 0)


def glu(day, hour, value, flags=0):
    return (Kind.GLU, local_ms(day, hour), NAN, NAN, NAN, value, flags, 1)


def cgm(t, value, flags=0):
    return (Kind.CGM, t, NAN, NAN, NAN, value, flags, 2)


# Home BP. Day 1 is discarded (ESH); 03:59 and 12:00 and 00:00 are in "all" only; 04:00 and
# 11:59 are morning, 18:00 and 23:59 evening; the artifact is left out.
BP_ROWS = [
    bp(1, 7, 0, 150, 95, 80), bp(1, 20, 0, 148, 94, 78),                      # discarded
    bp(2, 3, 59, 120, 80, 60), bp(2, 4, 0, 130, 85, 70), bp(2, 11, 59, 134, 86, 72),
    bp(2, 12, 0, 126, 82), bp(2, 18, 0, 140, 90, 74), bp(2, 23, 59, 136, 88, 76),
    bp(3, 0, 0, 122, 78, 64), bp(3, 8, 0, 200, 130, 90, Flag.ARTIFACT), bp(4, 8, 0, 132, 84, 68),
]
# all: 8 readings, sys 1040 / 8 = 130.0, dia 673 / 8 = 84.125; morning 396/3 = 132.0,
# 255/3 = 85.0; evening 276/2 = 138.0, 178/2 = 89.0; pulse 484 / 7 = 69.142857 (126/82 has none).
BP_EXPECTED = {"n": 10, "first_day": "2026-03-01", "discarded": 2, "days": 3,
               "all": {"n": 8, "sys": 130.0, "dia": 84.1}, "morning": {"n": 3, "sys": 132.0, "dia": 85.0},
               "evening": {"n": 2, "sys": 138.0, "dia": 89.0}, "pulse": {"n": 7, "mean": 69.1}}

# Capillary glucose: 5.0, 7.0, LO, 3.5, 14.5 valid (mean of the 4 values 30 / 4 = 7.5), the
# control-solution reading left out.
GLU_ROWS = [glu(1, 8, 5.0), glu(2, 8, 7.0), glu(3, 8, NAN, Flag.RANGE_LO), glu(5, 8, 3.5),
            glu(5, 20, 10.0, Flag.CONTROL), glu(6, 8, 14.5)]
GLU_EXPECTED = {"n": 5, "n_valued": 4, "mean": 7.5, "min": 3.5, "max": 14.5, "censored": {"LO": 1, "HI": 0},
                "below_l1": 2, "below_l2": 1, "above": 1}

# CGM, 20 valid readings on day 6 every 5 minutes from 10:00: 2 LO, 2.8, 3.5 x2, 3.9 and 10.0
# (the range's bounds are in range), 6.0 x8, 12.0 x3, 15.0, 1 HI; plus one artifact.
CGM_VALUES = [NAN, NAN, 2.8, 3.5, 3.5, 3.9, 10.0] + [6.0] * 8 + [12.0] * 3 + [15.0, NAN]
CGM_FLAGS = [Flag.RANGE_LO, Flag.RANGE_LO] + [0] * 17 + [Flag.RANGE_HI]
CGM_ROWS = [cgm(local_ms(6, 10) + i * 300_000, v, f) for i, (v, f) in enumerate(zip(CGM_VALUES, CGM_FLAGS))]
CGM_ROWS.append(cgm(local_ms(6, 12), 25.0, Flag.ARTIFACT))
# below 3.9: 2 LO + 2.8 + 3.5 x2 = 5 of 20; below 3.0: 2 LO + 2.8 = 3; in range 10; above 10.0:
# 12.0 x3 + 15.0 + HI = 5; above 13.9: 15.0 + HI = 2. Coverage 20 / (288 x 7) = 0.99 %.
CGM_EXPECTED = {"n": 20, "n_valued": 17, "tir_pct": 50.0, "tbr_pct": 25.0, "tbr_l2_pct": 15.0, "tar_pct": 25.0,
                "tar_l2_pct": 10.0, "coverage_pct": 1.0, "days_with_data": 1}
CGM_VALUED = [v for v in CGM_VALUES if v == v]


def columns(rows, device_ids=DEVICES) -> ReadingColumns:
    """ReadingColumns of (kind, t, sys, dia, pul, glu, flags, device) rows, sorted by t."""
    rows = sorted(rows, key=lambda r: r[1])
    kind, t, sys, dia, pul, glucose, flags, device = (list(c) for c in zip(*rows)) if rows else ([],) * 8
    return ReadingColumns(id=np.arange(1, len(rows) + 1, dtype=np.int64), t=np.array(t, dtype=np.int64),
                          kind=np.array(kind, dtype=np.uint8), sys=np.array(sys, dtype=np.float64),
                          dia=np.array(dia, dtype=np.float64), pul=np.array(pul, dtype=np.float64),
                          glu=np.array(glucose, dtype=np.float64), flags=np.array(flags, dtype=np.uint16),
                          device=np.array(device, dtype=np.int32), device_ids=tuple(device_ids))


def patient(**changes) -> dict:
    """P1 as ``Store.report_patient`` gives it."""
    return {"id": "P1", "programmes": ["AH", "DM2"], "dispensary": True, "tz": TZ, "targets": {},
            "physician": {"id": "DR1", "name": "Ivanova"}, "nurse": None, "personal_admin": None, **changes}
