"""gateway.store on real databases: schema, batches, dedup, registry, alerts, windows, errors.

Tests taking ``store`` (or ``db``) run on an SQLite file and on PostgreSQL (tests/conftest.py);
those on a ``tmp_path`` file test what only SQLite has (PRAGMAs, WAL, v1 files, page limits).
"""

import sqlite3

import numpy as np
import pytest

import core
import core.compiled
from bench.fleet import make_fleet
from core.codes import NO_USER, Flag, Kind, Reason
from core.dedup import DedupTable
from core.pipeline import Pipeline
from core.windows import WindowState
from gateway.store import RegistryError, Store, StoreError
from gateway.store.sql import MIGRATIONS, SCHEMA_TABLE
from gateway.store.store import COOLDOWN_MS
from tests.gateway.dbs import raw, rows

NOW = 1_764_072_000_000
HOUR = 3_600_000


@pytest.fixture
def store(db):
    with Store.open(db) as s:
        yield s


def integrity_errors() -> tuple[type[Exception], ...]:
    import psycopg

    return sqlite3.IntegrityError, psycopg.IntegrityError


def registry(store, n_patients=2):
    """Patients P0.., devices D0.. bound to P0.. for all time (device i -> patient i)."""
    for i in range(n_patients):
        assert store.add_patient(f"P{i}", programmes=["AH", "DM2"], tz="Europe/Moscow", now_ms=NOW) == i
        assert store.add_device(f"D{i}", "bp", now_ms=NOW) == i
        store.bind(f"D{i}", f"P{i}", 0)


def reading(kind, values, *, device=0, seq=1, t=NOW - 60_000, reason=Reason.OK, patient=0):
    batch = core.empty_batch(1)
    batch["kind"], batch["device"], batch["seq"], batch["t"], batch["rx"] = kind, device, seq, t, NOW
    batch["flags"] = Flag.HAS_TIME | Flag.HAS_SEQ
    batch["v"][0, : len(values)] = values
    batch["reason"], batch["patient"] = reason, patient
    batch["fingerprint"] = seq * 1000 + int(np.nan_to_num(values[0]))
    return batch


def test_migrations_from_empty_and_reopen(tmp_path):
    path = tmp_path / "pmp.db"
    with Store.open(path) as store:
        assert store.schema_version() == MIGRATIONS[-1][0]
        store.add_device("D0", "glu")
    with Store.open(path, synchronous="NORMAL") as store:
        assert store.schema_version() == MIGRATIONS[-1][0]
        assert store.device_index() == {"D0": 0}
        conn = sqlite3.connect(path)
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("SELECT COUNT(*) FROM schema_migrations").fetchone()[0] == len(MIGRATIONS)
        conn.close()


def test_newer_schema_is_refused(tmp_path):
    path = tmp_path / "pmp.db"
    Store.open(path).close()
    conn = sqlite3.connect(path)
    conn.execute("INSERT INTO schema_migrations VALUES (999, 'future', 0)")
    conn.commit()
    conn.close()
    with pytest.raises(StoreError, match="upgrade pmp-gateway") as info:
        Store.open(path)
    assert info.value.reason == "SCHEMA"


def v1_file(path) -> sqlite3.Connection:
    """A connection to a new database at schema version 1, as released before migration 2."""
    conn = sqlite3.connect(path)
    for statement in MIGRATIONS[0][2]:
        conn.execute(statement)
    conn.execute(SCHEMA_TABLE)
    conn.execute("INSERT INTO schema_migrations VALUES (1, 'v1', 0)")
    return conn


def test_migration_2_packs_v1_readings_into_columns_and_detail(tmp_path):
    """A v1 file's readings keep their ids, values, keys and audit fields through migration 2."""
    path = tmp_path / "v1.db"
    conn = v1_file(path)
    conn.execute("INSERT INTO devices VALUES ('D0', 0, 'glu', NULL, 0)")
    conn.execute("INSERT INTO patients (id, idx, programmes, tz, utc_offset_min, created) "
                 "VALUES ('P0', 0, 'DM2', 'UTC', 0, 0)")
    conn.execute("INSERT INTO bindings (device, valid_from, patient, created) VALUES (0, 0, 0, 0)")
    v1 = ("INSERT INTO readings (id, device, patient, seq, t, rx, type, sys, dia, map, pul, glu, glu_range, trend, "
          "quality, flags, status, unit_in, user_slot, meal, battery, fingerprint, dedup_tag, dedup_key, extra) "
          "VALUES (?, 0, 0, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
    conn.executemany(v1, [
        (7, 1, NOW - 3 * HOUR, NOW, "bp", 185.0, 95.0, 125.0, 80.0, None, None, None, None, 3, 0x20, "kPa", 2,
         None, 40.0, -5, 1, 1, None),
        (9, 3, NOW - 2 * HOUR, NOW, "glu_context", None, None, None, None, None, None, None, None, 3, 0, None, None,
         None, None, 77, 3, 3, '{"carbohydrate_kg":0.05,"hba1c_pct":7.1,"carbohydrate_id":1,"meal":2}'),
        (12, None, NOW - HOUR, NOW + 1, "glu", None, None, None, None, None, "LO", None, None, 1 | 4, 0, "mg/dL",
         None, "fasting", None, 2**63 - 1, 2, 2**63 - 1, '{"sample_type":1}'),
        (13, 4, NOW - HOUR // 2, NOW + 2, "cgm", None, None, None, None, 6.5, None, -0.1, 95.0, 3, 0, None, None,
         None, None, 11, 1, 4, '{"time_offset_min":15}'),
    ])
    conn.commit()
    conn.close()
    with Store.open(path) as store:
        assert store.schema_version() == MIGRATIONS[-1][0]
        replay, ids = store.readings_batch()
        got = store.readings("P0")
        keys = store.dedup_keys()
    assert ids.tolist() == [7, 9, 12, 13]
    v = replay["v"]
    assert np.array_equal(v[0], [185.0, 95.0, 125.0, 80.0]) and np.array_equal(v[3, :3], [6.5, -0.1, 95.0])
    assert np.array_equal(v[1], [0.05, np.nan, 7.1, np.nan], equal_nan=True) and replay["aux"][1, :2].tolist() == [1, 2]
    assert v[3, 3] == 15 and replay["aux"][2, 0] == 1 and np.isnan(v[2, 0])
    assert replay["user"].tolist() == [2, NO_USER, NO_USER, NO_USER] and replay["status"][0] == 0x20
    assert replay["fingerprint"].tolist() == [2**64 - 5, 77, 2**63 - 1, 11]
    assert [(r["id"], r["seq"], r["rx"], r["sys"], r["map"], r["glu"], r["range"], r["trend"], r["meal"],
             r["battery"]) for r in got] == [
        (7, 1, NOW, 185.0, 125.0, None, None, None, None, 40.0),
        (9, 3, NOW, None, None, None, None, None, None, None),
        (12, None, NOW + 1, None, None, None, "LO", None, "fasting", None),
        (13, 4, NOW + 2, None, None, 6.5, None, -0.1, None, None)]
    assert sorted(zip(keys["tag"].tolist(), keys["key"].tolist())) == [(1, 1), (1, 4), (2, 2**63 - 1), (3, 3)]


def processed_fleet(n=5_000, n_patients=50):
    fleet = make_fleet(n, n_patients)
    pipeline = Pipeline(core.compiled, n_patients=fleet.n_patients, tz_min=fleet.tz_min, bindings=fleet.bindings)
    batch = fleet.batch.copy()
    batch["device"][:3] = 2 * n_patients  # an unregistered device index: UNBOUND
    alerts = pipeline.process(batch, fleet.now_ms)
    return fleet, pipeline, batch, alerts


def test_commit_stores_each_ok_row_once_and_quarantines_the_rest(store):
    fleet, pipeline, batch, _ = processed_fleet()
    reasons = np.bincount(batch["reason"], minlength=11)
    assert reasons[Reason.UNBOUND] == 3 and reasons[Reason.DUPLICATE] > 0
    payloads = [b"msg-%d" % i for i in range(len(batch))]
    message = np.arange(len(batch), dtype=np.int32)
    element = np.zeros(len(batch), dtype=np.int32)
    result = store.commit_batch(batch, now_ms=fleet.now_ms, payloads=payloads, message=message, element=element,
                                topics=[f"pmp/v1/dev/X{i}/m" for i in range(len(batch))])
    assert result.stored == reasons[Reason.OK] == len(store.dedup_keys())
    assert result.duplicate == reasons[Reason.DUPLICATE]
    assert result.quarantined == {"UNBOUND": 3}
    ok = batch["reason"] == Reason.OK
    assert (result.reading_ids[~ok] == -1).all()
    assert sorted(result.reading_ids[ok].tolist()) == list(range(1, result.stored + 1))
    rows = store.quarantine(reason="UNBOUND")
    assert [(q["payload"], q["element"], q["topic"], q["device"]) for q in rows] == [
        (b"msg-%d" % i, 0, f"pmp/v1/dev/X{i}/m", None) for i in range(3)]
    again = store.commit_batch(batch, now_ms=fleet.now_ms)
    assert again.stored == 0 and again.duplicate == reasons[Reason.OK] + reasons[Reason.DUPLICATE]
    assert (again.reading_ids[ok] == result.reading_ids[ok]).all()
    assert len(store.dedup_keys()) == result.stored
    counters = store.counters()
    assert counters["received"] == 2 * len(batch) and counters["stored"] == result.stored
    assert counters["quarantined"] == {"UNBOUND": 6}


def test_dedup_keys_rebuild_the_core_table(store):
    fleet, pipeline, batch, _ = processed_fleet()
    store.commit_batch(batch, now_ms=fleet.now_ms)
    keys = store.dedup_keys()
    assert np.array_equal(keys, pipeline.dedup.keys())
    table = DedupTable.from_keys(keys)
    resent = fleet.batch.copy()
    resent["device"][:3] = 2 * fleet.n_patients
    core.validate(resent["kind"], resent["flags"], resent["t"], resent["rx"], resent["v"], resent["reason"],
                  fleet.now_ms)
    core.bind(resent["device"], resent["user"], resent["t"], resent["reason"], resent["patient"], fleet.bindings)
    table.check_and_insert(resent["device"], resent["kind"], resent["flags"], resent["seq"], resent["fingerprint"],
                           resent["t"], resent["reason"])
    assert set(resent["reason"].tolist()) == {Reason.DUPLICATE, Reason.UNBOUND}
    since = int(np.median(keys["t"]))
    assert (store.dedup_keys(since_t=since)["t"] >= since).all()


def test_uint64_fingerprints_round_trip(store):
    registry(store, 1)
    batch = np.concatenate([reading(Kind.GLU, (5.5,), seq=s) for s in range(4)])
    batch["flags"][2:] = Flag.HAS_TIME  # no seq: the fingerprint is the key
    batch["fingerprint"] = [0, 2**63 - 1, 2**63, 2**64 - 1]
    store.commit_batch(batch, now_ms=NOW)
    keys = store.dedup_keys()
    assert sorted(keys["fingerprint"].tolist()) == [0, 2**63 - 1, 2**63, 2**64 - 1]
    assert sorted(keys["key"][keys["tag"] == 2].tolist()) == [2**63, 2**64 - 1]
    replay, _ = store.readings_batch()
    assert replay["fingerprint"].tolist() == batch["fingerprint"].tolist()


def test_stored_keys_of_a_batch_in_one_search_of_the_unique_index(store):
    """The dedup table's recall: the stored rows of the keys asked (absent ones left out,
    uint64 keys at both ends), one statement that searches the UNIQUE index per key."""
    from gateway.store.sql import SELECT_STORED_KEYS

    registry(store, 2)
    batch = np.concatenate([reading(Kind.GLU, (5.5,), seq=s, t=NOW - s) for s in range(4)]
                           + [reading(Kind.BP, (120, 80, np.nan, 70), device=1, seq=9, patient=1)])
    batch["flags"][2:4] = Flag.HAS_TIME  # no seq: the fingerprint is the key
    batch["fingerprint"][2:4] = [2**63, 2**64 - 1]
    store.commit_batch(batch, now_ms=NOW)
    found = store.stored_keys(np.array([0, 0, 0, 1, 1, 0], dtype=np.int32),
                              np.array([1, 2, 2, 1, 1, 1], dtype=np.uint8),
                              np.array([1, 2**64 - 1, 5, 9, 8, 1], dtype=np.uint64))
    assert sorted(found.tolist()) == [(0, 1, 1, 1005, NOW - 1), (0, 2, 2**64 - 1, 2**64 - 1, NOW - 3),
                                      (1, 1, 9, 9120, NOW - 60_000)]
    assert found.dtype == core.KEY_DTYPE
    assert len(store.stored_keys(np.zeros(0, np.int32), np.zeros(0, np.uint8), np.zeros(0, np.uint64))) == 0
    if not store.path.startswith(("postgresql://", "postgres://")):  # SQLite's plan: PostgreSQL plans by statistics
        plan = sqlite3.connect(store.path).execute("EXPLAIN QUERY PLAN " + SELECT_STORED_KEYS, ("[]",)).fetchall()
        assert any("SEARCH r USING INDEX" in row[-1] and "dedup_key=?" in row[-1] for row in plan), plan
    device, seq = store.highest_seqs_before(NOW)  # seq 0 is measured at NOW; 2 and 3 have none
    assert (device.tolist(), seq.tolist()) == ([0, 1], [1, 9])


def test_dedup_key_chunks_hold_every_key_once(store):
    fleet, _, batch, _ = processed_fleet()
    store.commit_batch(batch, now_ms=fleet.now_ms)
    chunks = list(store.dedup_key_chunks(rows=100))
    assert max(len(c) for c in chunks) == 100
    assert np.array_equal(np.sort(np.concatenate(chunks), order=["device", "tag", "key"]), store.dedup_keys())


def test_store_level_duplicate_and_conflict(store):
    registry(store, 1)
    first = reading(Kind.BP, (120, 80, np.nan, 70), seq=7)
    store.commit_batch(first, now_ms=NOW)
    same, other = first.copy(), reading(Kind.BP, (150, 90, np.nan, 70), seq=7)
    result = store.commit_batch(np.concatenate([same, other]), now_ms=NOW, payloads=[b"a", b"b"],
                                message=np.array([0, 1], dtype=np.int32))
    assert result.reason.tolist() == [Reason.DUPLICATE, Reason.CONFLICT]
    assert result.reading_ids.tolist() == [1, -1]
    assert [(q["reason"], q["payload"]) for q in store.quarantine()] == [("CONFLICT", b"b")]
    assert [r["sys"] for r in store.readings("P0")] == [120.0]


def test_readings_query_columns(store):
    registry(store, 1)
    bp = reading(Kind.BP, (185, 95, 125, 80), seq=1)
    glu = reading(Kind.GLU, (np.nan,), seq=2, t=NOW - 30_000)
    glu["flags"] |= np.uint16(Flag.RANGE_LO)
    glu["user"] = 2
    store.commit_batch(np.concatenate([bp, glu]), now_ms=NOW, meal=np.array([0xFF, 3], dtype=np.uint8),
                       battery=np.array([np.nan, 40.0]))
    got = store.readings("P0")
    assert [(r["device"], r["patient"], r["seq"], r["type"], r["sys"], r["dia"], r["pul"], r["glu"], r["range"],
             r["meal"], r["battery"]) for r in got] == [
        ("D0", "P0", 1, "bp", 185.0, 95.0, 80.0, None, None, None, None),
        ("D0", "P0", 2, "glu", None, None, None, None, "LO", "fasting", 40.0)]
    replay, ids = store.readings_batch()
    assert ids.tolist() == [1, 2] and replay["user"].tolist() == [NO_USER, 2]
    assert np.array_equal(replay["v"], np.concatenate([bp, glu])["v"], equal_nan=True)


def test_glucose_context_values_round_trip(store):
    registry(store, 1)
    ctx = reading(Kind.GLU_CONTEXT, (0.05, np.nan, 7.1, np.nan), seq=3)
    ctx["aux"][0, :2] = (1, 2)
    store.commit_batch(ctx, now_ms=NOW)
    replay, _ = store.readings_batch()
    assert np.array_equal(replay["v"], ctx["v"], equal_nan=True)
    assert replay["aux"].tolist() == ctx["aux"].tolist()
    assert store.dedup_keys()["tag"].tolist() == [3]


def test_bindings_intervals_and_overlap_refusal(store):
    store.add_patient("A", now_ms=NOW)
    store.add_patient("B", now_ms=NOW)
    store.add_device("CUFF", "bp")
    store.bind("CUFF", "A", 0, 1_000)
    store.bind("CUFF", "B", 1_000)
    with pytest.raises(RegistryError, match="already bound to patient 'B'") as info:
        store.bind("CUFF", "A", 5_000, 6_000)
    assert info.value.reason == "OVERLAP"
    store.bind("CUFF", "A", 500, user=1)  # another slot: no overlap
    with pytest.raises(RegistryError, match="not registered"):
        store.bind("NOPE", "A", 0)
    with pytest.raises(RegistryError, match="ends"):
        store.bind("CUFF", "A", 10, 5)
    store.unbind("CUFF", 2_000)
    store.bind("CUFF", "A", 2_000)
    bindings = store.bindings()
    assert bindings.n_devices == 1
    assert sorted(bindings.rows.tolist()) == sorted([(0, NO_USER, 0, 1_000, 0), (0, NO_USER, 1_000, 2_000, 1),
                                                     (0, NO_USER, 2_000, core.OPEN_END, 0),
                                                     (0, 1, 500, core.OPEN_END, 0)])
    device, user = np.array([0, 0, 0], dtype=np.int32), np.array([NO_USER, NO_USER, 1], dtype=np.uint8)
    t, reason = np.array([999, 1_500, 1_500], dtype=np.int64), np.zeros(3, dtype=np.uint8)
    patient = np.full(3, -1, dtype=np.int32)
    core.bind(device, user, t, reason, patient, bindings)
    assert patient.tolist() == [0, 1, 0]


def test_readings_of_a_rented_device_stay_with_the_patient_bound_at_t(store):
    for patient in ("A", "B"):
        store.add_patient(patient, now_ms=NOW)
    store.add_device("CUFF", "bp", now_ms=NOW)
    store.bind("CUFF", "A", 0, NOW - HOUR)
    store.bind("CUFF", "B", NOW - HOUR)
    store.commit_batch(np.concatenate([reading(Kind.BP, (120, 80), seq=1, t=NOW - 2 * HOUR, patient=0),
                                       reading(Kind.BP, (130, 85), seq=2, t=NOW - 60_000, patient=1)]), now_ms=NOW)
    assert [(r["patient"], r["seq"]) for r in store.readings("A")] == [("A", 1)]
    assert [(r["patient"], r["seq"]) for r in store.readings("B")] == [("B", 2)]
    assert [r["seq"] for r in store.readings(device="CUFF")] == [1, 2] and len(store.readings()) == 2
    assert store.readings("nobody") == [] and store.readings("A", device="CUFF", since=NOW - HOUR) == []


def test_registry_input_errors(store):
    with pytest.raises(RegistryError, match="BLE address") as info:
        store.add_device("bad/id", "bp")
    assert info.value.reason == "INVALID" and isinstance(info.value, ValueError)
    assert store.add_device("AA:BB:CC:DD:EE:FF", "glu") == 0
    with pytest.raises(RegistryError, match="already exists"):
        store.add_device("AA:BB:CC:DD:EE:FF", "glu")
    with pytest.raises(RegistryError, match="kind"):
        store.add_device("X", "scale")
    with pytest.raises(RegistryError, match="IANA"):
        store.add_patient("P", tz="Mars/Olympus")
    with pytest.raises(RegistryError, match="programmes"):
        store.add_patient("P", programmes=["XX"])
    with pytest.raises(RegistryError, match="add the staff member first"):
        store.add_patient("P", physician="doc")
    store.add_staff("doc", "Dr Who", "physician")
    assert store.add_patient("P", physician="doc", tz="Asia/Kolkata", now_ms=NOW) == 0
    assert store.tz_offsets().tolist() == [330]


def crisis_alert(rows, t=NOW - 60_000, late=False):
    return {"patient": 0, "rule": "BP_CRISIS", "t": t, "late": late, "values": {"sys": 185}, "rows": rows}


def test_one_open_alert_per_patient_and_rule_with_cooldown(store):
    registry(store, 1)
    store.add_staff("nurse1", "N", "nurse")
    first = store.commit_batch(reading(Kind.BP, (185, 95, np.nan, 80), seq=1), now_ms=NOW, alerts=[crisis_alert([0])])
    [alert] = first.alerts
    assert {k: alert[k] for k in ("patient", "rule", "severity", "route", "late", "readings", "state")} == {
        "patient": "P0", "rule": "BP_CRISIS", "severity": "emergency", "route": ["physician", "nurse"],
        "late": False, "readings": [1], "state": "open"}
    second = store.commit_batch(reading(Kind.BP, (190, 95, np.nan, 80), seq=2), now_ms=NOW + HOUR,
                                alerts=[crisis_alert([0])])
    assert second.alerts == [] and second.alerts_updated == 1
    store.acknowledge_alert(alert["id"], by="nurse1", at_ms=NOW + 2 * HOUR, note="called")
    third = store.commit_batch(reading(Kind.BP, (200, 95, np.nan, 80), seq=3), now_ms=NOW + HOUR + COOLDOWN_MS,
                               alerts=[crisis_alert([0])])
    [renotified] = third.alerts
    assert renotified["id"] == alert["id"] and renotified["readings"] == [1, 2, 3]
    assert renotified["state"] == "acknowledged"
    assert len(store.alerts()) == 1
    store.resolve_alert(alert["id"], by="nurse1", at_ms=NOW + 9 * HOUR)
    with pytest.raises(RegistryError, match="cannot become acknowledged") as info:
        store.acknowledge_alert(alert["id"], by="nurse1", at_ms=NOW + 9 * HOUR)
    assert info.value.reason == "STATE"
    fourth = store.commit_batch(reading(Kind.BP, (181, 95, np.nan, 80), seq=4), now_ms=NOW + 10 * HOUR,
                                alerts=[crisis_alert([0])])
    assert fourth.alerts[0]["id"] != alert["id"]
    assert [a["state"] for a in store.alerts()] == ["resolved", "open"]
    assert store.alerts_open() == {"emergency": 1}
    assert [(e["actor"], e["action"]) for e in store.alert_events(alert["id"])] == [
        ("gateway", "raised"), ("gateway", "updated"), ("nurse1", "acknowledged"), ("gateway", "renotified"),
        ("nurse1", "resolved")]
    with raw(store.path) as conn, pytest.raises(integrity_errors(), match="(?i)unique|alerts_one_open"):
        # the index itself refuses a second open one
        conn.execute("INSERT INTO alerts (patient, rule, severity, route, t, raised, updated, notified, late, "
                     "values_json) SELECT patient, rule, severity, route, t, raised, updated, notified, late, "
                     "values_json FROM alerts WHERE state = 'open'")


def test_late_alert_is_renotified_when_a_current_reading_confirms_it(store):
    registry(store, 1)
    store.commit_batch(reading(Kind.BP, (185, 95, np.nan, 80), seq=1), now_ms=NOW, alerts=[crisis_alert([0], late=True)])
    result = store.commit_batch(reading(Kind.BP, (186, 95, np.nan, 80), seq=2), now_ms=NOW + 1,
                                alerts=[crisis_alert([0])])
    assert [a["late"] for a in result.alerts] == [False]


def test_alert_of_a_redelivered_reading_is_dropped(store):
    registry(store, 1)
    batch = reading(Kind.BP, (185, 95, np.nan, 80), seq=1)
    store.commit_batch(batch, now_ms=NOW, alerts=[crisis_alert([0])])
    again = store.commit_batch(batch, now_ms=NOW + COOLDOWN_MS, alerts=[crisis_alert([0])])
    assert again.alerts == [] and again.alerts_updated == 0
    assert [e["action"] for e in store.alert_events(1)] == ["raised"]


def glucose_alert(rule, rows, glu):
    return {"patient": 0, "rule": rule, "t": NOW - 60_000, "late": False, "values": {"glu": glu}, "rows": rows}


def test_a_cooldown_never_hides_a_more_severe_rule(store):
    """GLU_LOW_L1 open and in its cooldown; a reading below 3.0 raises GLU_LOW_L2 at once."""
    registry(store, 1)
    first = store.commit_batch(reading(Kind.GLU, (3.5,), seq=1), now_ms=NOW,
                               alerts=[glucose_alert("GLU_LOW_L1", [0], 3.5)])
    again = store.commit_batch(reading(Kind.GLU, (3.6,), seq=2), now_ms=NOW + HOUR,
                               alerts=[glucose_alert("GLU_LOW_L1", [0], 3.6)])
    assert [a["rule"] for a in first.alerts] == ["GLU_LOW_L1"] and again.alerts == []
    severe = store.commit_batch(reading(Kind.GLU, (2.8,), seq=3), now_ms=NOW + HOUR + 1,
                                alerts=[glucose_alert("GLU_LOW_L2", [0], 2.8)])
    [alert] = severe.alerts
    assert (alert["rule"], alert["severity"], alert["route"], alert["readings"]) == (
        "GLU_LOW_L2", "emergency", ["physician", "nurse"], [3])
    assert {a["rule"]: a["state"] for a in store.alerts()} == {"GLU_LOW_L1": "open", "GLU_LOW_L2": "open"}


def raise_alert(store, patient, rule, at_ms):
    """Raise ``rule`` for patient index ``patient`` at ``at_ms`` as a sweep would (no reading)."""
    [alert] = store.commit_batch(core.empty_batch(0), now_ms=at_ms, alerts=[
        {"patient": patient, "rule": rule, "t": at_ms, "late": False, "values": {}}]).alerts
    return alert["id"]


def test_work_queues_by_role_and_by_staff_member(store):
    for staff_id, role in (("doc0", "physician"), ("doc1", "physician"), ("nurse1", "nurse"),
                           ("pa1", "personal_admin"), ("dev1", "device_admin"), ("head1", "head")):
        store.add_staff(staff_id, staff_id.upper(), role)
    store.add_patient("P0", physician="doc0", nurse="nurse1", personal_admin="pa1")
    store.add_patient("P1", physician="doc1", nurse="nurse1")
    low = raise_alert(store, 0, "BP_LOW", NOW)
    hypo = raise_alert(store, 1, "GLU_LOW_L2", NOW + 1)
    missed = raise_alert(store, 0, "MISSED", NOW + 2)
    crisis = raise_alert(store, 0, "BP_CRISIS", NOW + 3)
    device = raise_alert(store, 1, "DEVICE", NOW + 4)

    def ids(**query):
        return [a["id"] for a in store.alerts(**query)]

    assert ids() == [low, hypo, missed, crisis, device]  # a plain list: oldest first
    assert ids(role="physician") == [hypo, crisis, low]  # most severe first, then oldest
    assert ids(role="nurse") == [hypo, crisis]
    assert ids(staff="doc0") == [crisis, low]
    assert ids(staff="nurse1") == [hypo, crisis]
    assert ids(staff="pa1") == [missed]
    assert ids(staff="dev1") == [device]  # every device alert, whoever the patient
    assert ids(staff="doc0", severity="urgent") == [low]
    assert ids(role="physician", patient="P1") == [hypo]
    store.add_staff("nurse2", "N2", "nurse")
    store.resolve_alert(crisis, by="nurse2", at_ms=NOW + 5)
    assert ids(staff="doc0") == [low]  # a queue leaves resolved alerts out ...
    assert ids(staff="doc0", state="resolved") == [crisis]  # ... unless asked for them
    assert ids(state="open") == [low, hypo, missed, device]
    with pytest.raises(RegistryError, match="head, a role without an alert queue") as info:
        store.alerts(staff="head1")
    assert info.value.reason == "INVALID"
    with pytest.raises(RegistryError, match="'nobody' is not registered") as info:
        store.alerts(staff="nobody")
    assert info.value.reason == "UNKNOWN"


def test_lifecycle_errors_say_why_and_the_history_says_who_and_when(store):
    registry(store, 1)
    store.add_staff("nurse1", "N", "nurse")
    alert_id = raise_alert(store, 0, "BP_CRISIS", NOW)
    with pytest.raises(RegistryError, match="staff member 'ghost' is not registered") as info:
        store.acknowledge_alert(alert_id, by="ghost", at_ms=NOW + 1)
    assert (info.value.reason, info.value.value) == ("UNKNOWN", "ghost")
    with pytest.raises(RegistryError, match="alert 99 does not exist") as info:
        store.resolve_alert(99, by="nurse1", at_ms=NOW + 1)
    assert info.value.reason == "UNKNOWN"
    store.acknowledge_alert(alert_id, by="nurse1", at_ms=NOW + 60_000, note="calling the patient")
    with pytest.raises(RegistryError, match=r"already acknowledged \(by nurse1 at 2025-11-25T12:01:00Z\)") as info:
        store.acknowledge_alert(alert_id, by="nurse1", at_ms=NOW + 2)
    assert info.value.reason == "STATE"
    store.resolve_alert(alert_id, by="nurse1", at_ms=NOW + 120_000)
    with pytest.raises(RegistryError, match="already resolved .*cannot become resolved") as info:
        store.resolve_alert(alert_id, by="nurse1", at_ms=NOW + 3)
    assert info.value.reason == "STATE"
    shown = store.alert(alert_id)
    assert (shown["state"], shown["escalated"], shown["escalated_at"]) == ("resolved", 0, None)
    assert shown["events"] == [
        {"at": NOW, "actor": "gateway", "action": "raised", "note": None},
        {"at": NOW + 60_000, "actor": "nurse1", "action": "acknowledged", "note": "calling the patient"},
        {"at": NOW + 120_000, "actor": "nurse1", "action": "resolved", "note": None}]
    with pytest.raises(RegistryError, match="alert 99 does not exist"):
        store.alert(99)


def test_window_arrays_round_trip_and_replay(store):
    fleet = make_fleet(3_000, 20)
    for i in range(fleet.n_patients):
        store.add_patient(f"P{i}", tz="Europe/Moscow", now_ms=NOW)
    pipeline = Pipeline(core.compiled, n_patients=fleet.n_patients, tz_min=fleet.tz_min, bindings=fleet.bindings)
    head, tail = fleet.batch[:2_000].copy(), fleet.batch[2_000:].copy()
    pipeline.process(head, fleet.now_ms)
    first = store.commit_batch(head, now_ms=NOW, windows=pipeline.windows.arrays())
    arrays, through = store.load_windows()
    assert through == first.stored
    restored = WindowState.from_arrays(**arrays)
    assert np.array_equal(restored.arrays()["acc"], pipeline.windows.arrays()["acc"])
    assert restored.tz_min.tolist() == [180] * fleet.n_patients
    pipeline.process(tail, fleet.now_ms)
    second = store.commit_batch(tail, now_ms=NOW)
    replay, ids = store.readings_batch(after_id=through)
    assert len(ids) == second.stored
    restored.update(replay)
    assert np.array_equal(restored.arrays()["acc"], pipeline.windows.arrays()["acc"])
    dirty = np.unique(tail["patient"][tail["reason"] == Reason.OK][:10])
    store.save_windows({**pipeline.windows.arrays(), "patients": dirty})
    arrays, through = store.load_windows()
    assert through == first.stored + second.stored
    assert np.array_equal(arrays["acc"].reshape(20, -1)[dirty],
                          pipeline.windows.arrays()["acc"].reshape(20, -1)[dirty])


def test_locked_database_fails_the_commit_and_writes_nothing(tmp_path):
    path = tmp_path / "pmp.db"
    with Store.open(path, busy_timeout_ms=50) as store:
        registry(store, 1)
        other = sqlite3.connect(path, isolation_level=None)
        other.execute("BEGIN IMMEDIATE")
        with pytest.raises(StoreError, match="locked by another connection") as info:
            store.commit_batch(reading(Kind.BP, (120, 80, np.nan, 70)), now_ms=NOW)
        assert info.value.reason == "LOCKED"
        other.execute("ROLLBACK")
        other.close()
        assert store.readings("P0") == [] and store.counters()["received"] == 0
        assert store.commit_batch(reading(Kind.BP, (120, 80, np.nan, 70)), now_ms=NOW).stored == 1


def test_full_disk_rolls_the_whole_batch_back(tmp_path):
    path = tmp_path / "pmp.db"
    with Store.open(path) as store:
        registry(store, 1)
        pages = store._conn.execute("PRAGMA page_count").fetchone()[0]
        store._conn.execute(f"PRAGMA max_page_count = {pages + 3}")
        fleet = make_fleet(3_000, 1)
        batch = fleet.batch.copy()
        batch["reason"], batch["patient"] = Reason.OK, 0
        batch["device"] = 0
        batch["seq"] = np.arange(len(batch))
        with pytest.raises(StoreError, match="no space left for the database") as info:
            store.commit_batch(batch, now_ms=NOW, payloads=[b"x"], message=np.zeros(len(batch), dtype=np.int32))
        assert info.value.reason == "DISK_FULL"
        assert f"{path}: " in str(info.value) and "bytes free on its disk" in str(info.value)
        assert store.count_readings() == 0 and store.counters()["received"] == 0
        assert store.commit_batch(batch[:1], now_ms=NOW).stored == 1


def test_registry_version_notices_another_connection(db):
    with Store.open(db) as gateway, Store.open(db) as cli:
        before = gateway.registry_version()
        assert gateway.registry_version() == before
        cli.add_device("NEW", "cgm")
        assert gateway.registry_version() != before
        assert gateway.device_index() == {"NEW": 0}


def test_quarantine_keeps_one_payload_per_message_and_details(store):
    registry(store, 1)
    batch = np.concatenate([reading(Kind.BP, (20, 80, np.nan, 70), seq=s, reason=Reason.RANGE) for s in range(3)])
    batch["flags"][2] = Flag.HAS_SEQ  # no time
    store.commit_batch(batch, now_ms=NOW, payloads=[b"[...three maps...]"], message=np.zeros(3, dtype=np.int32),
                       element=np.arange(3, dtype=np.int32), details={1: "sys 20 mmHg below 40"})
    rows = store.quarantine(device="D0")
    assert [(q["reason"], q["element"], q["seq"], q["detail"]) for q in rows] == [
        ("RANGE", 0, 0, "implausible value"), ("RANGE", 1, 1, "sys 20 mmHg below 40"), ("RANGE", 2, 2,
                                                                                        "implausible value")]
    assert [q["t"] is None for q in rows] == [False, False, True]
    assert {q["payload"] for q in rows} == {b"[...three maps...]"}
    with raw(store.path) as conn:
        assert conn.execute("SELECT COUNT(*) FROM quarantine_payloads").fetchone()[0] == 1


def test_db_bytes_counts_the_file_and_its_wal(store):
    assert store.db_bytes() > 0


# -- registry ---------------------------------------------------------------------------


def audit_actions(store):
    return rows(store.path, "SELECT actor, action, subject FROM audit ORDER BY id")


def test_migration_3_admits_unknown_devices_and_keeps_devices_and_bindings(tmp_path):
    path = tmp_path / "v1.db"
    conn = v1_file(path)
    conn.execute("INSERT INTO devices VALUES ('D0', 0, 'bp', 5, 1)")
    conn.execute("INSERT INTO patients (id, idx, programmes, tz, utc_offset_min, created) "
                 "VALUES ('P0', 0, 'AH', 'UTC', 0, 0)")
    conn.execute("INSERT INTO bindings VALUES (7, 0, 2, 10, 20, 0, 3)")
    conn.commit()
    conn.close()
    with Store.open(path) as store:
        assert store.device("D0", at_ms=15) == {
            "id": "D0", "kind": "bp", "created": 1, "retired": 5, "patients": ["P0"],
            "bindings": [{"patient": "P0", "user": 2, "from": 10, "to": 20, "current": True}]}
        assert store.add_device("new-1", "unknown") == 1  # what the gateway does on first sight
        assert store.add_device("new-1", "glu") == 1  # a device administrator sets its kind
        with pytest.raises(RegistryError, match="already exists") as info:
            store.add_device("new-1", "cgm")
        assert info.value.reason == "EXISTS"
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA foreign_keys = ON")
    assert conn.execute("SELECT id FROM bindings").fetchall() == [(7,)]
    with pytest.raises(sqlite3.IntegrityError):  # bindings still reference devices
        conn.execute("INSERT INTO bindings (device, valid_from, patient, created) VALUES (9, 0, 0, 0)")
    conn.close()


def test_add_patients_is_all_or_nothing_and_rejects_each_bad_patient(store):
    store.add_staff("doc", "Dr A", "physician")
    store.add_patient("P0", now_ms=NOW)
    gateway = Store.open(store.path)  # sees the registry version move when another connection commits
    version = gateway.registry_version()
    patients = [
        {"id": "A", "programmes": ("AH", "DM2"), "physician": "doc", "tz": "Asia/Omsk",
         "targets": {"home_sys": 130, "home_dia": 80, "plan": {"bp": 1}}},
        {"id": "P0"},
        {"id": "B", "programmes": ("AH", "XX")},
        {"id": "C", "nurse": "nobody"},
        {"id": "D", "tz": "Mars/Olympus"},
        {"id": "E", "targets": {"home_sys": -1}},
        {"id": "F", "targets": {"plan": {"steps": 1}}},
        {"id": "G", "targets": {"colour": "red"}},
        {"id": "A"},
        {"id": "bad id"},
        {"id": "H", "programmes": ("DM1",)},
    ]
    result = store.add_patients(patients, now_ms=NOW)
    assert (result.valid, result.added) == (2, 0)
    assert [(r.index, r.reason, r.value) for r in result.rejected] == [
        (1, "EXISTS", "P0"), (2, "INVALID", "AH,XX"), (3, "UNKNOWN", "nobody"), (4, "INVALID", "Mars/Olympus"),
        (5, "INVALID", -1), (6, "INVALID", "steps"), (7, "INVALID", "colour"), (8, "EXISTS", "A"),
        (9, "INVALID", "bad id")]
    assert store.patient_index() == {"P0": 0} and gateway.registry_version() == version
    assert store.add_patients(patients, check_only=True, skip_bad=True, now_ms=NOW).added == 0
    skipped = store.add_patients(patients, skip_bad=True, source="cohort.csv", now_ms=NOW)
    assert (skipped.valid, skipped.added, len(skipped.rejected)) == (2, 2, 9)
    assert store.patient_index() == {"P0": 0, "A": 1, "H": 2} and gateway.registry_version() > version
    gateway.close()
    a = store.patient("A")
    assert (a["programmes"], a["physician"], a["utc_offset_min"], a["dispensary"]) == (["AH", "DM2"], "doc", 360,
                                                                                       True)
    assert a["targets"] == {"home_sys": 130, "home_dia": 80, "plan": {"bp": 1}}
    assert audit_actions(store)[-1] == ("cli", "patients.add", None)
    with pytest.raises(RegistryError, match="already exists") as info:
        store.add_patient("A")
    assert (info.value.reason, info.value.value) == ("EXISTS", "A")


def test_add_devices_registers_and_binds_in_one_call_and_rejects_each_bad_entry(store):
    store.add_patient("P0", now_ms=NOW)
    store.add_device("seen", "unknown", now_ms=NOW)  # registered by the gateway on first sight
    devices = [
        {"id": "D0", "kind": "bp", "patient": "P0", "from": NOW, "to": None, "user": None},
        {"id": "D0", "kind": "bp"},                                    # listed again without a binding
        {"id": "D0", "kind": "glu", "patient": "P0", "from": NOW + HOUR},  # listed again with another kind
        {"id": "D0", "kind": "bp", "patient": "P0", "from": NOW - HOUR, "to": NOW},  # its next binding
        {"id": "D1", "kind": "hub", "from": NOW},                      # from without a patient
        {"id": "D2", "kind": "unknown"},                               # the gateway's kind
        {"id": "seen", "kind": "cgm"},
        {"id": "D3", "kind": "glu", "patient": "P0", "user": 1},
    ]
    result = store.add_devices(devices, now_ms=NOW)
    assert (result.valid, result.added, result.bound) == (4, 0, 0)
    assert [(r.index, r.reason, r.value) for r in result.rejected] == [
        (1, "EXISTS", "D0"), (2, "EXISTS", "D0"), (4, "INVALID", NOW), (5, "INVALID", "unknown")]
    assert store.device_index() == {"seen": 0}
    done = store.add_devices(devices, skip_bad=True, source="devices.csv", now_ms=NOW)
    assert (done.valid, done.added, done.bound) == (4, 3, 3)
    assert store.device_index() == {"seen": 0, "D0": 1, "D3": 2} and store.device("seen")["kind"] == "cgm"
    assert [(b["patient"], b["from"], b["to"]) for b in store.device("D0")["bindings"]] == [
        ("P0", NOW - HOUR, NOW), ("P0", NOW, None)]
    assert store.device("D3")["bindings"][0]["user"] == 1
    assert audit_actions(store)[-1] == ("cli", "devices.add", None)


def test_thresholds_are_the_defaults_with_each_patients_targets(store):
    from core.rule_tables import THRESHOLDS, Param

    store.add_patient("A", targets={"crisis_sys": 170, "home_sys": 125.5, "plan": {"bp": 1}})
    store.add_patient("B")
    store.add_patient("C", targets={"tir_low": 4, "tir_high": 9})
    thresholds = store.thresholds()
    defaults = np.array(list(THRESHOLDS.values()))
    assert thresholds.shape == (3, len(THRESHOLDS)) and np.array_equal(thresholds[1], defaults)
    assert thresholds[0, Param.crisis_sys] == 170 and thresholds[0, Param.home_sys] == 125.5
    assert thresholds[0, Param.home_dia] == THRESHOLDS["home_dia"]
    assert (thresholds[2, Param.tir_low], thresholds[2, Param.tir_high]) == (4, 9)


def test_patient_and_device_queries(store):
    store.add_staff("doc", "Dr A", "physician")
    store.add_staff("pa", "P A", "personal_admin")
    store.add_patient("A", programmes=("AH",), physician="doc", personal_admin="pa")
    store.add_patient("B", programmes=("DM1", "DM2"), physician="doc")
    store.add_device("CUFF", "bp")
    store.add_device("GLU", "glu")
    store.bind("CUFF", "A", 0, 1_000)
    store.bind("CUFF", "B", 1_000)
    store.bind("GLU", "B", 0, user=1)
    assert [p["id"] for p in store.patients(programme="DM2")] == ["B"]
    assert [p["id"] for p in store.patients(programme="DM")] == []
    assert [p["id"] for p in store.patients(physician="doc")] == ["A", "B"]
    assert [p["id"] for p in store.patients(personal_admin="pa")] == ["A"]
    assert [p["id"] for p in store.patients(limit=1)] == ["A"]
    assert store.patient("B", at_ms=500)["bindings"] == [
        {"device": "GLU", "kind": "glu", "user": 1, "from": 0, "to": None, "current": True},
        {"device": "CUFF", "kind": "bp", "user": None, "from": 1_000, "to": None, "current": False}]
    assert [(d["id"], d["patients"]) for d in store.devices(at_ms=999)] == [("CUFF", ["A"]), ("GLU", ["B"])]
    assert [(d["id"], d["patients"]) for d in store.devices(at_ms=1_000, kind="bp")] == [("CUFF", ["B"])]
    assert [b["current"] for b in store.device("CUFF", at_ms=1_000)["bindings"]] == [False, True]
    assert [s["id"] for s in store.staff(role="physician")] == ["doc"] and len(store.staff()) == 2
    for call in (lambda: store.patient("nobody"), lambda: store.device("nothing")):
        with pytest.raises(RegistryError, match="not registered") as info:
            call()
        assert info.value.reason == "UNKNOWN"


def test_retire_ends_the_bindings_and_refuses_new_ones(store):
    store.add_patient("A")
    store.add_patient("B")
    store.add_device("CUFF", "bp")
    store.add_device("OLD", "glu")
    store.bind("CUFF", "A", 0, 1_000)
    store.bind("CUFF", "B", 1_000)
    store.bind("OLD", "A", 5_000)
    with pytest.raises(RegistryError, match="bound to patient 'A' from") as info:
        store.retire_device("OLD", 4_000)  # its binding would start after the retirement
    assert info.value.reason == "STATE"
    assert store.retire_device("CUFF", 3_000) == 1
    device = store.device("CUFF")
    assert device["retired"] == 3_000 and [b["to"] for b in device["bindings"]] == [1_000, 3_000]
    for call in (lambda: store.bind("CUFF", "A", 4_000), lambda: store.retire_device("CUFF", 5_000)):
        with pytest.raises(RegistryError, match="retired at") as info:
            call()
        assert info.value.reason == "RETIRED"
    device_idx = np.zeros(3, dtype=np.int32)
    t = np.array([999, 2_999, 3_000], dtype=np.int64)
    reason, patient = np.zeros(3, dtype=np.uint8), np.full(3, -1, dtype=np.int32)
    core.bind(device_idx, np.full(3, NO_USER, dtype=np.uint8), t, reason, patient, store.bindings())
    assert patient.tolist() == [0, 1, -1] and reason[2] == Reason.UNBOUND
    assert [a[1:] for a in audit_actions(store)][-1] == ("device.retire", "CUFF")


def test_unbind_names_the_patient_and_records_who(store):
    store.add_patient("A")
    store.add_device("CUFF", "bp")
    store.bind("CUFF", "A", 1_000, user=2)
    with pytest.raises(RegistryError, match="no binding that holds") as info:
        store.unbind("CUFF", 5_000)  # the any-slot binding: there is none
    assert info.value.reason == "UNKNOWN"
    with pytest.raises(RegistryError, match="no binding that holds"):
        store.unbind("CUFF", 1_000, user=2)  # it starts then: nothing to end
    assert store.unbind("CUFF", 5_000, user=2, actor="devadmin") == "A"
    assert store.device("CUFF")["bindings"][0]["to"] == 5_000
    assert [a for a in audit_actions(store) if a[1] in ("bind", "unbind")] == [("cli", "bind", "CUFF"),
                                                                               ("devadmin", "unbind", "CUFF")]
