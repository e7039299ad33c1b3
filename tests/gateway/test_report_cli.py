"""``pmpgw report protocol`` and ``pmpgw report coverage`` on real SQLite files."""

import datetime
import json

import numpy as np
import pytest
from fhir.resources.R4B.bundle import Bundle

import core
from core.codes import Flag, Kind
from gateway.cli import main
from tests.gateway.dbs import rows
from gateway.store import Store

from .clinical.readings import BP_EXPECTED, BP_ROWS, CGM_EXPECTED, CGM_ROWS, GLU_EXPECTED, GLU_ROWS, local_ms

DAY = 86_400_000
PERIOD = ["--from", "2026-03-01", "--to", "2026-03-08"]


def batch_of(rows, devices, patient=0, first_seq=1):
    """A processed batch (reason OK) of (kind, t, sys, dia, pul, glu, flags, device) rows;
    ``devices`` maps the rows' device positions to registry indexes."""
    batch = core.empty_batch(len(rows))
    for i, (kind, t, sys, dia, pul, glu, flags, device) in enumerate(rows):
        row = batch[i]
        row["kind"], row["t"], row["rx"], row["device"], row["patient"] = kind, t, t, devices[device], patient
        row["seq"], row["fingerprint"] = first_seq + i, first_seq + i
        row["flags"] = Flag.HAS_TIME | Flag.HAS_SEQ | flags
        row["v"] = [sys, dia, np.nan, pul] if kind == Kind.BP else [glu, np.nan, np.nan, np.nan]
    return batch


@pytest.fixture
def db(db):
    """P1 (AH, DM2, Europe/Moscow) with the fixed data set of tests/gateway/clinical/readings.py
    on T1, G1 and C1; an alert acknowledged and resolved by DR1. R1, a rented tonometer, was P2's
    until 2026-03-02 and measured for P2 on 2026-03-01: that reading is not P1's."""
    path = db
    registered = local_ms(1, 0) - 30 * DAY
    with Store.open(path) as store:
        store.add_staff("DR1", "Ivanova", "physician")
        store.add_staff("PA1", "Petrov", "personal_admin")
        for pid in ("P1", "P2"):
            store.add_patient(pid, programmes=["AH", "DM2"], tz="Europe/Moscow", physician="DR1",
                              personal_admin="PA1", now_ms=registered)
        for device, kind in (("T1", "bp"), ("G1", "glu"), ("C1", "cgm"), ("R1", "bp")):
            store.add_device(device, kind, now_ms=registered)
        for device in ("T1", "G1", "C1"):
            store.bind(device, "P1", registered)
        store.bind("R1", "P2", registered, local_ms(2, 0))
        store.bind("R1", "P1", local_ms(2, 0))
        raised = local_ms(2, 4)
        crisis = [{"patient": 0, "rule": "BP_CRISIS", "t": raised, "late": False, "values": {"sys": 185}}]
        store.commit_batch(batch_of(BP_ROWS + GLU_ROWS + CGM_ROWS, {0: 0, 1: 1, 2: 2}), now_ms=raised,
                           alerts=crisis)
        store.commit_batch(batch_of([BP_ROWS[0]], {0: 3}, patient=1), now_ms=raised)
        alert_id = store.alerts()[0]["id"]
        store.acknowledge_alert(alert_id, by="DR1", at_ms=raised + 300_000)
        store.resolve_alert(alert_id, by="DR1", at_ms=raised + 3_600_000)
    return str(path)


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def protocols(db):
    return rows(db, "SELECT patient, period_from, period_to, issued_by, content FROM protocols")


def test_protocol_json_is_recorded_as_final(db, capsys):
    code, out, _ = run(capsys, "report", "protocol", "--patient", "P1", *PERIOD, "--format", "json", "--by", "DR1",
                       "--db", db)
    assert code == 0
    protocol = json.loads(out)
    assert protocol["final"] is True and protocol["issued_by"] == "DR1" and protocol["id"] == 1
    assert {k: protocol["bp"][k] for k in BP_EXPECTED} == BP_EXPECTED
    assert {k: protocol["glucose"][k] for k in GLU_EXPECTED} == GLU_EXPECTED
    assert {k: protocol["cgm"][k] for k in CGM_EXPECTED} == CGM_EXPECTED
    assert (protocol["readings"]["total"], protocol["readings"]["not_valid"]) == (38, 3)
    assert protocol["alerts"]["total"] == 1
    # DM2 with a CGM bound: glucose adherence is the CGM's (valid sensor readings on 1 of 7 days).
    assert {m: (a["met"], a["expected"]) for m, a in protocol["adherence"]["metrics"].items()} == {
        "bp": (4, 7), "cgm": (1, 7)}
    crisis = protocol["alerts"]["items"][0]
    assert crisis["acknowledged"] == {"at": local_ms(2, 4) + 300_000, "by": "DR1", "name": "Ivanova"}
    assert crisis["resolved"]["by"] == "DR1" and crisis["response_min"] == 5.0
    assert [(d["id"], d["readings"]["bp"]) for d in protocol["devices"]] == [("C1", 0), ("G1", 0), ("R1", 0),
                                                                               ("T1", 10)]
    assert protocol["patient"]["physician"] == {"id": "DR1", "name": "Ivanova"}
    [(patient, since, until, by, content)] = protocols(db)
    assert (patient, since, until, by) == (0, local_ms(1, 0), local_ms(8, 0), "DR1")
    assert json.loads(content)["bp"] == protocol["bp"]


def test_protocol_draft_is_not_recorded_and_fhir_is_valid(db, capsys):
    code, out, _ = run(capsys, "report", "protocol", "--patient", "P1", *PERIOD, "--format", "fhir", "--draft",
                       "--db", db)
    assert code == 0 and protocols(db) == []
    bundle = json.loads(out)
    (getattr(Bundle, "model_validate", None) or Bundle.parse_obj)(bundle)
    codes = [e["resource"]["code"]["coding"][0]["code"] for e in bundle["entry"]
             if e["resource"]["resourceType"] == "Observation"]
    assert codes.count("85354-9") == 10 and codes.count("15074-8") == 5 and "106793-3" in codes


def test_protocol_text(db, capsys):
    code, out, _ = run(capsys, "report", "protocol", "--patient", "P1", *PERIOD, "--draft", "--db", db)
    assert code == 0
    assert "draft (not recorded)" in out and "all 130/84.1 mmHg (n 8)" in out and "BP_CRISIS" in out


def test_protocol_errors(db, capsys):
    code, _, err = run(capsys, "report", "protocol", "--patient", "P9", *PERIOD, "--db", db)
    assert code == 2 and err.startswith("pmpgw: UNKNOWN: patient 'P9'")
    code, _, err = run(capsys, "report", "protocol", "--patient", "P1", "--from", "2026-03-08", "--to", "2026-03-01",
                       "--db", db)
    assert code == 2 and err.startswith("pmpgw: INVALID: the period")
    code, _, err = run(capsys, "report", "protocol", "--patient", "P1", *PERIOD, "--by", "NOBODY", "--db", db)
    assert code == 2 and err.startswith("pmpgw: UNKNOWN: staff member 'NOBODY'")
    tomorrow = (datetime.date.today() + datetime.timedelta(days=2)).isoformat()
    code, _, err = run(capsys, "report", "protocol", "--patient", "P1", "--from", "2026-03-01", "--to", tomorrow,
                       "--db", db)
    assert code == 2 and err.startswith("pmpgw: PERIOD:")
    assert protocols(db) == []
    with pytest.raises(SystemExit):
        main(["report", "protocol", "--patient", "P1", "--from", "March", "--to", "2026-03-08", "--db", db])


AS_OF = int(datetime.datetime(2026, 11, 25, tzinfo=datetime.timezone.utc).timestamp() * 1000)


@pytest.fixture
def cohort(tmp_path):
    """A fixed cohort at AS_OF. In it (dispensary, AH/DM): C1 covered with a device; C2 whose
    only protocol is 13 months old; C3 without any device or protocol; C4 covered, its device
    unbound before AS_OF; C5 with only a hub bound. Not in it: N1 (not under dispensary
    observation, covered), N2 (registered after AS_OF)."""
    path = tmp_path / "pmp.db"
    with Store.open(path) as store:
        store.add_staff("PA1", "Petrov", "personal_admin")
        store.add_staff("PA2", "Orlova", "personal_admin")
        store.add_staff("PA3", "Idle", "personal_admin")
        store.add_staff("DR1", "Ivanova", "physician")
        before = AS_OF - 400 * DAY
        patients = {"C1": ("AH", True, "PA1", before), "C2": ("DM2", True, "PA1", before),
                    "C3": ("AH,DM1", True, "PA2", before), "C4": ("DM1", True, "PA2", before),
                    "C5": ("AH", True, None, before), "N1": ("AH", False, "PA1", before),
                    "N2": ("AH", True, "PA1", AS_OF + DAY)}
        for pid, (programmes, dispensary, admin, created) in patients.items():
            store.add_patient(pid, programmes=programmes.split(","), dispensary=dispensary, personal_admin=admin,
                              physician="DR1", now_ms=created)
        for device, kind, pid, end in (("D1", "bp", "C1", None), ("D2", "glu", "C2", None), ("D4", "glu", "C4", AS_OF),
                                       ("H5", "hub", "C5", None), ("DN1", "bp", "N1", None), ("DN2", "bp", "N2", None)):
            store.add_device(device, kind, now_ms=before)
            store.bind(device, pid, before, end)
        for pid, issued in (("C1", AS_OF - 30 * DAY), ("C2", AS_OF - 396 * DAY), ("C4", AS_OF - DAY),
                            ("N1", AS_OF - DAY), ("N2", AS_OF + 2 * DAY), ("C1", AS_OF - 60 * DAY)):
            store.save_protocol(pid, issued - 30 * DAY, issued - DAY, {"final": True}, issued_ms=issued)
    return str(path)


def test_coverage_indicator_on_a_fixed_cohort(cohort, capsys):
    code, out, _ = run(capsys, "report", "coverage", "--as-of", str(AS_OF), "--json", "--db", cohort)
    assert code == 0
    report = json.loads(out)
    assert (report["patients"], report["covered"], report["without_device"], report["indicator_pct"]) == (5, 2, 3,
                                                                                                          40.0)
    assert report["by_programme"]["AH"] == {"patients": 3, "covered": 1, "without_device": 2, "indicator_pct": 33.3}
    assert report["by_programme"]["DM1"]["patients"] == 2 and report["by_programme"]["DM2"]["covered"] == 0
    assert [(g["id"], g["patients"], g["covered"], g["without_device"]) for g in report["groups"]] == [
        ("PA1", 2, 1, 0), ("PA2", 2, 1, 2), ("PA3", 0, 0, 0), (None, 1, 0, 1)]
    assert [p["id"] for p in report["without_device_ids"]] == ["C5", "C3", "C4"]
    assert report["since"] == int(datetime.datetime(2025, 11, 25, tzinfo=datetime.timezone.utc).timestamp() * 1000)


def test_coverage_text_by_physician_and_later_as_of(cohort, capsys):
    code, out, _ = run(capsys, "report", "coverage", "--as-of", "2026-11-25", "--by", "physician", "--limit", "1",
                       "--db", cohort)
    assert code == 0
    assert "Patients under dispensary observation: 5; with a protocol: 2 (40 %); without a device: 3" in out
    assert "DR1  Ivanova  5         2        40.0           3" in out
    assert "Without a device (1 of 3 listed)" in out
    # A year later C1's and C4's protocols are more than 12 months old; N2 (registered, bound and
    # covered since) joins the cohort.
    code, out, _ = run(capsys, "report", "coverage", "--as-of", str(AS_OF + 340 * DAY), "--json", "--db", cohort)
    report = json.loads(out)
    assert (report["patients"], report["covered"]) == (6, 2)
