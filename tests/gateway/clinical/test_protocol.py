"""gateway.clinical.protocol against values computed by hand (tests/gateway/clinical/readings.py)."""

import datetime
import statistics

import pytest

from core.codes import Flag
from gateway.clinical.protocol import ProtocolError, build_protocol, plan_of

from .readings import (BP_EXPECTED, BP_ROWS, CGM_EXPECTED, CGM_ROWS, CGM_VALUED, END, FIRST, GLU_EXPECTED, GLU_ROWS,
                       bp, cgm, columns, local_ms, patient)


def protocol(rows, **patient_changes):
    return build_protocol(columns(rows), patient=patient(**patient_changes), first=FIRST, end=END)


def test_home_bp_esh_first_day_discarded_and_sessions_at_local_boundaries():
    result = protocol(BP_ROWS)["bp"]
    assert {key: result[key] for key in BP_EXPECTED} == BP_EXPECTED
    assert result["target"] == {"sys": 135.0, "dia": 85.0}
    assert result["above_target"] is False
    assert result["sufficient"] is False  # 8 < 12 readings (ESH)


def test_home_bp_target_from_the_patient_and_enough_readings():
    rows = [bp(d, 8, 0, 132, 82) for d in range(1, 8)] + [bp(d, 20, 0, 128, 80) for d in range(1, 8)]
    result = protocol(rows, targets={"home_sys": 130, "home_dia": 80})["bp"]
    assert result["all"] == {"n": 12, "sys": 130.0, "dia": 81.0}
    assert result["above_target"] is True and result["sufficient"] is True


def test_sessions_follow_daylight_saving_time():
    # Europe/Berlin moves to CEST on 2026-03-29: local 04:00 that day is 02:00 UTC, and a
    # fixed offset of +1 h would put it at 03:00 (not morning).
    first, end = datetime.date(2026, 3, 28), datetime.date(2026, 3, 31)

    def at(day, hour, minute=0):
        return local_ms(day, hour, minute, tz="Europe/Berlin")

    rows = [(r[0], t, *r[2:]) for r, t in zip([bp(1, 0, 0, 150, 90)] * 5,
                                              [at(28, 9), at(29, 4), at(29, 3, 59), at(29, 23, 59), at(30, 0)])]
    result = build_protocol(columns(rows), patient=patient(tz="Europe/Berlin"), first=first, end=end)["bp"]
    assert result["morning"]["n"] == 1 and result["evening"]["n"] == 1 and result["all"]["n"] == 4
    assert result["first_day"] == "2026-03-28"


def test_capillary_glucose_censored_counts_but_not_in_mean():
    result = protocol(GLU_ROWS)["glucose"]
    assert {key: result[key] for key in GLU_EXPECTED} == GLU_EXPECTED


def test_cgm_time_in_ranges_cv_gmi_and_coverage():
    result = protocol(CGM_ROWS)["cgm"]
    assert {key: result[key] for key in CGM_EXPECTED} == CGM_EXPECTED
    mean, sd = statistics.fmean(CGM_VALUED), statistics.pstdev(CGM_VALUED)
    assert result["mean"] == pytest.approx(round(mean, 2)) == pytest.approx(7.22)
    assert result["sd"] == pytest.approx(round(sd, 2))
    assert result["cv_pct"] == pytest.approx(round(100 * sd / mean, 1))
    assert result["gmi_pct"] == pytest.approx(round(3.31 + 0.02392 * mean * 18.016, 1))
    assert result["censored"] == {"LO": 2, "HI": 1}
    assert result["sufficient"] is False


def test_cgm_individual_range_overrides_the_default_bounds():
    result = protocol(CGM_ROWS, targets={"tir_low": 4.0, "tir_high": 9.0})["cgm"]
    # below 4.0: 2 LO, 2.8, 3.5 x2, 3.9 = 6; above 9.0: 10.0, 12.0 x3, 15.0, HI = 6; in 8.
    assert (result["tbr_pct"], result["tir_pct"], result["tar_pct"]) == (30.0, 40.0, 30.0)
    assert (result["tbr_l2_pct"], result["tar_l2_pct"]) == (15.0, 10.0)
    assert result["bounds"] == {"tir_low": 4.0, "tir_high": 9.0, "tbr_l2": 3.0, "tar_l2": 13.9}


def test_cgm_full_coverage_is_capped_at_100():
    start = local_ms(1, 0)
    rows = [cgm(start + i * 150_000, 6.0) for i in range(7 * 576)]  # one every 2.5 min for 7 days
    result = protocol(rows)["cgm"]
    assert result["coverage_pct"] == 100.0 and result["sufficient"] is True and result["days_with_data"] == 7


def test_adherence_days_and_blocks_of_the_plan():
    result = protocol(BP_ROWS + GLU_ROWS, targets={"plan": {"glu": 2}})["adherence"]
    # bp daily: valid readings on days 0-3 -> 4 of 7. glu every 2 days: valid on days 0, 1,
    # 2, 4, 5 -> blocks 0, 1, 2 of 4 (days 0-1, 2-3, 4-5, 6).
    assert result["metrics"]["bp"] == {"every_days": 1, "expected": 7, "met": 4, "pct": 57.1, "days_with_readings": 4}
    assert result["metrics"]["glu"] == {"every_days": 2, "expected": 4, "met": 3, "pct": 75.0,
                                        "days_with_readings": 5}
    assert result["pct"] == 63.6  # 7 of 11 blocks


def test_readings_counts_and_the_period_filter():
    outside = bp(8, 0, 0, 120, 80)  # 2026-03-08 00:00 local: the end of the period, excluded
    result = protocol(BP_ROWS + GLU_ROWS + CGM_ROWS + [outside])
    assert result["readings"] == {"total": 38, "bp": 11, "glu": 6, "cgm": 21, "valid": 35, "not_valid": 3,
                                  "censored": {"LO": 3, "HI": 1}}
    assert result["period"] == {"from": "2026-03-01", "to": "2026-03-08", "days": 7, "tz": "Europe/Moscow",
                                "from_ms": local_ms(1, 0), "to_ms": local_ms(8, 0)}


def test_meter_faults_are_not_valid():
    result = protocol([bp(2, 8, 0, 130, 80, flags=Flag.TIME_FAULT), bp(3, 8, 0, 130, 80, flags=Flag.DEVICE_FAULT)])
    assert result["readings"]["not_valid"] == 2 and result["bp"]["n"] == 0
    assert result["bp"]["all"] == {"n": 0, "sys": None, "dia": None} and result["bp"]["above_target"] is None


def test_alerts_and_how_they_were_handled():
    raised = local_ms(2, 8)
    alerts = [
        {"id": 1, "rule": "BP_CRISIS", "severity": "emergency", "t": raised, "raised": raised, "late": False,
         "state": "resolved", "escalated": 1, "escalated_at": raised + 900_000, "occurrences": 2, "events": [
             {"at": raised, "actor": "gateway", "name": None, "action": "raised", "note": None},
             {"at": raised + 1_200_000, "actor": "DR1", "name": "Ivanova", "action": "acknowledged", "note": "called"},
             {"at": raised + 3_600_000, "actor": "DR1", "name": "Ivanova", "action": "resolved", "note": None}]},
        {"id": 2, "rule": "GLU_HIGH", "severity": "urgent", "t": raised, "raised": raised, "late": True,
         "state": "resolved", "escalated": 0, "escalated_at": None, "occurrences": 1, "events": [
             {"at": raised + 600_000, "actor": "N1", "name": "Sidorova", "action": "resolved", "note": None}]},
        {"id": 3, "rule": "MISSED", "severity": "task", "t": raised, "raised": raised, "late": False,
         "state": "open", "escalated": 0, "escalated_at": None, "occurrences": 1, "events": []},
    ]
    result = build_protocol(columns([]), patient=patient(), first=FIRST, end=END, alerts=alerts)["alerts"]
    assert {k: result[k] for k in ("total", "acknowledged", "resolved", "escalated", "open")} == {
        "total": 3, "acknowledged": 1, "resolved": 2, "escalated": 1, "open": 1}
    assert result["by_severity"] == {"emergency": 1, "urgent": 1, "task": 1}
    crisis, high, missed = result["items"]
    assert crisis["acknowledged"] == {"at": raised + 1_200_000, "by": "DR1", "name": "Ivanova"}
    assert crisis["resolved"]["at"] == raised + 3_600_000 and crisis["response_min"] == 20.0
    assert crisis["escalated"] == 1 and crisis["escalated_at"] == raised + 900_000
    assert high["acknowledged"] is None and high["resolved"]["by"] == "N1" and high["response_min"] == 10.0
    assert missed["acknowledged"] is None and missed["resolved"] is None and missed["response_min"] is None


def test_devices_bound_or_with_readings():
    bindings = [{"device": "T1", "kind": "bp", "retired": None, "user": None, "valid_from": 0, "valid_to": None},
                {"device": "X9", "kind": "glu", "retired": 5, "user": 1, "valid_from": 0, "valid_to": local_ms(2, 0)}]
    result = build_protocol(columns(BP_ROWS + GLU_ROWS), patient=patient(), first=FIRST, end=END,
                            bindings=bindings)["devices"]
    assert [d["id"] for d in result] == ["G1", "T1", "X9"]
    g1, t1, x9 = result
    assert g1["kind"] is None and g1["bindings"] == [] and g1["readings"] == {"bp": 0, "glu": 5, "cgm": 0}
    assert g1["not_valid"] == 1
    assert t1["readings"]["bp"] == 10 and t1["not_valid"] == 1
    assert (t1["first"], t1["last"]) == (local_ms(1, 7), local_ms(4, 8))
    assert x9["bindings"] == [{"from": 0, "to": local_ms(2, 0), "user": 1}] and x9["first"] is None


def test_plan_defaults_from_programmes_and_checks():
    assert plan_of(["AH", "DM1"], {}) == {"bp": 1, "glu": 1}
    assert plan_of(["DM2"], {}, cgm=True) == {"cgm": 1}
    assert plan_of(["DM2"], {"plan": {"cgm": 1, "glu": 3}}) == {"glu": 3, "cgm": 1}
    for bad in ({"plan": {"ecg": 1}}, {"plan": {"bp": 0}}, {"plan": {"bp": True}}, {"plan": [1]}):
        with pytest.raises(ProtocolError, match="plan") as caught:
            plan_of(["AH"], bad)
        assert caught.value.reason == "TARGETS"


def test_bad_period_zone_and_targets_are_refused():
    with pytest.raises(ProtocolError, match="empty") as caught:
        build_protocol(columns([]), patient=patient(), first=END, end=FIRST)
    assert caught.value.reason == "INVALID"
    with pytest.raises(ProtocolError, match="unknown") as caught:
        build_protocol(columns([]), patient=patient(tz="Mars/Olympus"), first=FIRST, end=END)
    assert caught.value.reason == "INVALID"
    with pytest.raises(ProtocolError, match="tir_low") as caught:
        build_protocol(columns([]), patient=patient(targets={"tir_low": "low"}), first=FIRST, end=END)
    assert caught.value.reason == "TARGETS"
