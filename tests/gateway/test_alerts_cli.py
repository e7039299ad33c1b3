"""``pmpgw alerts``: lists, work queues, ack / resolve / show, on a real SQLite file."""

from __future__ import annotations

import json
import typing

import pytest

import core
from core.rule_tables import Role
from gateway.alerts_cli import format_age
from gateway.cli import main
from gateway.clock import now_ms
from gateway.store import Store
from gateway.store.store import QUEUE_ROLES

HOUR = 3_600_000


@pytest.fixture
def db(db):
    """P0 (doc0, nurse1, pa1) with BP_LOW 2 h old, MISSED 1 h old, BP_CRISIS 10 min old;
    P1 (doc1, nurse1) with GLU_LOW_L2 3 h old. Returns the path and the alert ids by rule."""
    path = db
    now = now_ms()
    with Store.open(path) as store:
        for staff_id, role in (("doc0", "physician"), ("doc1", "physician"), ("nurse1", "nurse"),
                               ("pa1", "personal_admin"), ("head1", "head")):
            store.add_staff(staff_id, staff_id.upper(), role)
        store.add_patient("P0", physician="doc0", nurse="nurse1", personal_admin="pa1")
        store.add_patient("P1", physician="doc1", nurse="nurse1")
        ids = {}
        for patient, rule, age_ms in ((1, "GLU_LOW_L2", 3 * HOUR), (0, "BP_LOW", 2 * HOUR), (0, "MISSED", HOUR),
                                      (0, "BP_CRISIS", 600_000)):
            raised = now - age_ms - 30_000
            [alert] = store.commit_batch(core.empty_batch(0), now_ms=raised, alerts=[
                {"patient": patient, "rule": rule, "t": raised, "late": False, "values": {"n": 1}}]).alerts
            ids[rule] = alert["id"]
    return path, ids


def run(capsys, *argv):
    """``pmpgw alerts ARGV``: (exit code, stdout, stderr)."""
    code = main(["alerts", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def table(out):
    """Rows of a print_table output as dicts (header line first, row count line last)."""
    header, *rows, _ = out.splitlines()
    return [dict(zip(header.split(), row.split())) for row in rows]


def test_a_role_queue_is_most_severe_first_then_oldest_with_its_age(db, capsys):
    path, ids = db
    code, out, _ = run(capsys, "--db", path, "--role", "physician")
    assert code == 0
    rows = table(out)
    assert [(r["rule"], r["age"]) for r in rows] == [("GLU_LOW_L2", "3h00m"), ("BP_CRISIS", "10m30s"),
                                                     ("BP_LOW", "2h00m")]
    _, out, _ = run(capsys, "--db", path)  # the plain list: every alert, oldest first
    assert [r["rule"] for r in table(out)] == ["GLU_LOW_L2", "BP_LOW", "MISSED", "BP_CRISIS"]


def test_staff_queues_hold_their_own_patients_alerts_as_json(db, capsys):
    path, ids = db
    code, out, _ = run(capsys, "--db", path, "--staff", "doc0", "--json")
    alerts = json.loads(out)
    assert code == 0 and [a["rule"] for a in alerts] == ["BP_CRISIS", "BP_LOW"]
    assert {"id", "patient", "rule", "severity", "late", "state", "t", "route", "raised", "escalated",
            "values"} <= set(alerts[0])
    assert (alerts[0]["patient"], alerts[0]["route"], alerts[0]["escalated"]) == ("P0", ["physician", "nurse"], 0)
    _, out, _ = run(capsys, "--db", path, "--staff", "nurse1", "--json")
    assert [a["rule"] for a in json.loads(out)] == ["GLU_LOW_L2", "BP_CRISIS"]
    _, out, _ = run(capsys, "--db", path, "--staff", "pa1", "--json")
    assert [a["rule"] for a in json.loads(out)] == ["MISSED"]
    _, out, _ = run(capsys, "--db", path, "--patient", "P0", "--severity", "emergency", "--json")
    assert [a["id"] for a in json.loads(out)] == [ids["BP_CRISIS"]]


def test_ack_resolve_and_show_record_who_when_and_the_note(db, capsys):
    path, ids = db
    crisis = str(ids["BP_CRISIS"])
    assert run(capsys, "ack", crisis, "--by", "nurse1", "--note", "called, re-measuring", "--db", path)[:2] == (
        0, f"alert {crisis} acknowledged by nurse1\n")
    assert run(capsys, "resolve", crisis, "--by", "doc0", "--db", path)[0] == 0
    code, out, _ = run(capsys, "show", crisis, "--json", "--db", path)
    shown = json.loads(out)
    assert code == 0 and shown["state"] == "resolved"
    assert [(e["actor"], e["action"], e["note"]) for e in shown["events"]] == [
        ("gateway", "raised", None), ("nurse1", "acknowledged", "called, re-measuring"), ("doc0", "resolved", None)]
    code, out, _ = run(capsys, "show", crisis, "--db", path)
    assert code == 0 and "BP_CRISIS emergency, resolved, patient P0" in out
    assert [(r["actor"], r["action"]) for r in table(out.split("history:\n")[1])] == [
        ("gateway", "raised"), ("nurse1", "acknowledged"), ("doc0", "resolved")]
    _, out, _ = run(capsys, "--db", path, "--staff", "doc0")
    assert [r["rule"] for r in table(out)] == ["BP_LOW"]  # resolved: out of the queue


@pytest.mark.parametrize("argv, message", [
    (["resolve", "{BP_LOW}", "--by", "doc0"], "pmpgw: STATE: alert {BP_LOW} is already resolved (by doc0 at "),
    (["ack", "{BP_LOW}", "--by", "doc0"], "pmpgw: STATE: alert {BP_LOW} is already resolved"),
    (["ack", "{MISSED}", "--by", "ghost"], "pmpgw: UNKNOWN: staff member 'ghost' is not registered"),
    (["ack", "999", "--by", "doc0"], "pmpgw: UNKNOWN: alert 999 does not exist"),
    (["show", "999"], "pmpgw: UNKNOWN: alert 999 does not exist"),
    (["--staff", "head1"], "pmpgw: INVALID: staff member 'head1' is head, a role without an alert queue"),
    (["--staff", "ghost"], "pmpgw: UNKNOWN: staff member 'ghost' is not registered"),
])
def test_errors_print_a_reason_and_exit_2(db, capsys, argv, message):
    path, ids = db
    assert run(capsys, "resolve", str(ids["BP_LOW"]), "--by", "doc0", "--db", path)[0] == 0
    code, out, err = run(capsys, *[a.format(**ids) for a in argv], "--db", path)
    assert (code, out) == (2, "") and err.startswith(message.format(**ids))


def test_ack_needs_by(db, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["alerts", "ack", "1", "--db", db[0]])
    assert exit_.value.code == 2 and "--by" in capsys.readouterr().err


@pytest.mark.parametrize("ms, text", [(-5, "0s"), (45_000, "45s"), (14 * 60_000 + 5_000, "14m05s"),
                                      (2 * HOUR + 5 * 60_000, "2h05m"), (3 * 24 * HOUR + 4 * HOUR, "3d04h")])
def test_format_age(ms, text):
    assert format_age(ms) == text


def test_every_role_an_alert_is_routed_to_has_a_queue():
    assert set(QUEUE_ROLES) == set(typing.get_args(Role))
