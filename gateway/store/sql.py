"""Every SQL statement of the store, and the schema as numbered migrations (SQLite dialect).

The one place that speaks SQL. The PostgreSQL store (``gateway.store.pg``) runs these same
statements, translated once each (placeholders, a few functions), except the few that
``gateway.store.sql_pg`` writes again, and its own DDL of the same migrations. Statements
here keep to what both dialects accept where that costs SQLite nothing (``:flag = 1`` for a
flag parameter, ``SUM(CASE ...)``, a table-qualified column in an upsert).
"""

from core.window_layout import RING_DAYS

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
        # One row per patient: float64 little-endian [N_METRICS, RING_DAYS, N_ACC] (core.window_layout).
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
        # Registry: the gateway registers a publisher it has never seen with kind 'unknown',
        # which migration 1's CHECK refused. SQLite cannot change a CHECK in place: devices
        # is rebuilt, and bindings (which references it) with it, rows and ids kept; bindings
        # gains an index by patient (``patients show``, a patient's devices).
        """CREATE TABLE bindings_v2 AS SELECT * FROM bindings""",
        """DROP TABLE bindings""",
        """CREATE TABLE devices_v3 (
            id TEXT PRIMARY KEY, idx INTEGER NOT NULL UNIQUE,
            kind TEXT NOT NULL CHECK (kind IN ('bp', 'glu', 'cgm', 'hub', 'unknown')),
            retired INTEGER,                       -- ms UTC, NULL while in service
            created INTEGER NOT NULL)""",
        """INSERT INTO devices_v3 (id, idx, kind, retired, created)
            SELECT id, idx, kind, retired, created FROM devices""",
        """DROP TABLE devices""",
        """ALTER TABLE devices_v3 RENAME TO devices""",
        """CREATE TABLE bindings (
            id INTEGER PRIMARY KEY,
            device INTEGER NOT NULL REFERENCES devices (idx),
            user_slot INTEGER CHECK (user_slot BETWEEN 0 AND 254),  -- NULL = any slot
            valid_from INTEGER NOT NULL, valid_to INTEGER,          -- [from, to), NULL = open
            patient INTEGER NOT NULL REFERENCES patients (idx),
            created INTEGER NOT NULL,
            CHECK (valid_to IS NULL OR valid_to > valid_from))""",
        """INSERT INTO bindings (id, device, user_slot, valid_from, valid_to, patient, created)
            SELECT id, device, user_slot, valid_from, valid_to, patient, created FROM bindings_v2""",
        """DROP TABLE bindings_v2""",
        """CREATE INDEX bindings_device ON bindings (device, user_slot, valid_from)""",
        """CREATE INDEX bindings_patient ON bindings (patient, valid_from)""",
        # Reports: a patient's alerts of a period (the protocol) without scanning every alert.
        """CREATE INDEX alerts_patient ON alerts (patient, raised)""",
        # Status: not-resolved alerts by severity with the oldest, and the open DEVICE alerts,
        # from this index alone (no scan of the alerts table, resolved ones included).
        """CREATE INDEX alerts_open_summary ON alerts (state, severity, raised, rule)""",
        # Sweeps (gateway.activity): what the MISSED and DEVICE sweeps know of each device and
        # patient, saved with the window state; NULL = never. rejects / clock_faults: 50-bit
        # registers of the device's last counted readings, newest in bit 0.
        """CREATE TABLE device_activity (
            device INTEGER PRIMARY KEY,           -- registry idx
            last_rx INTEGER,                      -- ms UTC of the last row received from it
            battery REAL,                         -- last battery percent reported
            battery_low INTEGER NOT NULL,         -- its latest reading had the meter's battery-low status
            rejects INTEGER NOT NULL, clock_faults INTEGER NOT NULL,
            counted INTEGER NOT NULL,             -- readings in the registers, 0..50
            reset_at INTEGER)                     -- ms UTC of the last staff resolution of its DEVICE task""",
        """CREATE TABLE patient_activity (
            patient INTEGER PRIMARY KEY,          -- registry idx
            last_bp INTEGER, last_glu INTEGER, last_cgm INTEGER)  -- t (ms UTC) of the last valid reading""",
        # Sweeps: task resolutions since a time, without scanning every resolved alert.
        """CREATE INDEX alerts_tasks_resolved ON alerts (updated) WHERE state = 'resolved' AND severity = 'task'""",
    )),
    # Broker accounts (gateway.broker_accounts): a device's or hub's MQTT password, as
    # mosquitto_passwd's hash; no row = no account (never issued, or revoked by retire).
    (4, "broker accounts of devices, hubs and dashboards", (
        """CREATE TABLE broker_accounts (
            device INTEGER PRIMARY KEY REFERENCES devices (idx),
            password_hash TEXT NOT NULL,               -- $7$101$salt$hash (Mosquitto 2.0)
            issued INTEGER NOT NULL)                   -- ms UTC""",
        # Clinicians' dashboards: read alerts and the gateways' state and stats.
        """CREATE TABLE dashboard_accounts (
            name TEXT PRIMARY KEY,                     -- user name pmpgw-dash-{name}
            password_hash TEXT NOT NULL, issued INTEGER NOT NULL)""",
    )),
    # Acks of gateways sharing a database (``pmpgw run --shared``, each message to one of
    # them): the sequence numbers committed above a publisher's ack, by whichever gateway,
    # until the contiguous run reaches them (Store._advance_acks); the ack itself is the kv row.
    (5, "sequence numbers committed above each publisher's ack", (
        """CREATE TABLE ack_seqs (
            ack TEXT NOT NULL,                         -- the publisher's ack key in kv: ack.dev.{id}, ack.hub.{id}
            seq INTEGER NOT NULL,                      -- a committed seq (device) or hseq (hub) above the ack
            PRIMARY KEY (ack, seq)) WITHOUT ROWID""",
    )),
    # Window state of gateways sharing the store (``pmpgw run --shared``,
    # gateway.shared_windows): the daily accumulators of core.window_layout (Acc.N ..
    # Acc.N_IN) per (patient, metric, local day), which each batch ADDS to for the readings
    # it stored, and the (patient, local day) closes claimed, so one gateway evaluates each.
    (6, "shared window state: daily sums and day closes", (
        """CREATE TABLE window_days (
            patient INTEGER NOT NULL, metric INTEGER NOT NULL,   -- core.window_layout.Metric
            day INTEGER NOT NULL,                                -- local day, days since 1970-01-01
            n REAL NOT NULL, n_valued REAL NOT NULL, sum0 REAL NOT NULL, sum1 REAL NOT NULL,
            n_below_l2 REAL NOT NULL, n_below REAL NOT NULL, n_in REAL NOT NULL,
            PRIMARY KEY (patient, metric, day)) WITHOUT ROWID""",
        """CREATE INDEX window_days_day ON window_days (day)""",
        """CREATE TABLE window_closes (
            patient INTEGER NOT NULL, day INTEGER NOT NULL,      -- the local day that closed
            closed INTEGER NOT NULL,                             -- ms UTC
            PRIMARY KEY (patient, day)) WITHOUT ROWID""",
        """CREATE INDEX window_closes_day ON window_closes (day)""",
    )),
)

# Measured with bench/store_insert_ceiling.py: a batch dirties about one leaf page per
# distinct device in the random-order UNIQUE index, so what counts is how often those
# pages are written back: checkpointing every ~40 MiB of WAL instead of SQLite's 4 MiB gave
# +30 % rows/s. 1 KiB pages were slower than 4 KiB (66k vs 100k rows/s, v2 schema with
# both indexes, batches of 5,000).
PAGE_SIZE = 4096
WAL_AUTOCHECKPOINT_PAGES = 10_000
PRAGMAS_NEW_DB = (f"PRAGMA page_size = {PAGE_SIZE}",)
PRAGMAS = ("PRAGMA journal_mode = WAL", "PRAGMA foreign_keys = ON", "PRAGMA cache_size = -131072",
           f"PRAGMA wal_autocheckpoint = {WAL_AUTOCHECKPOINT_PAGES}")
# While the database's disk has less free than WAL_HEADROOM_BYTES the store checkpoints
# after every write transaction (PASSIVE: never waits for readers) and SQLite cuts the WAL
# file back to TIGHT_WAL_BYTES when it restarts it (Store._mind_the_wal).
CHECKPOINT = "PRAGMA wal_checkpoint(PASSIVE)"
JOURNAL_SIZE_LIMIT = "PRAGMA journal_size_limit = {limit}"  # bytes; -1: no limit (SQLite's default)

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
# Each device's highest dedup key of another tag than the one given (the fingerprint tag:
# seq and context-seq keys) among readings measured before a time.
SELECT_SEQ_BEFORE = "SELECT device, MAX(dedup_key) FROM readings WHERE dedup_tag != ? AND t < ? GROUP BY device"
# The stored keys among a JSON array of [device, dedup_tag, dedup_key] triples: one search
# of the UNIQUE index per triple (the array is the outer loop), one statement however many.
SELECT_STORED_KEYS = """SELECT r.device, r.dedup_tag, r.dedup_key, r.fingerprint, r.t
    FROM json_each(?) AS k JOIN readings AS r
    ON r.device = k.value ->> 0 AND r.dedup_tag = k.value ->> 1 AND r.dedup_key = k.value ->> 2"""
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
      AND NOT (:pending = 1 AND q.replayed IS NOT NULL)
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
SELECT_ALERT_READINGS = "SELECT reading FROM alert_readings WHERE alert = ? ORDER BY reading"
SELECT_ALERT_STATE = "SELECT state FROM alerts WHERE id = ?"
SET_ALERT_STATE = "UPDATE alerts SET state = ?, updated = ? WHERE id = ?"
SELECT_ALERT_EVENTS = "SELECT at, actor, action, note FROM alert_events WHERE alert = ? ORDER BY id"
COUNT_OPEN_ALERTS = ("SELECT severity, COUNT(*) FROM alerts WHERE state IN ('open', 'acknowledged') "
                     "GROUP BY severity")  # IN, not !=: the (state, severity) index serves it

UPSERT_GATEWAY_STATS = ("INSERT INTO gateway_stats (gw, stats, saved) VALUES (?, ?, ?) "
                        "ON CONFLICT (gw) DO UPDATE SET stats = excluded.stats, saved = excluded.saved")
SELECT_GATEWAY_STATS = "SELECT stats, saved FROM gateway_stats ORDER BY saved DESC"

ADD_COUNTER = "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = kv.value + excluded.value"
SET_KV = "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value"
SELECT_KV = "SELECT key, value FROM kv"
GET_KV = "SELECT value FROM kv WHERE key = ?"
ACK_KEY_PREFIX = "ack."
# Shared acks (Store.commit_batch's ack_seqs), in one write transaction, each statement
# taking one JSON array parameter (a batch's publishers in a few statements, whatever their
# number):
# - NEW_ACKS ([[key, start], ...], in key order): a publisher first seen gets an ack row at
#   its lowest seq in the batch - 1 (its run starts there);
# - LOCK_ACKS ([key, ...]) reads the acks; on PostgreSQL it locks their rows (ORDER BY key
#   FOR UPDATE, sql_pg), so two gateways advancing one publisher take turns, in one order
#   (no deadlock), and the second sees the first's seqs;
# - SELECT_ACK_SEQS ([key, ...]) the seqs committed above those acks (held by a gap);
# - the store advances each ack over the contiguous run (``gateway.acks.ContiguousAcks``),
#   then SET_ACKS ([[key, ack], ...]) those that moved, INSERT_ACK_SEQS ([[key, seq], ...])
#   the batch's seqs still above a gap, and DELETE_ACKED_SEQS ([key, ...]) the held seqs
#   now at or below the ack. In the common case (no gap) only the acks are written.
_ACK_PAIRS = "SELECT json_extract(value, '$[0]') AS k, json_extract(value, '$[1]') AS v FROM json_each(?) WHERE true"
NEW_ACKS = f"INSERT INTO kv (key, value) {_ACK_PAIRS} ORDER BY 1 ON CONFLICT (key) DO NOTHING"
LOCK_ACKS = "SELECT key, value FROM kv WHERE key IN (SELECT value FROM json_each(?))"
SELECT_ACK_SEQS = "SELECT ack, seq FROM ack_seqs WHERE ack IN (SELECT value FROM json_each(?))"
SET_ACKS = f"INSERT INTO kv (key, value) {_ACK_PAIRS} ON CONFLICT (key) DO UPDATE SET value = excluded.value"
INSERT_ACK_SEQS = f"INSERT INTO ack_seqs (ack, seq) {_ACK_PAIRS} ON CONFLICT DO NOTHING"
DELETE_ACKED_SEQS = """DELETE FROM ack_seqs WHERE ack IN (SELECT value FROM json_each(?))
    AND seq <= (SELECT value FROM kv WHERE kv.key = ack_seqs.ack)"""
REGISTRY_VERSION_KEY = "registry_version"
ACCOUNTS_VERSION_KEY = "broker_accounts_version"  # bumped by every account issued or revoked
WINDOWS_THROUGH_KEY = "windows_through_reading"

UPSERT_WINDOW = "INSERT INTO windows (patient, acc) VALUES (?, ?) ON CONFLICT (patient) DO UPDATE SET acc = excluded.acc"
SELECT_WINDOWS = "SELECT patient, acc FROM windows WHERE patient < ?"

# Shared window state (migration 6). Sums are added in (patient, metric, day) order, and
# closes claimed in patient order, so that two gateways' transactions never wait for each
# other in a cycle. (ring) is RING_DAYS - 1: a close reads the ring's days ending with it.
DAY_SUM_COLUMNS = ("n", "n_valued", "sum0", "sum1", "n_below_l2", "n_below", "n_in")  # Acc.N .. Acc.N_IN
ADD_DAY_SUMS = f"""INSERT INTO window_days (patient, metric, day, {', '.join(DAY_SUM_COLUMNS)})
    VALUES ({', '.join(['?'] * (3 + len(DAY_SUM_COLUMNS)))})
    ON CONFLICT (patient, metric, day) DO UPDATE SET
    {', '.join(f'{c} = window_days.{c} + excluded.{c}' for c in DAY_SUM_COLUMNS)}"""
CLAIM_DAY_CLOSES = f"""INSERT INTO window_closes (patient, day, closed)
    SELECT c.value ->> 0, c.value ->> 1, ? FROM json_each(?) AS c
    WHERE EXISTS (SELECT 1 FROM window_days AS w WHERE w.patient = c.value ->> 0
                  AND w.day BETWEEN (c.value ->> 1) - {RING_DAYS - 1} AND c.value ->> 1)
    ORDER BY 1 ON CONFLICT (patient, day) DO NOTHING RETURNING patient, day"""
SELECT_DAY_SUMS = f"""SELECT w.patient, w.metric, w.day, {', '.join(f'w.{c}' for c in DAY_SUM_COLUMNS)}
    FROM json_each(?) AS c JOIN window_days AS w
    ON w.patient = c.value ->> 0 AND w.day BETWEEN (c.value ->> 1) - {RING_DAYS - 1} AND c.value ->> 1"""
DAY_SUMS_SEEDED_KEY = "window_days_seeded"  # kv: ms UTC the first shared gateway seeded the sums
CLAIM_KV = "INSERT INTO kv (key, value) VALUES (?, ?) ON CONFLICT (key) DO NOTHING RETURNING key"
PRUNE_DAY_SUMS = "DELETE FROM window_days WHERE day < ?"
PRUNE_DAY_CLOSES = "DELETE FROM window_closes WHERE day < ?"

NEXT_DEVICE_IDX = "SELECT COALESCE(MAX(idx) + 1, 0) FROM devices"
NEXT_PATIENT_IDX = "SELECT COALESCE(MAX(idx) + 1, 0) FROM patients"
INSERT_DEVICE = "INSERT INTO devices (id, idx, kind, created) VALUES (?, ?, ?, ?)"
INSERT_PATIENT = ("INSERT INTO patients (id, idx, programmes, dispensary, tz, utc_offset_min, physician, nurse, "
                  "personal_admin, targets, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)")
INSERT_STAFF = "INSERT INTO staff (id, name, role) VALUES (?, ?, ?)"
SELECT_STAFF = "SELECT 1 FROM staff WHERE id = ?"
PATIENT_IDX = "SELECT idx FROM patients WHERE id = ?"
ALL_DEVICES = "SELECT id, idx FROM devices"
DEVICE_KINDS_OF_ALL = "SELECT id, kind FROM devices"
ALL_PATIENTS = "SELECT id, idx FROM patients"
PATIENT_OFFSETS = "SELECT idx, utc_offset_min FROM patients"
OVERLAPPING_BINDING = """SELECT b.id, p.id, b.valid_from, b.valid_to FROM bindings b JOIN patients p ON p.idx = b.patient
    WHERE b.device = ? AND b.user_slot IS ? AND b.valid_from < ? AND (b.valid_to IS NULL OR b.valid_to > ?)"""
INSERT_BINDING = ("INSERT INTO bindings (device, user_slot, valid_from, valid_to, patient, created) "
                  "VALUES (?, ?, ?, ?, ?, ?)")
OPEN_BINDING_AT = ("SELECT b.id, p.id FROM bindings b JOIN patients p ON p.idx = b.patient WHERE b.device = ? "
                   "AND b.user_slot IS ? AND b.valid_from < ? AND (b.valid_to IS NULL OR b.valid_to > ?)")
CLOSE_BINDING = "UPDATE bindings SET valid_to = ? WHERE id = ?"
ALL_BINDINGS = "SELECT device, user_slot, valid_from, valid_to, patient FROM bindings"

# Migration 2's PythonStep: v1 readings in id order, written to readings_v2 with their ids.
SELECT_V1_READINGS = """SELECT id, device, patient, seq, t, rx, type, sys, dia, map, pul, glu, trend, quality, flags,
    status, unit_in, user_slot, meal, battery, fingerprint, dedup_tag, dedup_key, extra FROM readings WHERE id > ?
    ORDER BY id LIMIT ?"""
INSERT_V2_READING = (f"INSERT INTO readings_v2 (id, {', '.join(READING_COLUMNS)}) "
                     f"VALUES (?, {', '.join('?' * len(READING_COLUMNS))})")

# ---------------------------------------------------------------------------------------
# Alert lifecycle: the alert JSON, work queues, history, escalation.
# ---------------------------------------------------------------------------------------

ALERT_KEYS = ("id", "patient", "rule", "severity", "route", "t", "raised", "late", "values", "state", "escalated",
              "escalated_at", "occurrences")  # the columns of SELECT_ALERT and SELECT_ALERTS, in order
_ALERT_COLUMNS = """a.id, p.id, a.rule, a.severity, a.route, a.t, a.raised, a.late, a.values_json, a.state,
    a.escalated, a.escalated_at, a.occurrences FROM alerts a JOIN patients p ON p.idx = a.patient"""
SELECT_ALERT = f"SELECT {_ALERT_COLUMNS} WHERE a.id = ?"
# Every filter is optional (NULL = any). A work queue (:queue = 1) leaves resolved alerts out
# unless :state names a state, and orders by severity (:severity_order, ",emergency,urgent,...,")
# before age; a plain list is oldest first. :role keeps alerts whose route holds the role;
# :physician, :nurse, :personal_admin keep alerts of the patients of that staff member.
SELECT_ALERTS = f"""SELECT {_ALERT_COLUMNS}
    WHERE (:patient IS NULL OR p.id = :patient)
      AND (a.state = :state OR :state IS NULL AND NOT (:queue = 1 AND a.state = 'resolved'))
      AND (:severity IS NULL OR a.severity = :severity)
      AND (:role IS NULL OR EXISTS (SELECT 1 FROM json_each(a.route) WHERE value = :role))
      AND (:physician IS NULL OR p.physician = :physician) AND (:nurse IS NULL OR p.nurse = :nurse)
      AND (:personal_admin IS NULL OR p.personal_admin = :personal_admin)
    ORDER BY CASE WHEN :queue = 1 THEN instr(:severity_order, ',' || a.severity || ',') ELSE 0 END, a.raised, a.id
    LIMIT :limit"""
SELECT_STAFF_ROLE = "SELECT role FROM staff WHERE id = ?"
SELECT_LAST_ALERT_EVENT = ("SELECT at, actor FROM alert_events WHERE alert = ? AND action = ? "
                           "ORDER BY id DESC LIMIT 1")
SELECT_ESCALATION_CANDIDATES = ("SELECT id, notified, escalated, escalated_at FROM alerts "
                                "WHERE state = ? AND severity = ? ORDER BY id")
ESCALATE_ALERT = "UPDATE alerts SET escalated = ?, escalated_at = ?, updated = ? WHERE id = ?"

# ---------------------------------------------------------------------------------------
# Registry: patients, staff, devices, bindings, and the audit trail of their changes.
# ---------------------------------------------------------------------------------------

INSERT_AUDIT = "INSERT INTO audit (at, actor, action, subject, detail) VALUES (?, ?, ?, ?, ?)"
# Which of the ids in a JSON array (one parameter, any length) are registered.
PATIENT_IDS_AMONG = "SELECT id FROM patients WHERE id IN (SELECT value FROM json_each(?))"
STAFF_IDS_AMONG = "SELECT id FROM staff WHERE id IN (SELECT value FROM json_each(?))"
SELECT_STAFF_LIST = "SELECT id, name, role FROM staff WHERE (:role IS NULL OR role = :role) ORDER BY id LIMIT :limit"
PATIENT_KEYS = ("id", "programmes", "dispensary", "tz", "utc_offset_min", "physician", "nurse", "personal_admin",
                "targets", "created")  # the columns of SELECT_PATIENT and SELECT_PATIENTS, in order
_PATIENT_COLUMNS = ("idx, id, programmes, dispensary, tz, utc_offset_min, physician, nurse, personal_admin, targets, "
                    "created FROM patients")
SELECT_PATIENT = f"SELECT {_PATIENT_COLUMNS} WHERE id = ?"
# Filters optional (NULL = any); :programme matches one item of the comma-separated list.
SELECT_PATIENTS = f"""SELECT {_PATIENT_COLUMNS}
    WHERE (:programme IS NULL OR instr(',' || programmes || ',', ',' || :programme || ',') > 0)
      AND (:physician IS NULL OR physician = :physician) AND (:nurse IS NULL OR nurse = :nurse)
      AND (:personal_admin IS NULL OR personal_admin = :personal_admin)
    ORDER BY idx LIMIT :limit"""
# (patient idx, name, value) of every number in the patients' targets JSON (not the plan).
PATIENT_NUMBER_TARGETS = """SELECT p.idx, t.key, t.value FROM patients p, json_each(p.targets) t
    WHERE p.targets != '{}' AND t.type IN ('integer', 'real')"""
PATIENT_BINDINGS = """SELECT d.id, d.kind, b.user_slot, b.valid_from, b.valid_to FROM bindings b
    JOIN devices d ON d.idx = b.device WHERE b.patient = ? ORDER BY b.valid_from, b.id"""
DEVICE_ROW = "SELECT idx, kind, retired, created FROM devices WHERE id = ?"
# Each device with the patients bound to it at :at (comma-separated, NULL when none).
SELECT_DEVICES = """SELECT d.id, d.kind, d.created, d.retired,
    (SELECT group_concat(p.id, ',') FROM bindings b JOIN patients p ON p.idx = b.patient
     WHERE b.device = d.idx AND b.valid_from <= :at AND (b.valid_to IS NULL OR b.valid_to > :at))
    FROM devices d WHERE (:kind IS NULL OR d.kind = :kind) ORDER BY d.idx LIMIT :limit"""
DEVICE_BINDINGS = """SELECT p.id, b.user_slot, b.valid_from, b.valid_to FROM bindings b
    JOIN patients p ON p.idx = b.patient WHERE b.device = ? ORDER BY b.valid_from, b.id"""
SET_DEVICE_KIND = "UPDATE devices SET kind = ? WHERE idx = ?"
RETIRE_DEVICE = "UPDATE devices SET retired = ? WHERE idx = ?"
UPSERT_ACCOUNT = ("INSERT INTO broker_accounts (device, password_hash, issued) VALUES (?, ?, ?) "
                  "ON CONFLICT (device) DO UPDATE SET password_hash = excluded.password_hash, issued = excluded.issued")
DELETE_ACCOUNT = "DELETE FROM broker_accounts WHERE device = ?"
SELECT_ACCOUNTS = """SELECT d.id, d.kind, a.password_hash FROM broker_accounts a JOIN devices d ON d.idx = a.device
    ORDER BY d.idx"""
UPSERT_DASHBOARD = ("INSERT INTO dashboard_accounts (name, password_hash, issued) VALUES (?, ?, ?) "
                    "ON CONFLICT (name) DO UPDATE SET password_hash = excluded.password_hash, issued = excluded.issued")
DELETE_DASHBOARD = "DELETE FROM dashboard_accounts WHERE name = ?"
SELECT_DASHBOARDS = "SELECT name, password_hash, issued FROM dashboard_accounts ORDER BY name"
BINDING_FROM = """SELECT p.id, b.valid_from FROM bindings b JOIN patients p ON p.idx = b.patient
    WHERE b.device = ? AND b.valid_from >= ? ORDER BY b.valid_from LIMIT 1"""
CLOSE_BINDINGS_AT = ("UPDATE bindings SET valid_to = :at WHERE device = :device AND valid_from < :at "
                     "AND (valid_to IS NULL OR valid_to > :at)")

# ---------------------------------------------------------------------------------------
# Reports: a patient's remote-monitoring protocol, and the programme's coverage indicator.
# ---------------------------------------------------------------------------------------

REPORT_PATIENT = """SELECT p.idx, p.id, p.programmes, p.dispensary, p.tz, p.targets,
    p.physician, ph.name, p.nurse, nu.name, p.personal_admin, pa.name
    FROM patients p LEFT JOIN staff ph ON ph.id = p.physician LEFT JOIN staff nu ON nu.id = p.nurse
    LEFT JOIN staff pa ON pa.id = p.personal_admin WHERE p.id = ?"""
# Every device ever bound to the patient (a reading belongs to the patient bound at its t).
REPORT_DEVICES = "SELECT idx, id FROM devices WHERE idx IN (SELECT device FROM bindings WHERE patient = ?)"
# Found through those devices (the device prefix of the readings' UNIQUE index), then
# filtered by the stored patient and the period; glucose context records are not readings.
REPORT_READINGS = """SELECT id, t, device, type, sys, dia, pul, glu, flags FROM readings
    WHERE device IN (SELECT device FROM bindings WHERE patient = :patient)
      AND patient = :patient AND t >= :since AND t < :until AND type IN ('bp', 'glu', 'cgm')"""
REPORT_BINDINGS = """SELECT d.id, d.kind, d.retired, b.user_slot, b.valid_from, b.valid_to FROM bindings b
    JOIN devices d ON d.idx = b.device
    WHERE b.patient = :patient AND b.valid_from < :until AND (b.valid_to IS NULL OR b.valid_to > :since)
    ORDER BY d.id, b.valid_from"""
# Alerts raised in the period, or measured in it (a late upload's alert is raised after it),
# each with its history (one row per event, actor's name when a staff member).
REPORT_ALERTS = """SELECT a.id, a.rule, a.severity, a.t, a.raised, a.late, a.state, a.escalated, a.escalated_at,
    a.occurrences, e.at, e.actor, s.name, e.action, e.note
    FROM alerts a LEFT JOIN alert_events e ON e.alert = a.id LEFT JOIN staff s ON s.id = e.actor
    WHERE a.patient = :patient AND (a.raised >= :since AND a.raised < :until OR a.t >= :since AND a.t < :until)
    ORDER BY a.raised, a.id, e.id"""
INSERT_PROTOCOL = ("INSERT INTO protocols (patient, period_from, period_to, issued, issued_by, content) "
                   "VALUES (?, ?, ?, ?, ?, ?)")
# The indicator's cohort: under dispensary observation in a programme (AH, DM1, DM2),
# registered by :as_of. Covered: a final protocol issued in [:since, :as_of). Equipped: a
# measuring device (not a hub, not retired) bound at :as_of.
_COHORT = """dispensary = 1 AND created <= :as_of AND (instr(',' || programmes || ',', ',AH,') > 0
    OR instr(',' || programmes || ',', ',DM1,') > 0 OR instr(',' || programmes || ',', ',DM2,') > 0)"""
_COVERED = "idx IN (SELECT patient FROM protocols WHERE issued >= :since AND issued < :as_of)"
_EQUIPPED = """idx IN (SELECT b.patient FROM bindings b JOIN devices d ON d.idx = b.device
    WHERE b.valid_from <= :as_of AND (b.valid_to IS NULL OR b.valid_to > :as_of) AND d.kind != 'hub'
      AND (d.retired IS NULL OR d.retired > :as_of))"""
COVERAGE_GROUPS = f"""SELECT physician, personal_admin, programmes, COUNT(*),
    SUM(CASE WHEN {_COVERED} THEN 1 ELSE 0 END), SUM(CASE WHEN {_EQUIPPED} THEN 0 ELSE 1 END)
    FROM patients WHERE {_COHORT} GROUP BY physician, personal_admin, programmes"""
COVERAGE_NO_DEVICE = f"""SELECT id, physician, personal_admin FROM patients WHERE {_COHORT} AND NOT {_EQUIPPED}
    ORDER BY personal_admin, id LIMIT :limit"""
COVERAGE_STAFF = "SELECT id, name, role FROM staff WHERE role IN ('physician', 'personal_admin') ORDER BY id"

# ---------------------------------------------------------------------------------------
# Quarantine replay (gateway.replay) and the status view (gateway.status_cli).
# ---------------------------------------------------------------------------------------

# Rows a replay takes, a chunk at a time in id order: not replayed yet, with a raw payload.
SELECT_REPLAY_CANDIDATES = """SELECT id, payload, element, reason, t, seq FROM quarantine
    WHERE id > :after AND replayed IS NULL AND payload IS NOT NULL AND element IS NOT NULL
      AND (:device IS NULL OR device = :device) AND (:reason IS NULL OR reason = :reason)
    ORDER BY id LIMIT :limit"""
SELECT_REPLAY_CANDIDATE_KEYS = ("id", "payload", "element", "reason", "t", "seq")
SELECT_PAYLOAD = "SELECT topic, rx, data FROM quarantine_payloads WHERE id = ?"
SELECT_QUARANTINE_REASON = "SELECT reason FROM quarantine WHERE id = ?"
SET_QUARANTINE_REPLAYED = "UPDATE quarantine SET replayed = ? WHERE id = ?"
SET_QUARANTINE_REASON = "UPDATE quarantine SET reason = ?, detail = ? WHERE id = ?"
SET_AUDIT_DETAIL = "UPDATE audit SET detail = ? WHERE id = ?"
AUDIT_KEYS = ("id", "at", "actor", "action", "subject", "detail")
SELECT_AUDIT = f"""SELECT {', '.join(AUDIT_KEYS)} FROM audit WHERE (:action IS NULL OR action = :action)
    ORDER BY id DESC LIMIT :limit"""
INSERT_REPLAY_REQUEST = ("INSERT INTO replay_requests (requested, actor, device, reason, shift_ms) "
                         "VALUES (?, ?, ?, ?, ?)")
REPLAY_REQUEST_KEYS = ("id", "requested", "actor", "device", "reason", "shift_ms", "done", "result")
SELECT_REPLAY_REQUEST = f"SELECT {', '.join(REPLAY_REQUEST_KEYS)} FROM replay_requests WHERE id = ?"
SELECT_PENDING_REPLAY_REQUEST = (f"SELECT {', '.join(REPLAY_REQUEST_KEYS)} FROM replay_requests "
                                 "WHERE done IS NULL ORDER BY id LIMIT 1")
FINISH_REPLAY_REQUEST = "UPDATE replay_requests SET done = ?, result = ? WHERE id = ?"

# Both read the index alerts_open_summary only (plus the rows of open DEVICE alerts).
OPEN_ALERTS_SUMMARY = """SELECT severity, COUNT(*), MIN(raised) FROM alerts
    WHERE state IN ('open', 'acknowledged') GROUP BY severity"""
COUNT_SILENT_DEVICES = """SELECT COUNT(DISTINCT d.key) FROM alerts a, json_each(a.values_json, '$.devices') d
    WHERE a.state IN ('open', 'acknowledged') AND a.rule = 'DEVICE'
      AND EXISTS (SELECT 1 FROM json_each(d.value) WHERE value = 'silent')"""

# ---------------------------------------------------------------------------------------
# Sweeps: activity state (gateway.activity) and the MISSED / DEVICE tasks (gateway.sweeps).
# ---------------------------------------------------------------------------------------



def _latest(table: str, column: str) -> str:
    """``column = `` the later of the stored and the new time (NULL: never), in either
    dialect (SQLite's max() of a NULL is NULL): a time saved by another gateway sharing the
    store is kept, and one gateway's times only grow anyway."""
    return (f"{column} = CASE WHEN excluded.{column} IS NULL OR {table}.{column} > excluded.{column} "
            f"THEN {table}.{column} ELSE excluded.{column} END")


UPSERT_DEVICE_ACTIVITY = f"""INSERT INTO device_activity
    (device, last_rx, battery, battery_low, rejects, clock_faults, counted, reset_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (device) DO UPDATE SET {_latest("device_activity", "last_rx")}, battery = excluded.battery,
      battery_low = excluded.battery_low, rejects = excluded.rejects, clock_faults = excluded.clock_faults,
      counted = excluded.counted, reset_at = excluded.reset_at"""
UPSERT_PATIENT_ACTIVITY = f"""INSERT INTO patient_activity (patient, last_bp, last_glu, last_cgm) VALUES (?, ?, ?, ?)
    ON CONFLICT (patient) DO UPDATE SET
      {', '.join(_latest("patient_activity", column) for column in ("last_bp", "last_glu", "last_cgm"))}"""
SELECT_DEVICE_ACTIVITY = ("SELECT device, last_rx, battery, battery_low, rejects, clock_faults, counted, reset_at "
                          "FROM device_activity")
SELECT_PATIENT_ACTIVITY = "SELECT patient, last_bp, last_glu, last_cgm FROM patient_activity"
ACTIVITY_THROUGH_KEY = "activity_through_reading"
SWEEP_PATIENTS = "SELECT idx, programmes, dispensary, targets, created FROM patients"
SWEEP_DEVICES = "SELECT idx, id, kind, retired FROM devices"
# Sweep tasks are the only alerts of severity 'task' (core.rule_tables.RULES: MISSED, DEVICE).
SELECT_OPEN_TASKS = ("SELECT id, patient, rule, state, notified, values_json FROM alerts "
                     "WHERE state != 'resolved' AND severity = 'task'")
# INDEXED BY: without statistics the planner prefers alerts_open_summary's two equalities,
# which scan every resolved task ever; the partial index reads only those resolved since.
SELECT_TASK_RESOLUTIONS = """SELECT a.patient, a.rule, e.at, e.actor FROM alerts a INDEXED BY alerts_tasks_resolved
    JOIN alert_events e ON e.alert = a.id AND e.action = 'resolved'
    WHERE a.state = 'resolved' AND a.severity = 'task' AND a.updated > ?"""
RESOLVE_TASK = "UPDATE alerts SET state = 'resolved', updated = ? WHERE id = ? AND state != 'resolved'"

# ---------------------------------------------------------------------------------------
# Device import (Store.add_devices): what the registry holds of a file's devices and
# patients, each asked once with the ids as one JSON array parameter (any length).
# ---------------------------------------------------------------------------------------

DEVICES_AMONG = "SELECT id, idx, kind, retired FROM devices WHERE id IN (SELECT value FROM json_each(?))"
PATIENT_IDX_AMONG = "SELECT id, idx FROM patients WHERE id IN (SELECT value FROM json_each(?))"
# The bindings of the devices whose indexes are in the array, with their patients' ids.
BINDINGS_OF_DEVICES = """SELECT b.device, b.user_slot, b.valid_from, b.valid_to, p.id FROM bindings b
    JOIN patients p ON p.idx = b.patient WHERE b.device IN (SELECT value FROM json_each(?))"""
