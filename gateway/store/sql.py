"""Every SQL statement of the store, and the schema as numbered migrations (SQLite dialect).

The one place that speaks SQL: a PostgreSQL store would replace this module and keep
``gateway.store.store``. A migration is never edited once released; a change is a new number.
"""

# ---------------------------------------------------------------------------------------
# Schema: numbered migrations, applied in order on open, each in its own transaction.
# A migration is never edited once released; a change is a new number.
# ---------------------------------------------------------------------------------------


class PythonStep(str):
    """A migration step that SQL alone cannot do (packing BLOBs): ``gateway.store.store``
    runs the function of this name inside the migration's transaction."""


SCHEMA_TABLE = """CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied INTEGER NOT NULL)"""

MIGRATIONS: tuple[tuple[int, str, tuple[str, ...]], ...] = (
    (1, "registry, readings, quarantine, alerts, windows, counters", (
        # Small named integers: schema-independent marks and the gateway's counters.
        """CREATE TABLE kv (key TEXT PRIMARY KEY, value INTEGER NOT NULL)""",
        """CREATE TABLE staff (
            id TEXT PRIMARY KEY, name TEXT NOT NULL,
            role TEXT NOT NULL CHECK (role IN
                ('physician', 'nurse', 'device_admin', 'personal_admin', 'head', 'monitoring_admin')))""",
        """CREATE TABLE devices (
            id TEXT PRIMARY KEY, idx INTEGER NOT NULL UNIQUE,
            kind TEXT NOT NULL CHECK (kind IN ('bp', 'glu', 'cgm', 'hub')),
            retired INTEGER,                       -- ms UTC, NULL while in service
            created INTEGER NOT NULL)""",
        """CREATE TABLE patients (
            id TEXT PRIMARY KEY, idx INTEGER NOT NULL UNIQUE,
            programmes TEXT NOT NULL,              -- comma-separated: AH, DM1, DM2
            dispensary INTEGER NOT NULL DEFAULT 1, -- under dispensary observation
            tz TEXT NOT NULL, utc_offset_min INTEGER NOT NULL,
            physician TEXT REFERENCES staff (id), nurse TEXT REFERENCES staff (id),
            personal_admin TEXT REFERENCES staff (id),
            targets TEXT NOT NULL DEFAULT '{}',    -- JSON: THRESHOLDS names -> value, plan
            created INTEGER NOT NULL)""",
        """CREATE TABLE bindings (
            id INTEGER PRIMARY KEY,
            device INTEGER NOT NULL REFERENCES devices (idx),
            user_slot INTEGER CHECK (user_slot BETWEEN 0 AND 254),  -- NULL = any slot
            valid_from INTEGER NOT NULL, valid_to INTEGER,          -- [from, to), NULL = open
            patient INTEGER NOT NULL REFERENCES patients (idx),
            created INTEGER NOT NULL,
            CHECK (valid_to IS NULL OR valid_to > valid_from))""",
        """CREATE INDEX bindings_device ON bindings (device, user_slot, valid_from)""",
        # No foreign keys on the hot tables: the core only produces registered indexes,
        # and a per-row parent lookup would cost throughput.
        """CREATE TABLE readings (
            id INTEGER PRIMARY KEY,
            device INTEGER NOT NULL, patient INTEGER NOT NULL, seq INTEGER,
            t INTEGER NOT NULL, rx INTEGER NOT NULL, type TEXT NOT NULL,
            sys REAL, dia REAL, map REAL, pul REAL, glu REAL, glu_range TEXT, trend REAL, quality REAL,
            flags INTEGER NOT NULL, status INTEGER NOT NULL, unit_in TEXT, user_slot INTEGER,
            meal TEXT, battery REAL,
            fingerprint INTEGER NOT NULL, dedup_tag INTEGER NOT NULL, dedup_key INTEGER NOT NULL,
            extra TEXT,                            -- JSON of kind-specific values (EXTRA_FIELDS)
            UNIQUE (device, dedup_tag, dedup_key))""",
        """CREATE INDEX readings_patient_t ON readings (patient, t)""",
        """CREATE TABLE quarantine_payloads (
            id INTEGER PRIMARY KEY, topic TEXT, rx INTEGER NOT NULL, data BLOB NOT NULL)""",
        """CREATE TABLE quarantine (
            id INTEGER PRIMARY KEY,
            device INTEGER,                        -- registry idx, NULL when unknown
            reason TEXT NOT NULL, detail TEXT, type TEXT, seq INTEGER, t INTEGER, rx INTEGER NOT NULL,
            payload INTEGER REFERENCES quarantine_payloads (id), element INTEGER,
            replayed INTEGER)                      -- ms UTC of the replay, NULL until then""",
        """CREATE INDEX quarantine_device ON quarantine (device, reason)""",
        """CREATE TABLE alerts (
            id INTEGER PRIMARY KEY,
            patient INTEGER NOT NULL REFERENCES patients (idx),
            rule TEXT NOT NULL, severity TEXT NOT NULL, route TEXT NOT NULL,  -- route: JSON list
            t INTEGER NOT NULL,                    -- measurement time of the latest occurrence
            raised INTEGER NOT NULL, updated INTEGER NOT NULL, notified INTEGER NOT NULL,
            late INTEGER NOT NULL, values_json TEXT NOT NULL,
            state TEXT NOT NULL DEFAULT 'open' CHECK (state IN ('open', 'acknowledged', 'resolved')),
            escalated INTEGER NOT NULL DEFAULT 0, escalated_at INTEGER,
            occurrences INTEGER NOT NULL DEFAULT 1)""",
        """CREATE UNIQUE INDEX alerts_one_open ON alerts (patient, rule) WHERE state != 'resolved'""",
        """CREATE INDEX alerts_state ON alerts (state, severity)""",
        """CREATE TABLE alert_readings (
            alert INTEGER NOT NULL REFERENCES alerts (id), reading INTEGER NOT NULL,
            PRIMARY KEY (alert, reading))""",
        """CREATE TABLE alert_events (
            id INTEGER PRIMARY KEY, alert INTEGER NOT NULL REFERENCES alerts (id),
            at INTEGER NOT NULL, actor TEXT NOT NULL,  -- 'gateway' or a staff id
            action TEXT NOT NULL, note TEXT)""",
        """CREATE INDEX alert_events_alert ON alert_events (alert)""",
        # One row per patient: float64 little-endian [N_METRICS, RING_DAYS, N_ACC] (core.windows).
        """CREATE TABLE windows (patient INTEGER PRIMARY KEY, acc BLOB NOT NULL)""",
    )),
    # Fewer columns in the hot insert: SQLite's and the sqlite3 module's cost grows with the
    # number of bound values (24 -> 13 columns took executemany from 5.9 to 3.2 us a row in
    # memory, both indexes kept). Columns remain for what queries filter or aggregate on;
    # what only audits and replays read (arrival time, seq, status, input unit, user slot,
    # meal, battery, every value of the record) is one fixed-layout BLOB, ``detail``
    # (``gateway.store.store.DETAIL_DTYPE``).
    # One random-order index, not two: each index dirties about one page per distinct key
    # prefix in a batch, written to the WAL at every commit; the (patient, t) index halved
    # the rows/s (bench/store_insert_ceiling.py: 100k -> 187k rows/s without it, batches of
    # 5,000). A patient's readings are found through the devices ever bound to them (the
    # device prefix of the UNIQUE key) and filtered by the stored patient.
    (2, "readings: query columns plus a fixed-layout detail BLOB", (
        """CREATE TABLE readings_v2 (
            id INTEGER PRIMARY KEY,
            device INTEGER NOT NULL, patient INTEGER NOT NULL,
            t INTEGER NOT NULL, type TEXT NOT NULL,
            sys REAL, dia REAL, pul REAL, glu REAL,  -- canonical: mmHg, beats/min, mmol/L
            flags INTEGER NOT NULL,                  -- core.codes.Flag (RANGE_LO/HI: censored glu)
            dedup_tag INTEGER NOT NULL, dedup_key INTEGER NOT NULL, fingerprint INTEGER NOT NULL,
            detail BLOB NOT NULL,                    -- DETAIL_DTYPE, little-endian
            UNIQUE (device, dedup_tag, dedup_key))""",
        PythonStep("readings_v1_to_v2"),
        """DROP TABLE readings""",
        """ALTER TABLE readings_v2 RENAME TO readings""",
        # The last stats JSON of each gateway, so ``pmpgw status`` can show it after a stop.
        """CREATE TABLE gateway_stats (gw TEXT PRIMARY KEY, stats TEXT NOT NULL, saved INTEGER NOT NULL)""",
    )),
    (3, "operators: audit trail, protocols, replay requests", (
        # Who changed what outside ingestion (registry, replay with a time shift, retire ...).
        """CREATE TABLE audit (
            id INTEGER PRIMARY KEY, at INTEGER NOT NULL,  -- ms UTC
            actor TEXT NOT NULL,                       -- a staff id, 'cli' or 'gateway'
            action TEXT NOT NULL, subject TEXT,        -- e.g. 'quarantine.replay', 'D17'
            detail TEXT)                               -- JSON""",
        """CREATE INDEX audit_subject ON audit (subject, at)""",
        # Final remote-monitoring protocols issued (the programme's indicator counts them).
        """CREATE TABLE protocols (
            id INTEGER PRIMARY KEY, patient INTEGER NOT NULL REFERENCES patients (idx),
            period_from INTEGER NOT NULL, period_to INTEGER NOT NULL,  -- ms UTC, [from, to)
            issued INTEGER NOT NULL, issued_by TEXT,
            content TEXT NOT NULL)                     -- JSON of the protocol""",
        """CREATE INDEX protocols_patient ON protocols (patient, issued)""",
        # Quarantine replays asked for by the CLI while a gateway runs; its writer runs them.
        """CREATE TABLE replay_requests (
            id INTEGER PRIMARY KEY, requested INTEGER NOT NULL, actor TEXT NOT NULL,
            device TEXT, reason TEXT, shift_ms INTEGER NOT NULL DEFAULT 0,
            done INTEGER, result TEXT)                 -- done ms UTC and result JSON, NULL until run""",
    )),
)

# Measured with bench/store_insert_ceiling.py: a batch dirties about one leaf page per
# distinct device in the random-order UNIQUE index, so what counts is how often those
# pages are written back: checkpointing every ~40 MiB of WAL instead of SQLite's 4 MiB gave
# +30 % rows/s. 1 KiB pages were slower than 4 KiB (66k vs 100k rows/s, v2 schema with
# both indexes, batches of 5,000).
PRAGMAS_NEW_DB = ("PRAGMA page_size = 4096",)
PRAGMAS = ("PRAGMA journal_mode = WAL", "PRAGMA foreign_keys = ON", "PRAGMA cache_size = -131072",
           "PRAGMA wal_autocheckpoint = 10000")

READING_COLUMNS = ("device", "patient", "t", "type", "sys", "dia", "pul", "glu", "flags", "dedup_tag", "dedup_key",
                   "fingerprint", "detail")
_READING_VALUES = f"({', '.join('?' * len(READING_COLUMNS))})"


def insert_readings(rows: int) -> str:
    """INSERT of ``rows`` readings in one statement (multi-row VALUES: a quarter less CPU a
    row than executemany of one row); a reading whose dedup key is stored is skipped."""
    return (f"INSERT INTO readings ({', '.join(READING_COLUMNS)}) VALUES {', '.join([_READING_VALUES] * rows)} "
            "ON CONFLICT (device, dedup_tag, dedup_key) DO NOTHING")


INSERT_CHUNK_ROWS = 200  # readings a multi-row INSERT holds (13 * 200 values; SQLite allows 32,766)
INSERT_READING = insert_readings(1)
INSERT_READINGS_CHUNK = insert_readings(INSERT_CHUNK_ROWS)
MAX_READING_ID = "SELECT COALESCE(MAX(id), 0) FROM readings"
READING_BY_KEY = "SELECT id, fingerprint FROM readings WHERE device = ? AND dedup_tag = ? AND dedup_key = ?"
SELECT_KEYS = "SELECT device, dedup_tag, dedup_key, fingerprint, t FROM readings WHERE t >= ?"
SELECT_READINGS_BATCH = "SELECT id, device, patient, t, type, flags, fingerprint, detail FROM readings WHERE id > ? ORDER BY id LIMIT ?"
SELECT_READINGS = """WITH wanted (device) AS (
        SELECT idx FROM devices WHERE :patient IS NULL AND (:device IS NULL OR id = :device)
        UNION SELECT b.device FROM bindings b JOIN patients bp ON bp.idx = b.patient WHERE bp.id = :patient)
    SELECT r.id, d.id, p.id, r.t, r.type, r.sys, r.dia, r.pul, r.glu, r.flags, r.detail
    FROM wanted w JOIN readings r ON r.device = w.device
    JOIN devices d ON d.idx = r.device JOIN patients p ON p.idx = r.patient
    WHERE (:patient IS NULL OR p.id = :patient) AND (:device IS NULL OR d.id = :device)
      AND r.t >= :since AND r.t < :until ORDER BY r.t, r.id LIMIT :limit"""

INSERT_PAYLOAD = "INSERT INTO quarantine_payloads (topic, rx, data) VALUES (?, ?, ?)"
INSERT_QUARANTINE = ("INSERT INTO quarantine (device, reason, detail, type, seq, t, rx, payload, element) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)")
SELECT_QUARANTINE = """SELECT q.id, d.id, q.reason, q.detail, q.type, q.seq, q.t, q.rx, q.element, q.replayed,
    qp.topic, qp.data
    FROM quarantine q LEFT JOIN devices d ON d.idx = q.device
    LEFT JOIN quarantine_payloads qp ON qp.id = q.payload
    WHERE (:device IS NULL OR d.id = :device) AND (:reason IS NULL OR q.reason = :reason)
    ORDER BY q.id LIMIT :limit"""
SELECT_QUARANTINE_KEYS = ("id", "device", "reason", "detail", "type", "seq", "t", "rx", "element", "replayed",
                          "topic", "payload")

SELECT_OPEN_ALERT = ("SELECT id, notified, late FROM alerts "
                     "WHERE patient = ? AND rule = ? AND state != 'resolved'")
INSERT_ALERT = ("INSERT INTO alerts (patient, rule, severity, route, t, raised, updated, notified, late, values_json) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
UPDATE_ALERT = ("UPDATE alerts SET t = ?, updated = ?, notified = ?, late = ?, values_json = ?, severity = ?, "
                "route = ?, occurrences = occurrences + 1 WHERE id = ?")
INSERT_ALERT_READING = "INSERT INTO alert_readings (alert, reading) VALUES (?, ?) ON CONFLICT DO NOTHING"
INSERT_ALERT_EVENT = "INSERT INTO alert_events (alert, at, actor, action, note) VALUES (?, ?, ?, ?, ?)"
SELECT_ALERTS = """SELECT a.id, p.id, a.rule, a.severity, a.route, a.t, a.raised, a.late, a.values_json,
    a.state, a.escalated, a.occurrences
    FROM alerts a JOIN patients p ON p.idx = a.patient
    WHERE (:id IS NULL OR a.id = :id) AND (:patient IS NULL OR p.id = :patient)
      AND (:state IS NULL OR a.state = :state) AND (:severity IS NULL OR a.severity = :severity)
    ORDER BY a.id LIMIT :limit"""
SELECT_ALERT_READINGS = "SELECT reading FROM alert_readings WHERE alert = ? ORDER BY reading"
SELECT_ALERT_STATE = "SELECT state FROM alerts WHERE id = ?"
SET_ALERT_STATE = "UPDATE alerts SET state = ?, updated = ? WHERE id = ?"
SELECT_ALERT_EVENTS = "SELECT at, actor, action, note FROM alert_events WHERE alert = ? ORDER BY id"
COUNT_OPEN_ALERTS = "SELECT severity, COUNT(*) FROM alerts WHERE state != 'resolved' GROUP BY severity"

UPSERT_GATEWAY_STATS = ("INSERT INTO gateway_stats (gw, stats, saved) VALUES (?, ?, ?) "
                        "ON CONFLICT (gw) DO UPDATE SET stats = excluded.stats, saved = excluded.saved")
SELECT_GATEWAY_STATS = "SELECT stats, saved FROM gateway_stats ORDER BY saved DESC"

ADD_COUNTER = "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = value + excluded.value"
SET_KV = "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
SELECT_KV = "SELECT key, value FROM kv"
GET_KV = "SELECT value FROM kv WHERE key = ?"
ACK_KEY_PREFIX = "ack."
REGISTRY_VERSION_KEY = "registry_version"
WINDOWS_THROUGH_KEY = "windows_through_reading"

UPSERT_WINDOW = "INSERT INTO windows (patient, acc) VALUES (?, ?) ON CONFLICT (patient) DO UPDATE SET acc = excluded.acc"
SELECT_WINDOWS = "SELECT patient, acc FROM windows WHERE patient < ?"

NEXT_DEVICE_IDX = "SELECT COALESCE(MAX(idx) + 1, 0) FROM devices"
NEXT_PATIENT_IDX = "SELECT COALESCE(MAX(idx) + 1, 0) FROM patients"
INSERT_DEVICE = "INSERT INTO devices (id, idx, kind, created) VALUES (?, ?, ?, ?)"
INSERT_PATIENT = ("INSERT INTO patients (id, idx, programmes, dispensary, tz, utc_offset_min, physician, nurse, "
                  "personal_admin, targets, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
INSERT_STAFF = "INSERT INTO staff (id, name, role) VALUES (?, ?, ?)"
SELECT_STAFF = "SELECT 1 FROM staff WHERE id = ?"
DEVICE_IDX = "SELECT idx FROM devices WHERE id = ?"
PATIENT_IDX = "SELECT idx FROM patients WHERE id = ?"
ALL_DEVICES = "SELECT id, idx FROM devices"
ALL_PATIENTS = "SELECT id, idx FROM patients"
PATIENT_OFFSETS = "SELECT idx, utc_offset_min FROM patients"
OVERLAPPING_BINDING = """SELECT b.id, p.id, b.valid_from, b.valid_to FROM bindings b JOIN patients p ON p.idx = b.patient
    WHERE b.device = ? AND b.user_slot IS ? AND b.valid_from < ? AND (b.valid_to IS NULL OR b.valid_to > ?)"""
INSERT_BINDING = ("INSERT INTO bindings (device, user_slot, valid_from, valid_to, patient, created) "
                  "VALUES (?, ?, ?, ?, ?, ?)")
OPEN_BINDING_AT = ("SELECT id, valid_from FROM bindings WHERE device = ? AND user_slot IS ? "
                   "AND valid_from < ? AND (valid_to IS NULL OR valid_to > ?)")
CLOSE_BINDING = "UPDATE bindings SET valid_to = ? WHERE id = ?"
ALL_BINDINGS = "SELECT device, user_slot, valid_from, valid_to, patient FROM bindings"

# Migration 2's PythonStep: v1 readings in id order, written to readings_v2 with their ids.
SELECT_V1_READINGS = """SELECT id, device, patient, seq, t, rx, type, sys, dia, map, pul, glu, trend, quality, flags,
    status, unit_in, user_slot, meal, battery, fingerprint, dedup_tag, dedup_key, extra FROM readings WHERE id > ?
    ORDER BY id LIMIT ?"""
INSERT_V2_READING = (f"INSERT INTO readings_v2 (id, {', '.join(READING_COLUMNS)}) "
                     f"VALUES (?, {', '.join('?' * len(READING_COLUMNS))})")
