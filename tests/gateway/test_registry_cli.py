"""``pmpgw patients|staff|devices|bind|unbind`` on real SQLite files, in-process; the
registry's effect on a running writer (bindings at their boundaries, individual targets)."""

import json

import msgpack
import pytest

from adapters.mqtt import Received
from core.rule_tables import THRESHOLDS, Param
from gateway.cli import main
from gateway.clock import now_ms
from gateway.ingest import DAY_MS, Ingest
from gateway.csv_import import EXIT_SKIPPED
from gateway.store import Store
from tests.gateway.dbs import rows

NOW = now_ms()
HOUR = 3_600_000


@pytest.fixture
def pmpgw(db, capsys):
    """Run ``pmpgw ARGS --db DB`` in-process: (exit status, stdout, stderr)."""
    def run(*args):
        status = main([*map(str, args), "--db", str(db)])
        out, err = capsys.readouterr()
        return status, out, err
    return run


def ok(result):
    status, out, err = result
    assert status == 0, err
    return out


def staff(pmpgw):
    ok(pmpgw("staff", "add", "doc", "--name", "Dr Ivanova", "--role", "physician"))
    ok(pmpgw("staff", "add", "nur", "--name", "N Petrova", "--role", "nurse"))
    ok(pmpgw("staff", "add", "pa", "--name", "P Sidorov", "--role", "personal_admin"))


def audit(db):
    return rows(db, "SELECT actor, action, subject FROM audit ORDER BY id")


def test_staff_add_and_list(pmpgw, db):
    staff(pmpgw)
    assert [s["id"] for s in json.loads(ok(pmpgw("staff", "list", "--json")))] == ["doc", "nur", "pa"]
    assert json.loads(ok(pmpgw("staff", "list", "--role", "nurse", "--json"))) == [
        {"id": "nur", "name": "N Petrova", "role": "nurse"}]
    assert "Dr Ivanova" in ok(pmpgw("staff", "list")) and "(3 rows)" in ok(pmpgw("staff", "list"))
    assert pmpgw("staff", "add", "doc", "--name", "Again", "--role", "head")[0:3:2] == (
        2, "pmpgw: EXISTS: staff member 'doc' already exists\n")
    assert audit(db)[0] == ("cli", "staff.add", "doc")


def test_patients_add_show_and_list(pmpgw):
    staff(pmpgw)
    ok(pmpgw("patients", "add", "P1", "--programme", "AH,DM2", "--no-dispensary", "--tz", "Asia/Yekaterinburg",
             "--physician", "doc", "--nurse", "nur", "--personal-admin", "pa", "--bp-target", "130/80",
             "--glucose-range", "4-9", "--plan", "bp=1,glu=2"))
    ok(pmpgw("patients", "add", "P2", "--physician", "doc"))
    shown = json.loads(ok(pmpgw("patients", "show", "P1", "--json")))
    assert {k: shown[k] for k in ("programmes", "dispensary", "tz", "utc_offset_min", "physician", "nurse",
                                  "personal_admin", "targets", "bindings")} == {
        "programmes": ["AH", "DM2"], "dispensary": False, "tz": "Asia/Yekaterinburg", "utc_offset_min": 300,
        "physician": "doc", "nurse": "nur", "personal_admin": "pa", "bindings": [],
        "targets": {"home_sys": 130, "home_dia": 80, "tir_low": 4, "tir_high": 9, "plan": {"bp": 1, "glu": 2}}}
    text = ok(pmpgw("patients", "show", "P2"))
    assert "programmes:     AH\n" in text and "tz:             Europe/Moscow (UTC+03:00)" in text
    assert [p["id"] for p in json.loads(ok(pmpgw("patients", "list", "--json")))] == ["P1", "P2"]
    assert [p["id"] for p in json.loads(ok(pmpgw("patients", "list", "--programme", "DM2", "--json")))] == ["P1"]
    assert [p["id"] for p in json.loads(ok(pmpgw("patients", "list", "--physician", "doc", "--json")))] == [
        "P1", "P2"]
    assert [p["id"] for p in json.loads(ok(pmpgw("patients", "list", "--personal-admin", "pa", "--json")))] == [
        "P1"]
    assert "(2 rows)" in ok(pmpgw("patients", "list"))


@pytest.mark.parametrize("args, reason", [
    (["--bp-target", "130"], "INVALID"), (["--glucose-range", "9-4"], "INVALID"), (["--plan", "steps=1"], "INVALID"),
    (["--programme", "AH,XX"], "INVALID"), (["--tz", "Mars/Olympus"], "INVALID"), (["--nurse", "nobody"], "UNKNOWN"),
])
def test_patients_add_errors(pmpgw, args, reason):
    status, _, err = pmpgw("patients", "add", "P1", *args)
    assert status == 2 and err.startswith(f"pmpgw: {reason}: ")
    assert pmpgw("patients", "show", "P1")[0:3:2] == (2, "pmpgw: UNKNOWN: patient 'P1' is not registered\n")


GOOD = "P1,AH,yes,Europe/Moscow,doc,,pa,130/80,,bp=1\nP2,DM2,,,doc,nur,,,3.9-9,glu=1|cgm=1\n"
HEADER = "id,programmes,dispensary,tz,physician,nurse,personal_admin,bp_target,glucose_range,plan\n"


def test_import_is_all_or_nothing_and_reports_every_bad_row(pmpgw, db, tmp_path):
    staff(pmpgw)
    ok(pmpgw("patients", "add", "OLD"))
    csv = tmp_path / "cohort.csv"
    csv.write_text(HEADER + GOOD + "P3,AH|XX,,,,,,,,\n"  # line 4: programme
                   "OLD,,,,,,,,,\n"                     # 5: registered already
                   "P4,,,,ghost,,,,,\n"                 # 6: unknown staff
                   "P1,,,,,,,,,\n"                      # 7: duplicate of line 2
                   "P5,,maybe,,,,,,,\n")                # 8: dispensary
    status, out, err = pmpgw("patients", "import", csv)
    assert status == 2 and "7 rows, 5 bad, 0 patients imported" in out
    assert err.splitlines() == [
        "pmpgw: INVALID: line 4: programmes 'AH,XX': give one or more of AH, DM1, DM2, each once",
        "pmpgw: EXISTS: line 5: patient 'OLD' already exists",
        "pmpgw: UNKNOWN: line 6: physician 'ghost' is not registered: add the staff member first (pmpgw staff add)",
        "pmpgw: DUPLICATE: line 7: patient 'P1' is already on line 2",
        "pmpgw: INVALID: line 8: dispensary 'maybe' is not one of yes/y/true/1/no/n/false/0"]
    assert [p["id"] for p in json.loads(ok(pmpgw("patients", "list", "--json")))] == ["OLD"]
    status, out, _ = pmpgw("patients", "import", csv, "--check", "--json")
    summary = json.loads(out)
    assert status == 2 and (summary["imported"], summary["rows"], len(summary["bad"])) == (0, 7, 5)
    assert summary["bad"][2] == {"line": 6, "reason": "UNKNOWN", "value": "ghost",
                                 "message": "physician 'ghost' is not registered: add the staff member first "
                                            "(pmpgw staff add)"}
    status, out, err = pmpgw("patients", "import", csv, "--skip-bad")
    assert status == EXIT_SKIPPED and "7 rows, 5 bad, 2 patients imported" in out and len(err.splitlines()) == 5
    assert [p["id"] for p in json.loads(ok(pmpgw("patients", "list", "--json")))] == ["OLD", "P1", "P2"]
    p2 = json.loads(ok(pmpgw("patients", "show", "P2", "--json")))
    assert (p2["programmes"], p2["nurse"], p2["targets"]) == (["DM2"], "nur", {"tir_low": 3.9, "tir_high": 9,
                                                                              "plan": {"glu": 1, "cgm": 1}})
    assert audit(db)[-1] == ("cli", "patients.add", None)


def test_import_of_a_good_file_and_of_files_that_cannot_be_read(pmpgw, tmp_path):
    staff(pmpgw)
    good = tmp_path / "good.csv"
    good.write_text(HEADER + GOOD)
    assert "2 rows, 0 bad, 2 patients imported" in ok(pmpgw("patients", "import", good))
    headless = tmp_path / "headless.csv"
    headless.write_text("P9,AH\n")
    status, _, err = pmpgw("patients", "import", headless, "--skip-bad")
    assert status == 2 and err == "pmpgw: COLUMNS: line 1: unknown column 'p9': use " + ", ".join(
        HEADER.strip().split(",")) + "\n"
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("id\nPé\n".encode("latin-1"))
    status, _, err = pmpgw("patients", "import", latin)
    assert status == 2 and err.startswith("pmpgw: FILE: cannot read")
    assert pmpgw("patients", "import", tmp_path / "missing.csv")[0] == 2


def test_import_of_many_rows_is_one_transaction(pmpgw, db, tmp_path):
    staff(pmpgw)
    n = 50_000
    csv = tmp_path / "cohort.csv"
    csv.write_text(HEADER + "".join(f"X{i},AH|DM2,yes,Europe/Moscow,doc,nur,pa,{125 + i % 10}/80,4-9,bp=1|glu=2\n"
                                    for i in range(n)))
    with Store.open(db) as watcher:
        version = watcher.registry_version()
        assert f"{n} rows, 0 bad, {n} patients imported" in ok(pmpgw("patients", "import", csv))
        assert watcher.registry_version() == version + 1  # one bump for the whole file
        assert len(watcher.patient_index()) == n
        assert watcher.thresholds()[n - 1, Param.home_sys] == 125 + (n - 1) % 10
    assert sum(action == "patients.add" for _, action, _ in audit(db)) == 1


def test_devices_bind_unbind_retire(pmpgw, db):
    ok(pmpgw("patients", "add", "A"))
    ok(pmpgw("patients", "add", "B"))
    ok(pmpgw("devices", "add", "tono-1", "--kind", "bp"))
    ok(pmpgw("devices", "add", "AA:BB:CC:DD:EE:FF", "--kind", "glu"))
    ok(pmpgw("bind", "tono-1", "A", "--from", "2025-01-01T00:00", "--to", "2025-06-01T00:00"))
    ok(pmpgw("bind", "tono-1", "B", "--from", "2025-06-01T00:00"))
    status, _, err = pmpgw("bind", "tono-1", "A", "--from", "2025-07-01T00:00")
    assert status == 2 and err == ("pmpgw: OVERLAP: device 'tono-1' (any slot) is already bound to patient 'B' from "
                                   "2025-06-01T00:00:00Z to open end: unbind it first, or choose a later start\n")
    listed = json.loads(ok(pmpgw("devices", "list", "--json")))
    assert [(d["id"], d["kind"], d["patients"], d["retired"]) for d in listed] == [
        ("tono-1", "bp", ["B"], None), ("AA:BB:CC:DD:EE:FF", "glu", [], None)]
    assert [d["id"] for d in json.loads(ok(pmpgw("devices", "list", "--kind", "glu", "--json")))] == [
        "AA:BB:CC:DD:EE:FF"]
    assert "device tono-1 unbound from patient B at 2025-09-01T00:00:00Z" in ok(
        pmpgw("unbind", "tono-1", "--at", "2025-09-01T00:00"))
    status, _, err = pmpgw("unbind", "tono-1", "--at", "2025-10-01T00:00")
    assert status == 2 and err.startswith("pmpgw: UNKNOWN: device 'tono-1' has no binding that holds")
    ok(pmpgw("bind", "tono-1", "A", "--from", "2025-10-01T00:00"))
    assert "1 binding(s) ended" in ok(pmpgw("devices", "retire", "tono-1", "--at", "2025-11-01T00:00"))
    shown = json.loads(ok(pmpgw("devices", "show", "tono-1", "--json")))
    assert shown["retired"] == 1_761_955_200_000 and shown["patients"] == []
    assert [(b["patient"], b["to"]) for b in shown["bindings"]] == [
        ("A", 1_748_736_000_000), ("B", 1_756_684_800_000), ("A", 1_761_955_200_000)]
    text = ok(pmpgw("devices", "show", "tono-1"))
    assert "retired:  2025-11-01T00:00:00Z" in text and "(3 rows)" in text
    status, _, err = pmpgw("bind", "tono-1", "B", "--from", "2025-12-01T00:00")
    assert status == 2 and err.startswith("pmpgw: RETIRED: device 'tono-1' was retired at 2025-11-01T00:00:00Z")
    assert [b["device"] for b in json.loads(ok(pmpgw("patients", "show", "A", "--json")))["bindings"]] == [
        "tono-1", "tono-1"]
    assert [action for _, action, subject in audit(db) if subject == "tono-1"] == [
        "device.add", "devices.credentials", "bind", "bind", "unbind", "bind", "device.retire"]


def bp(seq, t, sys_=120, dia=80):
    return {"seq": seq, "t": t, "type": "bp", "sys": sys_, "dia": dia}


def message(device, readings, mid=1):
    return Received(f"pmp/v1/dev/{device}/m", msgpack.packb(readings), mid, 1, 1, NOW)


def test_a_reading_belongs_to_the_binding_that_holds_its_time(pmpgw, db):
    t0, t1, t2 = NOW - 10 * DAY_MS, NOW - 5 * DAY_MS, NOW - DAY_MS
    for patient in ("A", "B"):
        ok(pmpgw("patients", "add", patient))
    ok(pmpgw("devices", "add", "tono-1", "--kind", "bp"))
    with Store.open(db) as store:
        ingest = Ingest(store)  # the running gateway's writer takes the bindings made after it started
        ok(pmpgw("bind", "tono-1", "A", "--from", t0, "--to", t1))
        ok(pmpgw("bind", "tono-1", "B", "--from", t1))
        ok(pmpgw("unbind", "tono-1", "--at", t2))
        outcome = ingest.process([message("tono-1", [bp(1, t0 - 1), bp(2, t0), bp(3, t1 - 1), bp(4, t1),
                                                     bp(5, t2 - 1), bp(6, t2)])], NOW)
        assert outcome.result.stored == 4
        assert [r["seq"] for r in store.readings("A")] == [2, 3]
        assert [r["seq"] for r in store.readings("B")] == [4, 5]
        assert sorted((q["seq"], q["reason"]) for q in store.quarantine()) == [(1, "UNBOUND"), (6, "UNBOUND")]


def week_of_bp(seq_from, sys_, dia, days=7, per_day=4):
    today = NOW // DAY_MS
    return [bp(seq_from + d * per_day + k, (today - days + d) * DAY_MS + 8 * HOUR + k * 60_000, sys_, dia)
            for d in range(days) for k in range(per_day)]


def test_individual_targets_change_what_the_running_core_raises(pmpgw, db):
    with Store.open(db) as store:
        ingest = Ingest(store)  # started before any patient: targets arrive with registry changes
        ok(pmpgw("patients", "add", "TARGET", "--bp-target", "150/95"))
        ok(pmpgw("patients", "add", "DEFAULT"))
        store.add_patient("LOWER", targets={"crisis_sys": 170})  # any core.rule_tables.THRESHOLDS name
        for device, patient in (("cuff-t", "TARGET"), ("cuff-d", "DEFAULT"), ("cuff-l", "LOWER")):
            ok(pmpgw("devices", "add", device, "--kind", "bp"))
            ok(pmpgw("bind", device, patient))
        reading = ingest.process([message("cuff-d", [bp(1, NOW - 1000, 175, 90)]),
                                  message("cuff-l", [bp(1, NOW - 1000, 175, 90)], mid=2)], NOW)
        assert [(a["patient"], a["rule"]) for a in reading.result.alerts] == [("LOWER", "BP_CRISIS")]
        ingest.process([message("cuff-t", week_of_bp(10, 145, 90), mid=3),
                        message("cuff-d", week_of_bp(10, 145, 90), mid=4)], NOW)
        ingest.close_days(NOW)  # takes the patients registered since it started
        ingest.closed_day = ingest.closed_day - 1  # as if the gateway last looked yesterday
        closed = ingest.close_days(NOW)
        assert [(a["patient"], a["rule"]) for a in closed.result.alerts] == [("DEFAULT", "BP_HOME_HIGH")]
        restarted = Ingest(store).pipeline.thresholds  # a restart loads the same targets
        assert restarted[0, Param.home_sys] == 150 and restarted[1, Param.home_sys] == THRESHOLDS["home_sys"]
        assert restarted[2, Param.crisis_sys] == 170


def test_a_publisher_first_seen_with_garbage_is_registered_unknown_then_given_its_kind(pmpgw, db):
    with Store.open(db) as store:
        outcome = Ingest(store).process([Received("pmp/v1/dev/new-1/m", b"\xc1junk", 1, 1, 1, NOW)], NOW)
    assert outcome.result.quarantined == {"DECODE": 1}
    assert [(d["id"], d["kind"]) for d in json.loads(ok(pmpgw("devices", "list", "--kind", "unknown", "--json")))] == [
        ("new-1", "unknown")]
    assert "device new-1 registered as glu (index 0)" in ok(pmpgw("devices", "add", "new-1", "--kind", "glu"))
    assert audit(db) == [("gateway", "device.add", "new-1"), ("cli", "device.kind", "new-1"),
                         ("cli", "devices.credentials", "new-1")]


DEVICES = "id,kind,patient,from,to,user\n"


def test_devices_import_is_all_or_nothing_and_reports_every_bad_row(pmpgw, db, tmp_path):
    for patient in ("A", "B"):
        ok(pmpgw("patients", "add", patient))
    ok(pmpgw("devices", "add", "old-1", "--kind", "bp"))
    ok(pmpgw("devices", "add", "ret-1", "--kind", "bp"))
    ok(pmpgw("devices", "retire", "ret-1", "--at", "2025-01-01T00:00"))
    with Store.open(db) as store:  # first seen by the gateway; seen-2 bound before its kind is known
        store.add_device("seen-1", "unknown", actor="gateway")
        store.add_device("seen-2", "unknown", actor="gateway")
    ok(pmpgw("bind", "seen-2", "B", "--from", "2025-01-01T00:00"))
    csv = tmp_path / "devices.csv"
    csv.write_text(DEVICES +
                   "tono-1,bp,A,2025-01-01T00:00,,\n"       # 2 good
                   "AA:BB:CC:DD:EE:FF,glu,A,,,1\n"          # 3 good: a shared meter's slot 1...
                   "AA:BB:CC:DD:EE:FF,glu,B,,,2\n"          # 4 ...and slot 2
                   "hub-1,hub,,,,\n"                        # 5 good, not bound
                   "seen-1,cgm,B,2025-03-01T00:00,,\n"      # 6 good: takes its kind
                   "aa:bb:cc:dd:ee:01,glu,,,,\n"            # 7 a BLE address in lower case
                   "cuff-x,scale,,,,\n"                     # 8 kind
                   "old-1,bp,,,,\n"                         # 9 registered already
                   "ret-1,bp,A,2025-06-01T00:00,,\n"        # 10 retired
                   "cuff-y,bp,NOBODY,,,\n"                  # 11 patient not registered
                   "cuff-z,bp,A,2025-05-01,2025-04-01,\n"   # 12 ends before it starts
                   "tono-1,bp,B,2025-06-01T00:00,,\n"       # 13 overlaps line 2
                   "seen-2,bp,A,2025-02-01T00:00,,\n"       # 14 overlaps its stored binding
                   "hub-1,hub,,,,\n"                        # 15 duplicate of line 5
                   "cuff-w,bp,A,soon,,\n"                   # 16 from unreadable
                   "cuff-v,bp,A,,,300\n")                   # 17 slot out of range
    status, out, err = pmpgw("devices", "import", csv)
    assert status == 2 and "16 rows, 11 bad, 0 devices imported, 0 bound" in out
    assert err.splitlines() == [
        "pmpgw: INVALID: line 7: device id 'aa:bb:cc:dd:ee:01': use 1-64 of [A-Za-z0-9_.-], or a BLE address in "
        "upper case with colons (AA:BB:CC:DD:EE:FF)",
        "pmpgw: INVALID: line 8: device kind 'scale' is not one of bp, glu, cgm, hub",
        "pmpgw: EXISTS: line 9: device 'old-1' already exists (kind bp)",
        "pmpgw: RETIRED: line 10: device 'ret-1' was retired at 2025-01-01T00:00:00Z: it cannot be registered or "
        "bound again",
        "pmpgw: UNKNOWN: line 11: patient 'NOBODY' is not registered: register patients before binding devices to "
        "them (pmpgw patients import)",
        "pmpgw: INVALID: line 12: binding ends (2025-04-01T00:00:00Z) before it starts (2025-05-01T00:00:00Z)",
        "pmpgw: OVERLAP: line 13: device 'tono-1' (any slot) is already bound to patient 'A' from "
        "2025-01-01T00:00:00Z to open end: unbind it first, or choose a later start",
        "pmpgw: OVERLAP: line 14: device 'seen-2' (any slot) is already bound to patient 'B' from "
        "2025-01-01T00:00:00Z to open end: unbind it first, or choose a later start",
        "pmpgw: DUPLICATE: line 15: device 'hub-1' is already on line 5: a device is on several lines only to be "
        "bound several times, each line with a patient",
        "pmpgw: INVALID: line 16: from 'soon' is neither ISO 8601 (2026-11-25T08:00) nor ms since epoch",
        "pmpgw: INVALID: line 17: user slot 300 outside 0..254"]
    assert [d["id"] for d in json.loads(ok(pmpgw("devices", "list", "--json")))] == ["old-1", "ret-1", "seen-1",
                                                                                   "seen-2"]
    status, out, _ = pmpgw("devices", "import", csv, "--check", "--json")
    summary = json.loads(out)
    assert status == 2 and (summary["imported"], summary["bound"], summary["rows"], len(summary["bad"])) == (
        0, 0, 16, 11)
    assert summary["bad"][1] == {"line": 8, "reason": "INVALID", "value": "scale",
                                 "message": "device kind 'scale' is not one of bp, glu, cgm, hub"}
    with Store.open(db) as watcher:
        version = watcher.registry_version()
        status, out, err = pmpgw("devices", "import", csv, "--skip-bad")
        assert watcher.registry_version() == version + 1
    assert status == EXIT_SKIPPED and "16 rows, 11 bad, 4 devices imported, 4 bound" in out
    assert len(err.splitlines()) == 11
    listed = {d["id"]: (d["kind"], d["patients"]) for d in json.loads(ok(pmpgw("devices", "list", "--json")))}
    assert listed == {"old-1": ("bp", []), "ret-1": ("bp", []), "seen-1": ("cgm", ["B"]), "seen-2": ("unknown", ["B"]),
                      "tono-1": ("bp", ["A"]), "AA:BB:CC:DD:EE:FF": ("glu", ["A", "B"]), "hub-1": ("hub", [])}
    shared = json.loads(ok(pmpgw("devices", "show", "AA:BB:CC:DD:EE:FF", "--json")))["bindings"]
    assert [(b["patient"], b["user"], b["from"], b["to"]) for b in shared] == [("A", 1, 0, None), ("B", 2, 0, None)]
    assert audit(db)[-1] == ("cli", "devices.add", None)
    status, out, err = pmpgw("devices", "import", csv, "--skip-bad")  # again: nothing left to import
    assert status == 2 and "16 rows, 16 bad, 0 devices imported, 0 bound" in out
    assert "pmpgw: EXISTS: line 2: device 'tono-1' already exists (kind bp)" in err


def test_devices_import_check_then_import_of_a_good_file(pmpgw, db, tmp_path):
    ok(pmpgw("patients", "add", "A"))
    csv = tmp_path / "devices.csv"
    csv.write_text(DEVICES + "tono-1,bp,A,2025-01-01,2025-02-01,\ntono-1,bp,A,2025-03-01,,\n")
    assert "2 rows checked, 0 bad" in ok(pmpgw("devices", "import", csv, "--check"))
    assert json.loads(ok(pmpgw("devices", "list", "--json"))) == []
    assert "2 rows, 0 bad, 1 devices imported, 2 bound" in ok(pmpgw("devices", "import", csv))
    assert audit(db)[-1] == ("cli", "devices.add", "tono-1")
    status, _, err = pmpgw("devices", "import", tmp_path / "missing.csv")
    assert status == 2 and err.startswith("pmpgw: FILE: cannot read")


def test_devices_import_issues_broker_accounts_to_devices_and_hubs_into_an_owner_only_file(pmpgw, db, tmp_path):
    ok(pmpgw("patients", "add", "A"))
    csv, out = tmp_path / "devices.csv", tmp_path / "accounts.csv"
    csv.write_text(DEVICES + "tono-1,bp,A,,,\nhub-1,hub,,,,\nAA:BB:CC:DD:EE:01,glu,A,,,\n")
    summary = json.loads(ok(pmpgw("devices", "import", csv, "--credentials", out, "--json")))
    assert (summary["imported"], summary["accounts"]) == (3, 2)
    rows = out.read_text().splitlines()
    assert rows[0] == "id,password" and sorted(r.split(",")[0] for r in rows[1:]) == ["hub-1", "tono-1"]
    assert oct(out.stat().st_mode & 0o777) == "0o600"
    with Store.open(db) as store:
        assert sorted((a.username, a.role) for a in store.broker_accounts()) == [("hub-1", "hub"), ("tono-1", "device")]


def test_an_imported_device_has_its_readings_stored_for_the_patient_bound_at_their_time(pmpgw, db, tmp_path):
    t0, t1 = NOW - 10 * DAY_MS, NOW - 5 * DAY_MS
    for patient in ("A", "B"):
        ok(pmpgw("patients", "add", patient))
    csv = tmp_path / "devices.csv"
    csv.write_text(DEVICES + f"tono-1,bp,A,{t0},{t1},\ntono-1,bp,B,{t1},,\ntono-2,bp,,,,\n")
    with Store.open(db) as store:
        ingest = Ingest(store)  # the running gateway's writer takes the import made after it started
        ok(pmpgw("devices", "import", csv))
        outcome = ingest.process([message("tono-1", [bp(1, t0 - 1), bp(2, t0), bp(3, t1 - 1), bp(4, t1)]),
                                  message("tono-2", [bp(1, t1)], mid=2)], NOW)
        assert outcome.result.stored == 3
        assert [r["seq"] for r in store.readings("A")] == [2, 3]
        assert [r["seq"] for r in store.readings("B")] == [4]
        assert sorted((q["device"], q["seq"], q["reason"]) for q in store.quarantine()) == [
            ("tono-1", 1, "UNBOUND"), ("tono-2", 1, "UNBOUND")]


def test_devices_import_of_many_rows_is_one_transaction(pmpgw, db, tmp_path):
    n = 20_000
    patients, devices = tmp_path / "patients.csv", tmp_path / "devices.csv"
    patients.write_text("id\n" + "".join(f"P{i}\n" for i in range(n)))
    devices.write_text(DEVICES + "".join(f"dev-{i},{('bp', 'glu', 'cgm')[i % 3]},P{i},2026-11-01T00:00,,\n"
                                         for i in range(n)))
    ok(pmpgw("patients", "import", patients))
    with Store.open(db) as watcher:
        version = watcher.registry_version()
        assert f"{n} rows, 0 bad, {n} devices imported, {n} bound" in ok(pmpgw("devices", "import", devices))
        assert watcher.registry_version() == version + 1  # one bump for the whole file
        assert len(watcher.device_index()) == n
        bindings = watcher.bindings().rows
        assert len(bindings) == n and (bindings["patient"] == bindings["device"]).all()
    assert sum(action == "devices.add" for _, action, _ in audit(db)) == 1
