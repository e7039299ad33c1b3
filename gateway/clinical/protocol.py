"""The final remote-monitoring protocol of a period: readings, registry facts and alerts in,
one JSON-able dict out. Pure: no database, no clock.

The period is [first, end) in local dates of the patient's zone (``patients.tz``); every
day boundary and session below is local wall-clock time, DST included
(``gateway.clinical.localtime``).

Definitions (what each number of the protocol means)
----------------------------------------------------
- **Valid reading**: a stored bp, glu or cgm reading without a ``NOT_VALID`` flag (artifact
  such as cuff loose or body movement, control solution, meter time fault, meter fault;
  ``gateway.activity.NOT_VALID``, the same set the MISSED sweep uses). Readings that are not
  valid are counted (``readings.not_valid``) and left out of everything else. A BP reading
  is valid only with both systolic and diastolic.
- **Censored glucose** (meter showed LO or HI: no value, flag RANGE_LO / RANGE_HI) is a valid
  reading: it counts for adherence, below / above range and the hypo / hyper counts, but
  not for means, SD, CV or GMI, which need values.
- **Adherence** to the plan: the plan is ``targets["plan"]`` = {metric: days}, a valid
  reading of the metric expected once every ``days`` days; each programme brings its
  metric with one a day by default (``gateway.sweeps.PROGRAMME_METRICS``, as the MISSED
  sweep reads it: AH -> bp, DM1 / DM2 -> glu, or cgm when a CGM was bound to the patient
  during the period), and the plan may change those or add metrics. (Without a plan
  entry MISSED waits 3 days before tasking anyone; adherence still expects one a day.)
  The period's local days 0 .. n-1 are cut into consecutive blocks of ``days`` days from
  the first (block of day d = floor(d / days); a plan below one day counts as one:
  adherence is measured in measurement days). A block is met when at least
  one valid reading of the metric falls in it. Adherence % = met blocks / blocks x 100;
  with the default plan, days with >= 1 valid reading / days of the period. The overall
  figure pools the blocks of every planned metric.
- **Home BP (ESH)**: 2021 ESH practice guidelines and 2023 ESH guidelines for home BP
  monitoring: duplicate morning and evening readings over (ideally) 7 days, the readings of
  the first day discarded, the mean of the rest. Here the first day is the first local day
  of the period with a valid BP reading; ``all`` is the mean of every valid BP reading of
  the other days; ``morning`` those taken 04:00-12:00 local time, ``evening`` 18:00-24:00
  (``BP_SESSIONS``; ESH asks for readings before breakfast and medication, and before
  dinner); each with its n. ``sufficient``: n of ``all`` >= ``home_min_n`` (12, ESH). The
  pulse mean is over the same readings as ``all`` that carry a pulse. ``above_target``:
  mean systolic >= home_sys or mean diastolic >= home_dia (135/85 mmHg, or the patient's
  BP target).
- **Capillary glucose** (glucometer readings, type glu): n, mean, min, max of the valued
  readings; ``below_l1`` < glu_low_l1 (3.9), ``below_l2`` < glu_low_l2 (3.0), ``above`` >
  glu_high (13.9) mmol/L, censored LO / HI counted in them.
- **CGM** (International Consensus on Time in Range, Battelino et al., Diabetes Care 2019):
  over all valid sensor readings N (valued + censored): TIR % = tir_low <= g <= tir_high;
  TBR % = g < tir_low, TBR level 2 % = g < glu_low_l2; TAR % = g > tir_high, TAR level 2 %
  = g > glu_high (cumulative: TBR includes TBR level 2; the consensus' level-1 band is the
  difference). Bounds default to 3.9-10.0 / 3.0 / 13.9 mmol/L; the patient's targets
  (``tir_low``, ``tir_high``, ``glu_low_l2``, ``glu_high``) override them. Mean and SD
  (population) of the valued readings, CV % = SD / mean x 100, GMI % = 3.31 + 0.02392 x
  mean in mg/dL (Bergenstal et al., Diabetes Care 2018). Sensor data coverage % = N /
  (``cgm_readings_per_day`` (288: one every 5 min) x days of the period) x 100, at most
  100; ``sufficient``: coverage >= ``cgm_min_data_pct`` (70).
- **Alerts**: alerts raised in the period or measured in it (a late upload's alert is raised
  after its readings), each with who acknowledged and resolved it and when, escalations,
  and ``response_min``: minutes from raising to the first acknowledgement or resolution.
- **Devices**: each device bound to the patient during the period, or with readings in it,
  with its bindings and its valid and other readings by type.

Rounding: mmHg and beats/min to 0.1, mmol/L to 0.01, percentages to 0.1; None when there
is nothing to average. Times are int ms UTC; local dates ISO strings.
"""

from __future__ import annotations

import datetime
import math
import zoneinfo
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from adapters.codec import MG_PER_DL_PER_MMOL_PER_L
from core.codes import Flag, Kind
from core.rule_tables import THRESHOLDS
from gateway.activity import METRICS, NOT_VALID
from gateway.store import ReadingColumns
from gateway.sweeps import PROGRAMME_METRICS

from .localtime import ZoneError, day_index, day_starts, period_ms, session_bounds, zone_of

DEFAULT_PLAN_DAYS = 1  # a programme's metric is expected daily unless the plan says otherwise
# Home BP sessions: name -> [start, end) in minutes after local midnight.
BP_SESSIONS: dict[str, tuple[int, int]] = {"morning": (4 * 60, 12 * 60), "evening": (18 * 60, 24 * 60)}
# Thresholds (core.rule_tables.THRESHOLDS names) a protocol uses; the patient's targets override.
PROTOCOL_THRESHOLDS = ("home_sys", "home_dia", "home_min_n", "glu_low_l2", "glu_low_l1", "glu_high", "tir_low",
                       "tir_high", "cgm_min_data_pct", "cgm_readings_per_day")
GMI_INTERCEPT_PCT = 3.31  # GMI % = 3.31 + 0.02392 x mean glucose (mg/dL), Bergenstal 2018
GMI_SLOPE_PCT_PER_MG_DL = 0.02392
MINUTE_MS = 60_000
_CENSORED_LO = int(Flag.RANGE_LO)
_CENSORED_HI = int(Flag.RANGE_HI)


class ProtocolError(ValueError):
    """A protocol cannot be computed from these inputs; ``reason``: INVALID (period or
    zone), TARGETS (the patient's targets JSON holds an unusable value), PERIOD (a final
    protocol of a period that has not ended); ``value`` the offending input."""

    def __init__(self, reason: str, message: str, value: object = None) -> None:
        super().__init__(message)
        self.reason = reason
        self.value = value


def thresholds_of(targets: Mapping) -> dict[str, float]:
    """PROTOCOL_THRESHOLDS with the patient's targets over the defaults of core.rule_tables."""
    out = {}
    for name in PROTOCOL_THRESHOLDS:
        value = targets.get(name, THRESHOLDS[name])
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ProtocolError("TARGETS", f"target {name} = {value!r} is not a finite number", value)
        out[name] = float(value)
    return out


def plan_of(programmes: Iterable[str], targets: Mapping, *, cgm: bool = False) -> dict[str, float]:
    """metric -> days between expected valid readings: each programme's metric at
    DEFAULT_PLAN_DAYS (glucose as cgm when ``cgm``: a CGM was bound), then
    ``targets["plan"]`` over them (it may add metrics)."""
    plan: dict[str, float] = {}
    for programme in programmes:
        metric = PROGRAMME_METRICS.get(programme)
        if metric is not None:
            plan["cgm" if cgm and metric == "glu" else metric] = DEFAULT_PLAN_DAYS
    given = targets.get("plan", {})
    if not isinstance(given, Mapping):
        raise ProtocolError("TARGETS", f"plan {given!r} is not an object of metric -> days", given)
    for metric, days in given.items():
        if metric not in METRICS:
            raise ProtocolError("TARGETS", f"plan names {metric!r}: metrics are {', '.join(METRICS)}", metric)
        if isinstance(days, bool) or not isinstance(days, (int, float)) or not days > 0 or not math.isfinite(days):
            raise ProtocolError("TARGETS", f"plan {metric} = {days!r}: give a positive number of days", days)
        plan[metric] = days
    return plan


def valid_mask(readings: ReadingColumns) -> np.ndarray:
    """bool[n]: valid readings (no NOT_VALID flag; BP with systolic and diastolic)."""
    ok = (readings.flags & NOT_VALID) == 0
    bp = readings.kind == Kind.BP
    ok[bp] &= np.isfinite(readings.sys[bp]) & np.isfinite(readings.dia[bp])
    return ok


def patient_period(patient: Mapping, first: datetime.date, end: datetime.date) -> tuple[zoneinfo.ZoneInfo, int, int]:
    """(zone, from, to): the patient's zone and local dates [first, end) as ms UTC.
    ProtocolError INVALID for an empty period or an unknown zone."""
    if end <= first:
        raise ProtocolError("INVALID", f"the period {first} .. {end} is empty: --to must be after --from",
                            end.isoformat())
    try:
        zone = zone_of(patient["tz"])
    except ZoneError as error:
        raise ProtocolError("INVALID", str(error), patient["tz"]) from None
    return (zone, *period_ms(zone, first, end))


def build_protocol(readings: ReadingColumns, *, patient: Mapping, first: datetime.date, end: datetime.date,
                   bindings: Sequence[Mapping] = (), alerts: Sequence[Mapping] = ()) -> dict:
    """The protocol of local dates [first, end) (module docstring: definitions and layout).

    ``readings`` the patient's readings (those outside the period are ignored);
    ``patient`` as ``Store.report_patient``; ``bindings`` as ``Store.report_bindings``;
    ``alerts`` as ``Store.report_alerts``. Raises ProtocolError INVALID for an empty period
    or unknown zone, TARGETS for unusable targets.
    """
    zone, since, until = patient_period(patient, first, end)
    targets = patient.get("targets") or {}
    limits = thresholds_of(targets)
    plan = plan_of(patient["programmes"], targets, cgm=any(b["kind"] == "cgm" for b in bindings))
    n_days = (end - first).days
    starts = day_starts(zone, first, end)
    inside = (readings.t >= since) & (readings.t < until)
    t, kind, flags = readings.t[inside], readings.kind[inside], readings.flags[inside]
    valid = valid_mask(readings)[inside]
    day = day_index(starts, t)
    bp, glu, cgm = (valid & (kind == METRICS[m]) for m in ("bp", "glu", "cgm"))
    values = {name: getattr(readings, name)[inside] for name in ("sys", "dia", "pul", "glu")}
    sessions = {name: session_bounds(zone, first, end, lo, hi) for name, (lo, hi) in BP_SESSIONS.items()}
    return {
        "patient": {key: patient.get(key) for key in ("id", "programmes", "dispensary", "physician", "nurse",
                                                      "personal_admin")},
        "period": {"from": first.isoformat(), "to": end.isoformat(), "days": n_days, "tz": patient["tz"],
                   "from_ms": since, "to_ms": until},
        "readings": {"total": int(inside.sum()), **{m: int((kind == k).sum()) for m, k in METRICS.items()},
                     "valid": int(valid.sum()), "not_valid": int((~valid).sum()),
                     "censored": {"LO": int((valid & ((flags & _CENSORED_LO) != 0)).sum()),
                                  "HI": int((valid & ((flags & _CENSORED_HI) != 0)).sum())}},
        "adherence": adherence(day, kind, valid, n_days, plan),
        "bp": home_bp(t[bp], day[bp], values["sys"][bp], values["dia"][bp], values["pul"][bp], sessions, first,
                      limits),
        "glucose": capillary_glucose(values["glu"][glu], flags[glu], limits),
        "cgm": cgm_metrics(values["glu"][cgm], flags[cgm], day[cgm], n_days, limits),
        "alerts": alert_summary(alerts),
        "devices": devices_used(bindings, readings.device_ids, readings.device[inside], kind, valid, t),
    }


def _round(value: float, digits: int) -> float | None:
    return None if value != value else round(float(value), digits)


def _mean(values: np.ndarray, digits: int) -> float | None:
    return _round(values.mean(), digits) if len(values) else None


def _pct(part: int | float, whole: int | float) -> float | None:
    return _round(100.0 * part / whole, 1) if whole else None


def adherence(day: np.ndarray, kind: np.ndarray, valid: np.ndarray, n_days: int, plan: Mapping[str, float]) -> dict:
    """Adherence per planned metric and pooled (module docstring). ``day`` int[n] local day
    of each reading in the period, ``kind`` uint8[n], ``valid`` bool[n]."""
    metrics = {}
    for metric, every in plan.items():
        days = np.unique(day[valid & (kind == METRICS[metric])])
        step = max(float(every), 1.0)
        expected = int((n_days - 1) // step) + 1
        met = len(np.unique(np.floor(days / step)))
        metrics[metric] = {"every_days": every, "expected": expected, "met": met, "pct": _pct(met, expected),
                           "days_with_readings": len(days)}
    expected = sum(m["expected"] for m in metrics.values())
    return {"pct": _pct(sum(m["met"] for m in metrics.values()), expected), "metrics": metrics}


def home_bp(t: np.ndarray, day: np.ndarray, sys: np.ndarray, dia: np.ndarray, pul: np.ndarray,
            sessions: Mapping[str, tuple[np.ndarray, np.ndarray]], first: datetime.date,
            limits: Mapping[str, float]) -> dict:
    """ESH home BP of valid BP readings (module docstring): ``t`` ms UTC, ``day`` local day
    in the period, ``sys``/``dia`` mmHg, ``pul`` beats/min (NaN absent); ``sessions`` name
    -> (start, end) ms UTC per day (``localtime.session_bounds``)."""
    kept = np.zeros(len(t), dtype=bool)
    first_day = None
    if len(t):
        first_day_index = int(day.min())
        first_day = (first + datetime.timedelta(days=first_day_index)).isoformat()
        kept = day != first_day_index

    def mean_of(mask: np.ndarray) -> dict:
        return {"n": int(mask.sum()), "sys": _mean(sys[mask], 1), "dia": _mean(dia[mask], 1)}

    summary = {"n": len(t), "first_day": first_day, "discarded": int(len(t) - kept.sum()),
               "days": len(np.unique(day[kept])), "all": mean_of(kept)}
    for name, (start, stop) in sessions.items():
        summary[name] = mean_of(kept & (t >= start[day]) & (t < stop[day]))
    with_pulse = kept & np.isfinite(pul)
    summary["pulse"] = {"n": int(with_pulse.sum()), "mean": _mean(pul[with_pulse], 1)}
    target = {"sys": limits["home_sys"], "dia": limits["home_dia"]}
    mean_all = summary["all"]
    summary["target"] = target
    summary["above_target"] = (None if mean_all["n"] == 0 else
                               mean_all["sys"] >= target["sys"] or mean_all["dia"] >= target["dia"])
    summary["sufficient"] = mean_all["n"] >= limits["home_min_n"]
    return summary


def _censored(flags: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return (flags & _CENSORED_LO) != 0, (flags & _CENSORED_HI) != 0


def capillary_glucose(glu: np.ndarray, flags: np.ndarray, limits: Mapping[str, float]) -> dict:
    """Capillary glucose of valid glu readings: ``glu`` mmol/L (NaN when censored)."""
    lo, hi = _censored(flags)
    valued = np.isfinite(glu)
    g = glu[valued]
    return {"n": len(glu), "n_valued": len(g), "mean": _mean(g, 2),
            "min": _round(g.min(), 2) if len(g) else None, "max": _round(g.max(), 2) if len(g) else None,
            "censored": {"LO": int(lo.sum()), "HI": int(hi.sum())},
            "below_l1": int((g < limits["glu_low_l1"]).sum() + lo.sum()),
            "below_l2": int((g < limits["glu_low_l2"]).sum() + lo.sum()),
            "above": int((g > limits["glu_high"]).sum() + hi.sum()),
            "bounds": {"below_l1": limits["glu_low_l1"], "below_l2": limits["glu_low_l2"],
                       "above": limits["glu_high"]}}


def cgm_metrics(glu: np.ndarray, flags: np.ndarray, day: np.ndarray, n_days: int,
                limits: Mapping[str, float]) -> dict:
    """Consensus CGM metrics of valid cgm readings (module docstring): ``glu`` mmol/L (NaN
    when censored), ``day`` local day in the period of each."""
    lo, hi = _censored(flags)
    valued = np.isfinite(glu)
    g = glu[valued]
    n = len(glu)
    count_lo, count_hi = int(lo.sum()), int(hi.sum())
    mean = g.mean() if len(g) else np.nan
    sd = g.std() if len(g) else np.nan
    coverage = _pct(n, limits["cgm_readings_per_day"] * n_days)
    coverage = None if coverage is None else min(coverage, 100.0)
    tbr = int((g < limits["tir_low"]).sum()) + count_lo
    tar = int((g > limits["tir_high"]).sum()) + count_hi
    return {
        "n": n, "n_valued": len(g), "censored": {"LO": count_lo, "HI": count_hi},
        "mean": _round(mean, 2), "sd": _round(sd, 2), "cv_pct": _round(100.0 * sd / mean, 1) if len(g) else None,
        "gmi_pct": _round(GMI_INTERCEPT_PCT + GMI_SLOPE_PCT_PER_MG_DL * mean * MG_PER_DL_PER_MMOL_PER_L, 1),
        "tir_pct": _pct(n - tbr - tar, n), "tbr_pct": _pct(tbr, n),
        "tbr_l2_pct": _pct(int((g < limits["glu_low_l2"]).sum()) + count_lo, n),
        "tar_pct": _pct(tar, n), "tar_l2_pct": _pct(int((g > limits["glu_high"]).sum()) + count_hi, n),
        "coverage_pct": coverage, "days_with_data": len(np.unique(day)),
        "sufficient": coverage is not None and coverage >= limits["cgm_min_data_pct"],
        "bounds": {"tir_low": limits["tir_low"], "tir_high": limits["tir_high"], "tbr_l2": limits["glu_low_l2"],
                   "tar_l2": limits["glu_high"]},
    }


def _first_event(events: Sequence[Mapping], actions: tuple[str, ...]) -> dict | None:
    for event in events:
        if event["action"] in actions:
            return {"at": event["at"], "by": event["actor"], "name": event.get("name")}
    return None


def alert_summary(alerts: Sequence[Mapping]) -> dict:
    """Counts and, per alert, how it was handled (module docstring)."""
    items, by_severity = [], {}
    for alert in alerts:
        events = alert.get("events", ())
        first_action = _first_event(events, ("acknowledged", "resolved"))
        items.append({
            **{key: alert[key] for key in ("id", "rule", "severity", "t", "raised", "late", "state", "occurrences",
                                            "escalated", "escalated_at")},
            "acknowledged": _first_event(events, ("acknowledged",)),
            "resolved": _first_event(events[::-1], ("resolved",)),
            "response_min": None if first_action is None else round((first_action["at"] - alert["raised"]) / MINUTE_MS,
                                                                    1)})
        by_severity[alert["severity"]] = by_severity.get(alert["severity"], 0) + 1
    return {"total": len(items), "by_severity": by_severity,
            "acknowledged": sum(item["acknowledged"] is not None for item in items),
            "resolved": sum(item["state"] == "resolved" for item in items),
            "escalated": sum(bool(item["escalated"]) for item in items),
            "open": sum(item["state"] != "resolved" for item in items), "items": items}


def devices_used(bindings: Sequence[Mapping], device_ids: Sequence[str], device: np.ndarray, kind: np.ndarray,
                 valid: np.ndarray, t: np.ndarray) -> list[dict]:
    """Each device bound during the period or with readings in it, by id: kind, retired,
    bindings, valid readings per metric, readings that are not valid, first and last t."""
    devices: dict[str, dict] = {}
    for binding in bindings:
        entry = devices.setdefault(binding["device"], {"id": binding["device"], "kind": binding["kind"],
                                                       "retired": binding["retired"], "bindings": []})
        entry["bindings"].append({"from": binding["valid_from"], "to": binding["valid_to"], "user": binding["user"]})
    for position in np.unique(device).tolist():
        mine = device == position
        entry = devices.setdefault(device_ids[position], {"id": device_ids[position], "kind": None, "retired": None,
                                                         "bindings": []})
        entry["readings"] = {m: int((mine & valid & (kind == k)).sum()) for m, k in METRICS.items()}
        entry["not_valid"] = int((mine & ~valid).sum())
        entry["first"], entry["last"] = int(t[mine].min()), int(t[mine].max())
    for entry in devices.values():
        entry.setdefault("readings", {m: 0 for m in METRICS})
        entry.setdefault("not_valid", 0)
        entry.setdefault("first", None)
        entry.setdefault("last", None)
    return [devices[key] for key in sorted(devices)]
