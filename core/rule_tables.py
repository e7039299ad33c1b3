"""Alert rules of DESIGN.md as tables, and the state the reading rules keep.

Everything a rule is lives in the tables of this module (STYLE.md pattern 7):

- ``RULES``: rule -> severity, route (roles that receive it) and family. Within one reading,
  only the most severe rule of each family is raised (2.8 mmol/L is below both 3.0 and 3.9:
  only ``GLU_LOW_L2``).
- ``THRESHOLDS``: parameter -> default value. ``default_thresholds`` lays them out as one
  row per patient; a patient's individual targets overwrite cells of its row.

Reading rules (``BP_CRISIS`` ... ``CGM_FALLING``) fire on a single reading and are evaluated
by ``core.rules.reading_alerts``. Window rules (``BP_HOME_HIGH``, ``CGM_TIR``) are evaluated
when a patient's day closes, in ``core.windows``. ``MISSED`` and ``DEVICE`` come from the
gateway's sweeps. Cooldown, lifecycle and late routing are the caller's: a late reading's
``LATE`` flag is already in its flags column.

Plain Python and numpy: the store and the command line import these tables without the
numba kernels.
"""

from __future__ import annotations

import enum
from typing import Literal, NamedTuple

import numpy as np


class Rule(enum.IntEnum):
    """Alert rules of DESIGN.md "Default alert rules"; the value is the ``rule`` column code."""

    BP_CRISIS = 1
    BP_LOW = 2
    BP_HOME_HIGH = 3
    PULSE = 4
    GLU_LOW_L2 = 5
    GLU_LOW_L1 = 6
    GLU_HIGH = 7
    CGM_FALLING = 8
    CGM_TIR = 9
    MISSED = 10
    DEVICE = 11


Severity = Literal["emergency", "urgent", "warning", "task"]
Role = Literal["physician", "nurse", "personal_admin", "device_admin"]


class RuleSpec(NamedTuple):
    """What a rule is: how severe, who receives it, and the family it competes in."""

    severity: Severity
    route: tuple[Role, ...]
    family: str


RULES: dict[Rule, RuleSpec] = {
    Rule.BP_CRISIS: RuleSpec("emergency", ("physician", "nurse"), "bp_level"),
    Rule.BP_LOW: RuleSpec("urgent", ("physician",), "bp_level"),
    Rule.BP_HOME_HIGH: RuleSpec("warning", ("physician",), "bp_home"),
    Rule.PULSE: RuleSpec("urgent", ("physician",), "pulse"),
    Rule.GLU_LOW_L2: RuleSpec("emergency", ("physician", "nurse"), "glucose_level"),
    Rule.GLU_LOW_L1: RuleSpec("urgent", ("physician",), "glucose_level"),
    Rule.GLU_HIGH: RuleSpec("urgent", ("physician",), "glucose_level"),
    Rule.CGM_FALLING: RuleSpec("urgent", ("physician", "nurse"), "glucose_trend"),
    Rule.CGM_TIR: RuleSpec("warning", ("physician",), "cgm_tir"),
    Rule.MISSED: RuleSpec("task", ("personal_admin",), "adherence"),
    Rule.DEVICE: RuleSpec("task", ("device_admin",), "device"),
}

# An alert caused by a reading measured more than 24 h before it arrived (``late``) never
# pages anyone as an emergency (DESIGN.md "Windows and late data"): its severity is capped
# at this one and it goes to the attending physician only, for review.
LATE_SEVERITY_CAP = "urgent"
LATE_ROUTE: tuple[Role, ...] = ("physician",)


def severity_and_route(rule: Rule, late: bool) -> tuple[Severity, tuple[Role, ...]]:
    """The severity and route an alert of ``rule`` is raised with, late or not."""
    spec = RULES[rule]
    if late and SEVERITY_RANK[spec.severity] < SEVERITY_RANK[LATE_SEVERITY_CAP]:
        return LATE_SEVERITY_CAP, LATE_ROUTE
    return spec.severity, spec.route


# Severity order, most severe first; "most severe of a family" compares these ranks.
SEVERITY_RANK: dict[str, int] = {"emergency": 0, "urgent": 1, "warning": 2, "task": 3}

# Reading-rule families in output order: alerts of one reading come out in this order.
READING_FAMILIES: tuple[str, ...] = ("bp_level", "pulse", "glucose_level", "glucose_trend")

# Parameter -> default. Units: pressure mmHg, pulse beats/min, glucose mmol/L, rates
# mmol/L/min, percentages 0-100, counts as numbers.
THRESHOLDS: dict[str, float] = {
    "crisis_sys": 180.0,  # BP_CRISIS: sys >= this
    "crisis_dia": 120.0,  # BP_CRISIS: dia >= this
    "low_sys": 90.0,  # BP_LOW: sys < this
    "pulse_low": 40.0,  # PULSE: pulse < this
    "pulse_high": 130.0,  # PULSE: pulse > this
    "glu_low_l2": 3.0,  # GLU_LOW_L2: glucose < this (or censored LO)
    "glu_low_l1": 3.9,  # GLU_LOW_L1: glucose < this
    "glu_high": 13.9,  # GLU_HIGH: glucose > this (or censored HI)
    "cgm_fall_rate": 0.11,  # CGM_FALLING: rate < -this (mmol/L/min) ...
    "cgm_fall_below": 5.0,  # ... while glucose < this
    "home_sys": 135.0,  # BP_HOME_HIGH: 7-day mean sys >= this ...
    "home_dia": 85.0,  # ... or mean dia >= this
    "home_min_n": 12.0,  # ... with at least this many readings after the first-day discard
    "tir_low": 3.9,  # CGM_TIR: time in range is [tir_low, tir_high]; below range < tir_low
    "tir_high": 10.0,
    "tir_min_pct": 70.0,  # CGM_TIR: TIR % < this ...
    "tbr_max_pct": 4.0,  # ... or TBR % > this ...
    "cv_max_pct": 36.0,  # ... or CV % > this
    "cgm_min_data_pct": 70.0,  # ... evaluated only with at least this much sensor data
    "cgm_readings_per_day": 288.0,  # sensor readings a full day holds (one per 5 min)
}

Param = enum.IntEnum("Param", [(name, i) for i, name in enumerate(THRESHOLDS)])
Param.__doc__ = "Column of a thresholds row, one per entry of THRESHOLDS, in table order."
N_PARAMS = len(THRESHOLDS)

# CGM_FALLING derives a rate from the previous sensor reading when it is at most this old.
CGM_DERIVE_MAX_MS = 30 * 60_000
# cgm_last_t of a patient without a CGM reading yet: earlier than any time.
NO_CGM_TIME = np.iinfo(np.int64).min


def default_thresholds(n_patients: int) -> np.ndarray:
    """Thresholds of every patient set to the defaults.

    Parameters
    ----------
    n_patients : int
        Number of patients (rows).

    Returns
    -------
    float64[n_patients, N_PARAMS]
        Row p holds patient p's thresholds, columns in ``Param`` order.
    """
    defaults = np.array(list(THRESHOLDS.values()), dtype=np.float64)
    return np.tile(defaults, (n_patients, 1))


def cgm_state(n_patients: int) -> tuple[np.ndarray, np.ndarray]:
    """Fresh per-patient "last CGM reading" state for ``core.rules.reading_alerts``.

    Returns
    -------
    last_t : int64[n_patients]
        Measurement time (ms UTC) of each patient's latest CGM reading; ``NO_CGM_TIME``.
    last_glu : float64[n_patients]
        Its glucose (mmol/L); NaN.
    """
    return np.full(n_patients, NO_CGM_TIME, dtype=np.int64), np.full(n_patients, np.nan)
