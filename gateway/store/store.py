"""The Store: the one interface between the gateway and its database (SQLite in WAL mode).

Everything the gateway keeps across restarts goes through ``Store``: the registry
(devices, patients, staff, bindings), readings, quarantine, alerts and their history,
window state and the gateway's counters. All SQL lives in ``gateway.store.sql``, as
constants and the numbered migrations; nothing sqlite-specific leaves this package (callers get ints, floats, str, bytes,
dicts and numpy arrays), so PostgreSQL can take its place behind the same methods.

Invariants the database enforces (DESIGN.md "Persistence"), not memory:

- one reading per dedup key: ``UNIQUE (device, dedup_tag, dedup_key)`` on readings, the
  key of ``core.dedup.key_of`` (seq, context seq, or fingerprint); a redelivered reading's
  insert is a no-op (``ON CONFLICT DO NOTHING``);
- one not-resolved alert per (patient, rule): a partial UNIQUE index;
- a batch is ONE transaction (``BEGIN IMMEDIATE`` ... ``COMMIT``): readings, quarantine,
  alerts, window state and counters of a batch are all written or none is.

Conventions of the stored data:

- devices and patients are referenced by their registry index ``idx`` (the core's int32
  device / patient index: dense, 0-based, never reused), not by their text id; queries join
  the text ids back;
- times are int64 ms UTC; values canonical (mmHg, mmol/L, beats/min); absent = NULL;
- uint64 columns (``fingerprint``, ``dedup_key``) are stored as the int64 of the same 64
  bits (two's complement) because SQL integers are signed; ``dedup_keys`` turns them back;
- text codes: reading ``type`` (bp, glu, cgm, glu_context), reason names of
  ``core.codes.Reason``, rule names of ``core.rules.Rule``, unit names of ``UNIT_NAMES``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import re
import sqlite3
import time
import zoneinfo
from collections.abc import Iterator, Mapping, Sequence
from typing import Literal, NotRequired, TypedDict

import numpy as np

from core.bind import BINDING_DTYPE, OPEN_END, Bindings
from core.codes import NO_USER, UNIT_NAMES, Flag, Kind, Reason
from core.dedup import KEY_DTYPE, TAG_CONTEXT_SEQ, TAG_FINGERPRINT, TAG_SEQ
from core.layout import empty_batch
from core.rules import SEVERITY_RANK, Rule, severity_and_route
from core.windows import N_ACC, N_METRICS, RING_DAYS, WindowState

from .sql import (
    SCHEMA_TABLE,
    MIGRATIONS,
    PRAGMAS_NEW_DB,
    PRAGMAS,
    PythonStep,
    READING_COLUMNS,
    INSERT_CHUNK_ROWS,
    INSERT_READING,
    INSERT_READINGS_CHUNK,
    MAX_READING_ID,
    READING_BY_KEY,
    SELECT_KEYS,
    SELECT_READINGS_BATCH,
    SELECT_READINGS,
    INSERT_PAYLOAD,
    INSERT_QUARANTINE,
    SELECT_QUARANTINE,
    SELECT_QUARANTINE_KEYS,
    SELECT_OPEN_ALERT,
    INSERT_ALERT,
    UPDATE_ALERT,
    INSERT_ALERT_READING,
    INSERT_ALERT_EVENT,
    SELECT_ALERTS,
    SELECT_ALERT_READINGS,
    SELECT_ALERT_STATE,
    SET_ALERT_STATE,
    SELECT_ALERT_EVENTS,
    COUNT_OPEN_ALERTS,
    UPSERT_GATEWAY_STATS,
    SELECT_GATEWAY_STATS,
    ADD_COUNTER,
    SET_KV,
    SELECT_KV,
    GET_KV,
    ACK_KEY_PREFIX,
    REGISTRY_VERSION_KEY,
    WINDOWS_THROUGH_KEY,
    UPSERT_WINDOW,
    SELECT_WINDOWS,
    NEXT_DEVICE_IDX,
    NEXT_PATIENT_IDX,
    INSERT_DEVICE,
    INSERT_PATIENT,
    INSERT_STAFF,
    SELECT_STAFF,
    DEVICE_IDX,
    PATIENT_IDX,
    ALL_DEVICES,
    ALL_PATIENTS,
    PATIENT_OFFSETS,
    OVERLAPPING_BINDING,
    INSERT_BINDING,
    OPEN_BINDING_AT,
    CLOSE_BINDING,
    ALL_BINDINGS,
    SELECT_V1_READINGS,
    INSERT_V2_READING,
)

Synchronous = Literal["FULL", "NORMAL"]


# ---------------------------------------------------------------------------------------
# Code tables: how core codes are spelled in the database.
# ---------------------------------------------------------------------------------------

KIND_TYPES: dict[Kind, str | None] = {Kind.NONE: None, Kind.BP: "bp", Kind.GLU: "glu", Kind.CGM: "cgm",
                                      Kind.GLU_CONTEXT: "glu_context"}
TYPE_KINDS: dict[str, Kind] = {name: kind for kind, name in KIND_TYPES.items() if name}
# Meal codes: the Bluetooth SIG 0x2A34 Meal field (reading maps use the same codes).
MEALS: dict[int, str] = {1: "pre", 2: "post", 3: "fasting", 4: "casual", 5: "bedtime"}
RANGE_NAMES: dict[int, str | None] = {0: None, int(Flag.RANGE_LO): "LO", int(Flag.RANGE_HI): "HI"}
# The ``detail`` BLOB of a stored reading (schema v2): the fields of its core record that no
# query filters on, and every value, packed little-endian without padding (69 octets).
# Changing it is a migration.
DETAIL_DTYPE = np.dtype([("rx", "<i8"), ("v", "<f8", (4,)), ("seq", "<u4"), ("status", "<u4"), ("unit_in", "u1"),
                         ("user", "u1"), ("aux", "u1", (10,)), ("meal", "u1"), ("battery", "<f8")])
DETAIL_RECORD_FIELDS = ("rx", "v", "seq", "status", "unit_in", "user", "aux")  # copied from READING_DTYPE
# Schema v1 kept kind-specific values in a JSON column ``extra``: v[0..3] and aux[0..9]
# names; None = not kept there. Read only by migration 2.
EXTRA_FIELDS: dict[Kind, tuple[tuple[str | None, ...], tuple[str | None, ...]]] = {
    Kind.GLU: ((None, None, None, None), ("sample_type", "sample_location")),
    Kind.CGM: ((None, None, None, "time_offset_min"), ()),
    Kind.GLU_CONTEXT: (("carbohydrate_kg", "medication", "hba1c_pct", "exercise_s"),
                       ("carbohydrate_id", "meal", "tester", "health", "exercise_pct", "medication_id")),
}
# "unknown": registered by the gateway on first sight of an unregistered publisher (its
# readings are UNBOUND until a device administrator sets its kind and binds it).
DEVICE_KINDS = ("bp", "glu", "cgm", "hub", "unknown")
PROGRAMMES = ("AH", "DM1", "DM2")
STAFF_ROLES = ("physician", "nurse", "device_admin", "personal_admin", "head", "monitoring_admin")
# Default quarantine detail per reason, when the caller gives none.
REASON_DETAILS: dict[Reason, str] = {
    Reason.DECODE: "payload or GATT value could not be decoded",
    Reason.SCHEMA: "field missing, of the wrong type, or unknown type/unit",
    Reason.TOPIC: "topic malformed or device id invalid",
    Reason.RANGE: "implausible value",
    Reason.NOTNUM: "value is NaN, infinite or a SFLOAT special",
    Reason.FUTURE: "measured more than 5 minutes ahead of gateway time",
    Reason.STALE: "measured more than 400 days ago or before 2015",
    Reason.UNBOUND: "no patient bound to the device (and user slot) at t",
    Reason.CONFLICT: "same device and seq as a stored reading, other values",
}
ALERT_TRANSITIONS: dict[str, tuple[str, ...]] = {"acknowledged": ("open",), "resolved": ("open", "acknowledged")}
COOLDOWN_MS = 6 * 3_600_000  # DESIGN.md: an open alert is updated, re-notified after this
GATEWAY_ACTOR = "gateway"
DEFAULT_BUSY_TIMEOUT_MS = 5_000

_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_BLE_ID = re.compile(r"(?:[0-9A-F]{2}:){5}[0-9A-F]{2}")
_TYPE_NAMES = np.array([KIND_TYPES.get(k) for k in range(256)], dtype=object)
_ACC_SHAPE = (N_METRICS, RING_DAYS, N_ACC)
_ACC_BYTES = N_METRICS * RING_DAYS * N_ACC * 8

# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------

_SQLITE_REASONS: dict[str, tuple[str, str]] = {
    "SQLITE_BUSY": ("LOCKED", "the database is locked by another connection; nothing was written: "
                              "retry, or stop the process holding it (busy timeout {timeout} ms)"),
    "SQLITE_LOCKED": ("LOCKED", "the database is locked; nothing was written: retry"),
    "SQLITE_FULL": ("FULL", "the disk or database is full; nothing was written: free space, then retry"),
    "SQLITE_IOERR": ("IO", "I/O error on the database file; nothing was written: check the disk"),
    "SQLITE_CORRUPT": ("CORRUPT", "the database file is corrupt: restore it from a backup"),
    "SQLITE_NOTADB": ("CORRUPT", "the file is not an SQLite database: check --db"),
    "SQLITE_READONLY": ("READONLY", "the database is read-only: check file permissions"),
    "SQLITE_CANTOPEN": ("CANTOPEN", "cannot open the database file: check the path and its directory"),
}


class StoreError(Exception):
    """Raised by ``Store`` when the database refuses an operation; nothing of it was written.

    ``reason`` says why: LOCKED, FULL, IO, CORRUPT, READONLY, CANTOPEN, SCHEMA (the file
    is newer than this code), DB (anything else). LOCKED and FULL are worth a retry later.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class RegistryError(StoreError, ValueError):
    """Bad input to a registry or alert-lifecycle call; nothing was written.

    ``reason``: INVALID (malformed id, kind, role, programme, zone or interval), EXISTS
    (the id is taken), UNKNOWN (no such device, patient, staff member or alert),
    OVERLAP (the device and user slot are already bound for part of the interval),
    STATE (alert transition not allowed from its current state).
    """


def _store_error(error: sqlite3.Error, timeout_ms: int) -> StoreError:
    name = getattr(error, "sqlite_errorname", "") or ""
    base = "_".join(name.split("_")[:2])  # SQLITE_IOERR_WRITE -> SQLITE_IOERR
    reason, text = _SQLITE_REASONS.get(name) or _SQLITE_REASONS.get(base) or ("DB", "database error")
    return StoreError(reason, f"{text.format(timeout=timeout_ms)} ({name or type(error).__name__}: {error})")


# ---------------------------------------------------------------------------------------
# Values crossing the interface
# ---------------------------------------------------------------------------------------


class AlertIn(TypedDict):
    """An alert to raise in ``commit_batch``.

    ``patient`` registry index; ``rule`` a ``core.rules.Rule`` name; ``t`` measurement ms
    UTC; ``late`` measured > 24 h before arrival; ``values`` JSON-able dict; ``rows``
    indexes into the batch of the readings that caused it (none for window rules and
    sweeps). An alert whose rows are all re-deliveries the store already held is dropped.
    """

    patient: int
    rule: str
    t: int
    late: bool
    values: dict
    rows: NotRequired[Sequence[int]]


@dataclasses.dataclass(frozen=True)
class CommitResult:
    """What ``commit_batch`` stored.

    ``reason`` uint8[n]: the batch's reasons after the store's own dedup (a row the core let
    through but the store already held becomes DUPLICATE, or CONFLICT and quarantined);
    ``reading_ids`` int64[n]: the stored reading of each row (new, or the identical one the
    store held), -1 otherwise; ``alerts``: alert JSON (DESIGN.md) of each alert raised or
    re-notified, to publish; ``alerts_updated``: alerts only updated within their cooldown
    (not to publish).
    """

    stored: int
    duplicate: int
    quarantined: dict[str, int]
    reason: np.ndarray
    reading_ids: np.ndarray
    alerts: list[dict]
    alerts_updated: int


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _nullable(values: np.ndarray, present: np.ndarray) -> list:
    """values.tolist() with None where ``present`` is False."""
    if present.all():
        return values.tolist()
    out = values.astype(object)
    out[~present] = None
    return out.tolist()


def dedup_columns(kind: np.ndarray, flags: np.ndarray, seq: np.ndarray,
                  fingerprint: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dedup_tag uint8[n], dedup_key uint64[n]) of each record: ``core.dedup.key_of``, vectorised."""
    has_seq = (flags & np.uint16(Flag.HAS_SEQ)) != 0
    tag = np.where(has_seq, np.where(kind == Kind.GLU_CONTEXT, TAG_CONTEXT_SEQ, TAG_SEQ), TAG_FINGERPRINT)
    key = np.where(has_seq, seq.astype(np.uint64), fingerprint.astype(np.uint64))
    return tag.astype(np.uint8), key


def reading_params(rows: np.ndarray, meal: np.ndarray | None = None, battery: np.ndarray | None = None) -> np.ndarray:
    """INSERT parameters (READING_COLUMNS) of READING_DTYPE ``rows``: object[n, 13], Python
    ints, floats (NaN binds as NULL), str and the detail octets (DETAIL_DTYPE).

    ``meal`` uint8[n] (MEALS codes, others absent) and ``battery`` float64[n] (percent, NaN
    absent) are the reading-map fields the core's record has no column for.
    """
    n = len(rows)
    kind, flags, v = rows["kind"], rows["flags"], rows["v"]
    is_bp = kind == Kind.BP
    is_glu = (kind == Kind.GLU) | (kind == Kind.CGM)
    tag, key = dedup_columns(kind, flags, rows["seq"], rows["fingerprint"])
    detail = np.zeros(n, dtype=DETAIL_DTYPE)
    for name in DETAIL_RECORD_FIELDS:
        detail[name] = rows[name]
    detail["meal"] = 0 if meal is None else meal
    detail["battery"] = np.nan if battery is None else battery
    octets, size = detail.tobytes(), DETAIL_DTYPE.itemsize
    params = np.empty((n, len(READING_COLUMNS)), dtype=object)
    for j, column in enumerate((
            rows["device"], rows["patient"], rows["t"], _TYPE_NAMES[kind],
            np.where(is_bp, v[:, 0], np.nan), np.where(is_bp, v[:, 1], np.nan), np.where(is_bp, v[:, 3], np.nan),
            np.where(is_glu, v[:, 0], np.nan), flags, tag, key.view(np.int64), rows["fingerprint"].view(np.int64))):
        params[:, j] = column
    params[:, -1] = [octets[i:i + size] for i in range(0, n * size, size)]
    return params


def _details(octets: Sequence[bytes]) -> np.ndarray:
    """DETAIL_DTYPE[n] of stored detail BLOBs; StoreError SCHEMA when one has another size."""
    if any(len(o) != DETAIL_DTYPE.itemsize for o in octets):
        raise StoreError("SCHEMA", f"a reading's detail is not {DETAIL_DTYPE.itemsize} octets: the file was "
                                   "written by another layout; upgrade pmp-gateway")
    return np.frombuffer(b"".join(octets), dtype=DETAIL_DTYPE)


def _readings_v1_to_v2(conn: sqlite3.Connection) -> None:
    """Migration 2: every v1 reading, with its id, into readings_v2 (columns + detail)."""
    unit_codes = {name: code for code, name in UNIT_NAMES.items() if name}
    meal_codes = {name: code for code, name in MEALS.items()}
    after = 0
    while rows := conn.execute(SELECT_V1_READINGS, (after, 10_000)).fetchall():
        (ids, device, patient, seq, t, rx, types, sys, dia, map_, pul, glu, trend, quality, flags, status, unit_in,
         user_slot, meal, battery, fingerprint, _, _, extra) = zip(*rows)
        batch = empty_batch(len(rows))
        batch["device"], batch["patient"], batch["t"], batch["rx"] = device, patient, t, rx
        batch["flags"], batch["status"] = flags, status
        batch["seq"] = [s or 0 for s in seq]
        batch["user"] = [NO_USER if u is None else u for u in user_slot]
        batch["fingerprint"] = np.array(fingerprint, dtype=np.int64).view(np.uint64)
        batch["kind"] = [TYPE_KINDS[k] for k in types]
        batch["unit_in"] = [unit_codes.get(u, 0) for u in unit_in]
        kind, v = batch["kind"], batch["v"]
        bp, glucose, cgm = kind == Kind.BP, (kind == Kind.GLU) | (kind == Kind.CGM), kind == Kind.CGM
        as_float = {name: np.array(column, dtype=np.float64) for name, column in
                    (("sys", sys), ("dia", dia), ("map", map_), ("pul", pul), ("glu", glu), ("trend", trend),
                     ("quality", quality))}
        for j, name in enumerate(("sys", "dia", "map", "pul")):
            v[bp, j] = as_float[name][bp]
        v[glucose, 0] = as_float["glu"][glucose]
        v[cgm, 1], v[cgm, 2] = as_float["trend"][cgm], as_float["quality"][cgm]
        for i, text in enumerate(extra):
            if text is None:
                continue
            v_names, aux_names = EXTRA_FIELDS[Kind(kind[i])]
            fields = json.loads(text)
            for j, name in enumerate(v_names):
                if name in fields:
                    v[i, j] = fields[name]
            for j, name in enumerate(aux_names):
                if name in fields:
                    batch["aux"][i, j] = fields[name]
        params = reading_params(batch, np.array([meal_codes.get(m, 0) for m in meal], dtype=np.uint8),
                                np.array(battery, dtype=np.float64))
        conn.executemany(INSERT_V2_READING, [(i, *p) for i, p in zip(ids, params.tolist())])
        after = ids[-1]


# Functions of the migrations' PythonSteps, by name.
PYTHON_STEPS = {"readings_v1_to_v2": _readings_v1_to_v2}


class Store:
    """The gateway's database: open with ``Store.open``; one writer connection, not thread-safe.

    Use it from one thread (the gateway's commit worker, or the CLI); other processes may
    open the same file at the same time (WAL: readers never block the writer).
    """

    def __init__(self, conn: sqlite3.Connection, path: str, busy_timeout_ms: int) -> None:
        """Use ``Store.open``."""
        self._conn = conn
        self.path = path
        self._timeout = busy_timeout_ms
        self._data_version = -1
        self._registry_version = 0

    # -- opening ------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike, *, synchronous: Synchronous = "FULL",
             busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> Store:
        """Open (creating if needed) the database at ``path`` and apply pending migrations.

        ``synchronous``: FULL (default: a committed batch survives power loss, DESIGN.md) or
        NORMAL (survives a crash of the process, may lose the last commits on power loss).
        ``busy_timeout_ms``: how long a write waits for another connection's lock before
        failing with StoreError(reason="LOCKED").
        """
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        path = os.fspath(path)
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000,
                                   check_same_thread=False, cached_statements=256)
        except sqlite3.Error as error:
            raise _store_error(error, busy_timeout_ms) from error
        store = cls(conn, path, busy_timeout_ms)
        try:
            for pragma in PRAGMAS_NEW_DB + PRAGMAS + (f"PRAGMA synchronous = {synchronous}",):
                conn.execute(pragma)
            store._migrate()
        except sqlite3.Error as error:
            conn.close()
            raise _store_error(error, busy_timeout_ms) from error
        except StoreError:
            conn.close()
            raise
        return store

    def _migrate(self) -> None:
        conn = self._conn
        conn.execute(SCHEMA_TABLE)
        applied = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
        for version, name, statements in MIGRATIONS:
            if version in applied:
                continue
            with self._write() as c:
                if c.execute("SELECT 1 FROM schema_migrations WHERE version = ?", (version,)).fetchone():
                    continue
                for statement in statements:
                    if isinstance(statement, PythonStep):
                        PYTHON_STEPS[statement](c)
                    else:
                        c.execute(statement)
                c.execute("INSERT INTO schema_migrations (version, name, applied) VALUES (?, ?, ?)",
                          (version, name, _now_ms()))
        newest = conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0]
        if newest is not None and newest > MIGRATIONS[-1][0]:
            raise StoreError("SCHEMA", f"{self.path} has schema version {newest}, this code knows up to "
                                       f"{MIGRATIONS[-1][0]}: upgrade pmp-gateway")

    def schema_version(self) -> int:
        """The highest migration applied."""
        return int(self._conn.execute("SELECT MAX(version) FROM schema_migrations").fetchone()[0])

    def close(self) -> None:
        """Close the connection (a WAL checkpoint happens when the last one closes)."""
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    @contextlib.contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction: BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""
        conn = self._conn
        try:
            conn.execute("BEGIN IMMEDIATE")
            yield conn
            conn.execute("COMMIT")
        except BaseException as error:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(error, sqlite3.Error):
                raise _store_error(error, self._timeout) from error
            raise

    def _read(self, sql: str, params: Sequence | Mapping = ()) -> list[tuple]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except sqlite3.Error as error:
            raise _store_error(error, self._timeout) from error

    # -- the batch ----------------------------------------------------------------------

    def commit_batch(self, batch: np.ndarray, *, now_ms: int, payloads: Sequence[bytes] = (),
                     message: np.ndarray | None = None, element: np.ndarray | None = None,
                     topics: Sequence[str | None] | None = None, details: Mapping[int, str] | None = None,
                     meal: np.ndarray | None = None, battery: np.ndarray | None = None,
                     alerts: Sequence[AlertIn] = (), windows: Mapping[str, np.ndarray] | None = None,
                     ) -> CommitResult:
        """Store one processed batch in ONE transaction; all of it or, on error, nothing.

        Parameters
        ----------
        batch : READING_DTYPE[n]
            After ``core.Pipeline.process``: OK rows are stored as readings, DUPLICATE rows
            counted, every other row quarantined. Not modified.
        now_ms : int
            Gateway time, ms UTC (alert raise time and cooldown clock).
        payloads, message, element, topics
            Raw payloads of the batch's messages; ``message`` int32[n] the payload of each
            row (-1 none), ``element`` int32[n] its position in that message (-1 none),
            ``topics`` the topic of each payload. Quarantined rows keep their payload
            (stored once per message) and element.
        details : {row: text}, optional
            Quarantine detail of particular rows (default: ``REASON_DETAILS``).
        meal : uint8[n], battery : float64[n], optional
            Reading-map fields without a column in READING_DTYPE (MEALS codes; percent, NaN
            absent).
        alerts : AlertIn dicts
            Alerts to raise; an open alert of the same (patient, rule) is updated instead
            and re-notified only after ``COOLDOWN_MS`` (or when it stops being late).
        windows : {"acc": float64[n_patients * N_METRICS, RING_DAYS, N_ACC], "patients":
            int[k] (optional: rows to write, default all)}, optional
            Window state after this batch (``WindowState.arrays()``); saved with the id of
            the last reading it includes (see ``load_windows``).

        Raises
        ------
        StoreError
            The database refused the transaction (LOCKED, FULL, IO, ...); nothing of the
            batch was written and it may be committed again.
        """
        n = len(batch)
        reason = batch["reason"].copy()
        reading_ids = np.full(n, -1, dtype=np.int64)
        ok = np.flatnonzero(reason == Reason.OK)
        quarantined: dict[str, int] = {}
        notify_ids: dict[int, bool] = {}
        with self._write() as conn:
            if len(ok):
                self._insert_readings(conn, batch, ok, reason, reading_ids,
                                      None if meal is None else meal[ok], None if battery is None else battery[ok])
            bad = np.flatnonzero((reason != Reason.OK) & (reason != Reason.DUPLICATE))
            if len(bad):
                quarantined = self._insert_quarantine(conn, batch, bad, reason[bad], now_ms, payloads, message,
                                                      element, topics, details or {})
            is_new = reason == Reason.OK
            for alert in alerts:
                rows = np.asarray(alert.get("rows", ()), dtype=np.int64)
                if len(rows) and not is_new[rows].any():
                    continue
                alert_id, notify = self._raise_alert(conn, alert, reading_ids[rows[is_new[rows]]].tolist(), now_ms)
                notify_ids[alert_id] = notify_ids.get(alert_id, False) or notify
            if windows is not None:
                self._save_windows(conn, windows)
            stored, duplicate = int(is_new.sum()), int((reason == Reason.DUPLICATE).sum())
            counters = [("received", n), ("stored", stored), ("duplicate", duplicate)]
            counters += [(f"quarantined.{name}", count) for name, count in quarantined.items()]
            conn.executemany(ADD_COUNTER, counters)
            alerts_out = [self._alert_json(conn, alert_id) for alert_id, notify in notify_ids.items() if notify]
        return CommitResult(stored=stored, duplicate=duplicate, quarantined=quarantined, reason=reason,
                            reading_ids=reading_ids, alerts=alerts_out,
                            alerts_updated=len(notify_ids) - len(alerts_out))

    def _insert_readings(self, conn: sqlite3.Connection, batch: np.ndarray, ok: np.ndarray, reason: np.ndarray,
                         reading_ids: np.ndarray, meal: np.ndarray | None, battery: np.ndarray | None) -> None:
        """Insert the OK rows; rows the store already held get DUPLICATE or CONFLICT in ``reason``."""
        rows = batch[ok]
        before = conn.execute(MAX_READING_ID).fetchone()[0]
        changes = conn.total_changes
        params = reading_params(rows, meal, battery)
        full = len(rows) - len(rows) % INSERT_CHUNK_ROWS
        flat, step = params[:full].ravel().tolist(), INSERT_CHUNK_ROWS * len(READING_COLUMNS)
        for start in range(0, len(flat), step):
            conn.execute(INSERT_READINGS_CHUNK, flat[start:start + step])
        conn.executemany(INSERT_READING, params[full:].tolist())
        if conn.total_changes - changes == len(ok):
            # Every row was new: rowids are assigned max + 1 in insertion order.
            reading_ids[ok] = np.arange(before + 1, before + 1 + len(ok))
            return
        tag, key = dedup_columns(rows["kind"], rows["flags"], rows["seq"], rows["fingerprint"])
        found = [conn.execute(READING_BY_KEY, params).fetchone()
                 for params in zip(rows["device"].tolist(), tag.tolist(), key.view(np.int64).tolist())]
        ids = np.array([f[0] for f in found], dtype=np.int64)
        stored_fp = np.array([f[1] for f in found], dtype=np.int64).view(np.uint64)
        _, first = np.unique(ids, return_index=True)
        new = np.zeros(len(ok), dtype=bool)
        new[first] = ids[first] > before
        same = stored_fp == rows["fingerprint"]
        reason[ok[~new]] = np.where(same[~new], Reason.DUPLICATE, Reason.CONFLICT)
        reading_ids[ok] = np.where(new | same, ids, -1)

    def _insert_quarantine(self, conn: sqlite3.Connection, batch: np.ndarray, bad: np.ndarray, reasons: np.ndarray,
                           now_ms: int, payloads: Sequence[bytes], message: np.ndarray | None,
                           element: np.ndarray | None, topics: Sequence[str | None] | None,
                           details: Mapping[int, str]) -> dict[str, int]:
        rows = batch[bad]
        payload_ids: dict[int, int] = {}
        msg = np.full(len(bad), -1, dtype=np.int64) if message is None else message[bad].astype(np.int64)
        for m in np.unique(msg[msg >= 0]).tolist():
            topic = topics[m] if topics is not None else None
            payload_ids[m] = conn.execute(INSERT_PAYLOAD, (topic, now_ms, payloads[m])).lastrowid
        elem = np.full(len(bad), -1, dtype=np.int64) if element is None else element[bad].astype(np.int64)
        names = [Reason(r).name for r in reasons.tolist()]
        conn.executemany(INSERT_QUARANTINE, zip(
            _nullable(rows["device"], rows["device"] >= 0),
            names,
            [details.get(row, REASON_DETAILS.get(Reason[name])) for row, name in zip(bad.tolist(), names)],
            _TYPE_NAMES[rows["kind"]].tolist(),
            _nullable(rows["seq"], (rows["flags"] & np.uint16(Flag.HAS_SEQ)) != 0),
            _nullable(rows["t"], (rows["flags"] & np.uint16(Flag.HAS_TIME)) != 0),
            rows["rx"].tolist(),
            [payload_ids.get(m) for m in msg.tolist()],
            _nullable(elem, elem >= 0),
        ))
        counts: dict[str, int] = {}
        for name in names:
            counts[name] = counts.get(name, 0) + 1
        return counts

    def _raise_alert(self, conn: sqlite3.Connection, alert: AlertIn, reading_ids: list[int],
                     now_ms: int) -> tuple[int, bool]:
        """Insert or update the (patient, rule) alert; return (id, whether to publish it)."""
        rule = Rule[alert["rule"]]
        late = bool(alert["late"])
        values = json.dumps(alert["values"], separators=(",", ":"))
        existing = conn.execute(SELECT_OPEN_ALERT, (alert["patient"], rule.name)).fetchone()
        if existing is None:
            severity, route = severity_and_route(rule, late)
            alert_id = conn.execute(INSERT_ALERT, (alert["patient"], rule.name, severity, json.dumps(route),
                                                   alert["t"], now_ms, now_ms, now_ms, late, values)).lastrowid
            action, notify = "raised", True
        else:
            alert_id, notified, was_late = existing
            notify = now_ms - notified >= COOLDOWN_MS or (bool(was_late) and not late)
            still_late = bool(was_late) and late
            severity, route = severity_and_route(rule, still_late)
            conn.execute(UPDATE_ALERT, (alert["t"], now_ms, now_ms if notify else notified,
                                        still_late, values, severity, json.dumps(route), alert_id))
            action = "renotified" if notify else "updated"
        conn.executemany(INSERT_ALERT_READING, [(alert_id, r) for r in reading_ids])
        conn.execute(INSERT_ALERT_EVENT, (alert_id, now_ms, GATEWAY_ACTOR, action, None))
        return alert_id, notify

    def _alert_json(self, conn: sqlite3.Connection, alert_id: int) -> dict:
        row = conn.execute(SELECT_ALERTS, {"id": alert_id, "patient": None, "state": None, "severity": None,
                                           "limit": 1}).fetchone()
        return self._alert_dict(conn, row)

    @staticmethod
    def _alert_dict(conn: sqlite3.Connection, row: tuple) -> dict:
        alert_id, patient, rule, severity, route, t, raised, late, values, state, escalated, occurrences = row
        readings = [r for (r,) in conn.execute(SELECT_ALERT_READINGS, (alert_id,))]
        return {"id": alert_id, "patient": patient, "rule": rule, "severity": severity, "route": json.loads(route),
                "t": t, "raised": raised, "late": bool(late), "values": json.loads(values), "readings": readings,
                "state": state, "escalated": escalated, "occurrences": occurrences}

    # -- dedup and window state ---------------------------------------------------------

    def dedup_keys(self, since_t: int | None = None) -> np.ndarray:
        """Keys of stored readings measured at or after ``since_t`` (ms UTC; all when None),
        as ``core.dedup.KEY_DTYPE`` sorted by (device, tag, key), for ``DedupTable.from_keys``."""
        rows = self._read(SELECT_KEYS, (np.iinfo(np.int64).min if since_t is None else since_t,))
        signed = np.array(rows, dtype=[("device", "<i4"), ("tag", "u1"), ("key", "<i8"), ("fingerprint", "<i8"),
                                       ("t", "<i8")])
        keys = np.zeros(len(signed), dtype=KEY_DTYPE)
        keys["device"], keys["tag"], keys["t"] = signed["device"], signed["tag"], signed["t"]
        keys["key"], keys["fingerprint"] = signed["key"].view(np.uint64), signed["fingerprint"].view(np.uint64)
        return np.sort(keys, order=["device", "tag", "key"])

    def count_readings(self) -> int:
        """Number of stored readings (for sizing the core's dedup table)."""
        return int(self._read("SELECT COUNT(*) FROM readings")[0][0])

    def _save_windows(self, conn: sqlite3.Connection, windows: Mapping[str, np.ndarray]) -> None:
        acc = np.ascontiguousarray(windows["acc"], dtype="<f8")
        if acc.ndim != 3 or acc.shape[1:] != (RING_DAYS, N_ACC) or acc.shape[0] % N_METRICS:
            raise ValueError(f"windows['acc'] must have shape (n_patients * {N_METRICS}, {RING_DAYS}, {N_ACC}), "
                             f"got {acc.shape}")
        per_patient = acc.reshape(-1, *_ACC_SHAPE)
        patients = windows.get("patients")
        chosen = np.arange(len(per_patient)) if patients is None else np.asarray(patients, dtype=np.int64)
        conn.executemany(UPSERT_WINDOW, ((p, per_patient[p].tobytes()) for p in chosen.tolist()))
        conn.execute(SET_KV, (WINDOWS_THROUGH_KEY, conn.execute(MAX_READING_ID).fetchone()[0]))

    def save_windows(self, windows: Mapping[str, np.ndarray]) -> None:
        """Save window state outside a batch (e.g. at shutdown); same form as ``commit_batch``."""
        with self._write() as conn:
            self._save_windows(conn, windows)

    def load_windows(self) -> tuple[dict[str, np.ndarray], int]:
        """The saved window state for every registered patient, and the id of the last
        reading it includes.

        Returns ``({"tz_min": int16[n], "acc": ...}, through_id)``, ready for
        ``WindowState.from_arrays(**arrays)``: tz_min from the registry, patients never
        saved with empty state. Readings with id > through_id are not in it: replay them
        (``readings_batch``) through ``WindowState.update``.
        """
        tz_min = self.tz_offsets()
        acc = WindowState(len(tz_min), tz_min).arrays()["acc"]
        per_patient = acc.reshape(-1, *_ACC_SHAPE)
        for patient, blob in self._read(SELECT_WINDOWS, (len(tz_min),)):
            if len(blob) != _ACC_BYTES:
                raise StoreError("SCHEMA", f"window state of patient {patient} has {len(blob)} bytes, expected "
                                           f"{_ACC_BYTES}: the ring layout changed; delete the windows rows "
                                           "and let the gateway recompute them from readings")
            per_patient[patient] = np.frombuffer(blob, dtype="<f8").reshape(_ACC_SHAPE)
        through = self._read(GET_KV, (WINDOWS_THROUGH_KEY,))
        return {"tz_min": tz_min, "acc": acc}, int(through[0][0]) if through else 0

    def readings_batch(self, after_id: int = 0, limit: int = 100_000) -> tuple[np.ndarray, np.ndarray]:
        """Stored readings with id > ``after_id`` in id order, at most ``limit``, rebuilt as a
        READING_DTYPE batch (reason OK) and their int64 ids: for replay into window state."""
        rows = self._read(SELECT_READINGS_BATCH, (after_id, limit))
        batch = empty_batch(len(rows))
        if not rows:
            return batch, np.zeros(0, dtype=np.int64)
        ids, device, patient, t, types, flags, fingerprint, detail = zip(*rows)
        batch["device"], batch["patient"], batch["t"], batch["flags"] = device, patient, t, flags
        batch["kind"] = [TYPE_KINDS[k] for k in types]
        batch["fingerprint"] = np.array(fingerprint, dtype=np.int64).view(np.uint64)
        details = _details(detail)
        for name in DETAIL_RECORD_FIELDS:
            batch[name] = details[name]
        return batch, np.array(ids, dtype=np.int64)

    # -- registry -----------------------------------------------------------------------

    def _bump_registry(self, conn: sqlite3.Connection) -> None:
        conn.execute(ADD_COUNTER, (REGISTRY_VERSION_KEY, 1))

    def add_staff(self, staff_id: str, name: str, role: str) -> None:
        """Register a staff member; ``role`` one of STAFF_ROLES."""
        _check_id(staff_id, "staff id")
        if role not in STAFF_ROLES:
            raise RegistryError("INVALID", f"role {role!r} is not one of {', '.join(STAFF_ROLES)}")
        with self._write() as conn:
            try:
                conn.execute(INSERT_STAFF, (staff_id, name, role))
            except sqlite3.IntegrityError:
                raise RegistryError("EXISTS", f"staff member {staff_id!r} already exists") from None
            self._bump_registry(conn)

    def add_device(self, device_id: str, kind: str, *, now_ms: int | None = None) -> int:
        """Register a device (a BLE meter behind a hub by its address); return its index."""
        if not (_ID.fullmatch(device_id) or _BLE_ID.fullmatch(device_id)):
            raise RegistryError("INVALID", f"device id {device_id!r}: use 1-64 of [A-Za-z0-9_.-], or a BLE "
                                           "address in upper case with colons (AA:BB:CC:DD:EE:FF)")
        if kind not in DEVICE_KINDS:
            raise RegistryError("INVALID", f"device kind {kind!r} is not one of {', '.join(DEVICE_KINDS)}")
        with self._write() as conn:
            idx = conn.execute(NEXT_DEVICE_IDX).fetchone()[0]
            try:
                conn.execute(INSERT_DEVICE, (device_id, idx, kind, _now_ms() if now_ms is None else now_ms))
            except sqlite3.IntegrityError:
                raise RegistryError("EXISTS", f"device {device_id!r} already exists") from None
            self._bump_registry(conn)
        return idx

    def add_patient(self, patient_id: str, *, programmes: Sequence[str] = ("AH",), tz: str = "UTC",
                    dispensary: bool = True, physician: str | None = None, nurse: str | None = None,
                    personal_admin: str | None = None, targets: Mapping | None = None,
                    now_ms: int | None = None) -> int:
        """Register a patient; return its index. ``tz`` an IANA zone; its UTC offset at
        ``now_ms`` is stored as utc_offset_min (what windows use for the local day)."""
        _check_id(patient_id, "patient id")
        bad = [p for p in programmes if p not in PROGRAMMES]
        if bad or not programmes:
            raise RegistryError("INVALID", f"programmes {list(programmes)!r}: give one or more of "
                                           f"{', '.join(PROGRAMMES)}")
        now_ms = _now_ms() if now_ms is None else now_ms
        try:
            zone = zoneinfo.ZoneInfo(tz)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise RegistryError("INVALID", f"time zone {tz!r} is unknown: use an IANA name such as "
                                           "Europe/Moscow") from None
        offset = datetime.datetime.fromtimestamp(now_ms / 1000, zone).utcoffset()
        offset_min = int(offset.total_seconds() // 60) if offset is not None else 0
        with self._write() as conn:
            for role, staff_id in (("physician", physician), ("nurse", nurse), ("personal_admin", personal_admin)):
                if staff_id is not None and not conn.execute(SELECT_STAFF, (staff_id,)).fetchone():
                    raise RegistryError("UNKNOWN", f"{role} {staff_id!r} is not registered: add the staff "
                                                   "member first")
            idx = conn.execute(NEXT_PATIENT_IDX).fetchone()[0]
            try:
                conn.execute(INSERT_PATIENT, (patient_id, idx, ",".join(programmes), bool(dispensary), tz,
                                              offset_min, physician, nurse, personal_admin,
                                              json.dumps(dict(targets or {})), now_ms))
            except sqlite3.IntegrityError:
                raise RegistryError("EXISTS", f"patient {patient_id!r} already exists") from None
            self._bump_registry(conn)
        return idx

    def bind(self, device_id: str, patient_id: str, start_ms: int, end_ms: int | None = None, *,
             user: int | None = None, now_ms: int | None = None) -> int:
        """Bind a device (and user slot; None = any slot) to a patient for [start_ms, end_ms)
        (None = open-ended); return the binding's id.

        Raises RegistryError OVERLAP when the device and slot are bound for part of that
        interval already (unbind first), UNKNOWN for an unregistered device or patient.
        """
        if end_ms is not None and end_ms <= start_ms:
            raise RegistryError("INVALID", f"binding ends ({end_ms}) before it starts ({start_ms})")
        if user is not None and not 0 <= user < NO_USER:
            raise RegistryError("INVALID", f"user slot {user} outside 0..{NO_USER - 1}")
        with self._write() as conn:
            device, patient = self._device_idx(conn, device_id), self._patient_idx(conn, patient_id)
            end = OPEN_END if end_ms is None else end_ms
            clash = conn.execute(OVERLAPPING_BINDING, (device, user, end, start_ms)).fetchone()
            if clash:
                _, other, c_from, c_to = clash
                slot = "any slot" if user is None else f"user slot {user}"
                raise RegistryError("OVERLAP", f"device {device_id!r} ({slot}) is already bound to patient "
                                               f"{other!r} from {c_from} to {'open end' if c_to is None else c_to}"
                                               ": unbind it first, or choose a later start")
            binding = conn.execute(INSERT_BINDING, (device, user, start_ms, end_ms, patient,
                                                    _now_ms() if now_ms is None else now_ms)).lastrowid
            self._bump_registry(conn)
        return binding

    def unbind(self, device_id: str, end_ms: int, *, user: int | None = None) -> None:
        """End the binding of the device (and slot) that holds ``end_ms``, at ``end_ms``."""
        with self._write() as conn:
            device = self._device_idx(conn, device_id)
            found = conn.execute(OPEN_BINDING_AT, (device, user, end_ms, end_ms)).fetchone()
            if found is None:
                raise RegistryError("UNKNOWN", f"device {device_id!r} has no binding at {end_ms} to end")
            conn.execute(CLOSE_BINDING, (end_ms, found[0]))
            self._bump_registry(conn)

    @staticmethod
    def _device_idx(conn: sqlite3.Connection, device_id: str) -> int:
        row = conn.execute(DEVICE_IDX, (device_id,)).fetchone()
        if row is None:
            raise RegistryError("UNKNOWN", f"device {device_id!r} is not registered: add it first")
        return row[0]

    @staticmethod
    def _patient_idx(conn: sqlite3.Connection, patient_id: str) -> int:
        row = conn.execute(PATIENT_IDX, (patient_id,)).fetchone()
        if row is None:
            raise RegistryError("UNKNOWN", f"patient {patient_id!r} is not registered: add it first")
        return row[0]

    def device_index(self) -> dict[str, int]:
        """Device id -> registry index."""
        return dict(self._read(ALL_DEVICES))

    def patient_index(self) -> dict[str, int]:
        """Patient id -> registry index."""
        return dict(self._read(ALL_PATIENTS))

    def tz_offsets(self) -> np.ndarray:
        """int16[n_patients]: each patient's UTC offset in minutes, by index."""
        rows = self._read(PATIENT_OFFSETS)
        out = np.zeros(len(rows), dtype=np.int16)
        for idx, offset in rows:
            out[idx] = offset
        return out

    def bindings(self) -> Bindings:
        """Every binding, in the core's form (NULL slot -> NO_USER, open end -> OPEN_END)."""
        rows = self._read(ALL_BINDINGS)
        array = np.array([(d, NO_USER if u is None else u, s, OPEN_END if e is None else e, p)
                          for d, u, s, e, p in rows], dtype=BINDING_DTYPE)
        return Bindings(array, n_devices=len(self.device_index()))

    def registry_version(self) -> int:
        """A number that changes whenever the registry changes, from any connection.

        Cheap to poll (every second or so): it reads the counter only after
        ``PRAGMA data_version`` says another connection committed something.
        """
        data_version = self._read("PRAGMA data_version")[0][0]
        if data_version != self._data_version:
            self._data_version = data_version
            row = self._read(GET_KV, (REGISTRY_VERSION_KEY,))
            self._registry_version = int(row[0][0]) if row else 0
        return self._registry_version

    # -- alert lifecycle ----------------------------------------------------------------

    def _transition(self, alert_id: int, state: str, by: str, at_ms: int, note: str | None) -> None:
        with self._write() as conn:
            row = conn.execute(SELECT_ALERT_STATE, (alert_id,)).fetchone()
            if row is None:
                raise RegistryError("UNKNOWN", f"alert {alert_id} does not exist")
            if row[0] not in ALERT_TRANSITIONS[state]:
                raise RegistryError("STATE", f"alert {alert_id} is {row[0]}; it cannot become {state}")
            if by != GATEWAY_ACTOR and not conn.execute(SELECT_STAFF, (by,)).fetchone():
                raise RegistryError("UNKNOWN", f"staff member {by!r} is not registered")
            conn.execute(SET_ALERT_STATE, (state, at_ms, alert_id))
            conn.execute(INSERT_ALERT_EVENT, (alert_id, at_ms, by, state, note))

    def acknowledge_alert(self, alert_id: int, *, by: str, at_ms: int, note: str | None = None) -> None:
        """open -> acknowledged, recorded with who and when."""
        self._transition(alert_id, "acknowledged", by, at_ms, note)

    def resolve_alert(self, alert_id: int, *, by: str, at_ms: int, note: str | None = None) -> None:
        """open or acknowledged -> resolved; a later alert of the rule opens a new one."""
        self._transition(alert_id, "resolved", by, at_ms, note)

    # -- queries ------------------------------------------------------------------------

    def readings(self, patient: str | None = None, *, device: str | None = None, since: int | None = None,
                 until: int | None = None, limit: int = 10_000) -> list[dict]:
        """Stored readings by measurement time: dicts with id, device, patient, seq, t, rx,
        type, sys, dia, map, pul, glu, range, trend, flags, meal, battery (absent = None)."""
        rows = self._read(SELECT_READINGS, {
            "patient": patient, "device": device, "limit": limit,
            "since": np.iinfo(np.int64).min if since is None else since,
            "until": np.iinfo(np.int64).max if until is None else until})
        if not rows:
            return []
        details = _details([row[-1] for row in rows])
        out = []
        for (reading_id, device, patient, t, kind, sys, dia, pul, glu, flags, _), rx, v, seq, meal, battery in zip(
                rows, details["rx"].tolist(), details["v"].tolist(), details["seq"].tolist(),
                details["meal"].tolist(), details["battery"].tolist()):
            out.append({
                "id": reading_id, "device": device, "patient": patient, "seq": seq if flags & Flag.HAS_SEQ else None,
                "t": t, "rx": rx, "type": kind, "sys": sys, "dia": dia,
                "map": v[2] if kind == "bp" and v[2] == v[2] else None, "pul": pul, "glu": glu,
                "range": RANGE_NAMES.get(flags & (Flag.RANGE_LO | Flag.RANGE_HI)),
                "trend": v[1] if kind == "cgm" and v[1] == v[1] else None, "flags": flags,
                "meal": MEALS.get(meal), "battery": None if battery != battery else battery})
        return out

    def alerts(self, *, patient: str | None = None, state: str | None = None, severity: str | None = None,
               limit: int = 10_000) -> list[dict]:
        """Alerts (DESIGN.md alert JSON plus escalated and occurrences), oldest first."""
        rows = self._read(SELECT_ALERTS, {"id": None, "patient": patient, "state": state, "severity": severity,
                                          "limit": limit})
        return [self._alert_dict(self._conn, row) for row in rows]

    def alert_events(self, alert_id: int) -> list[dict]:
        """History of one alert: dicts with at, actor, action, note, oldest first."""
        return [dict(zip(("at", "actor", "action", "note"), row))
                for row in self._read(SELECT_ALERT_EVENTS, (alert_id,))]

    def alerts_open(self) -> dict[str, int]:
        """Not-resolved alerts by severity, most severe first (stats JSON ``alerts_open``)."""
        counts = dict(self._read(COUNT_OPEN_ALERTS))
        return {s: counts[s] for s in sorted(counts, key=SEVERITY_RANK.__getitem__)}

    def quarantine(self, *, device: str | None = None, reason: str | None = None, limit: int = 10_000) -> list[dict]:
        """Quarantined rows, oldest first: dicts with id, device (None if unknown), reason,
        detail, type, seq, t, rx, element, replayed, topic and payload (raw bytes)."""
        rows = self._read(SELECT_QUARANTINE, {"device": device, "reason": reason, "limit": limit})
        return [dict(zip(SELECT_QUARANTINE_KEYS, row)) for row in rows]

    def counters(self) -> dict:
        """Persistent counters as in the stats JSON ``readings`` object:
        ``{"received", "stored", "duplicate", "quarantined": {reason: n}}``."""
        kv = dict(self._read(SELECT_KV))
        return {"received": kv.get("received", 0), "stored": kv.get("stored", 0),
                "duplicate": kv.get("duplicate", 0),
                "quarantined": {k.split(".", 1)[1]: v for k, v in sorted(kv.items())
                                if k.startswith("quarantined.")}}

    def publisher_acks(self, route: str) -> dict[str, int]:
        """The last ack sent to each publisher of ``route`` ("dev" or "hub"): its highest
        contiguous committed sequence number."""
        prefix = f"{ACK_KEY_PREFIX}{route}."
        return {key[len(prefix):]: value for key, value in self._read(SELECT_KV) if key.startswith(prefix)}

    def save_publisher_acks(self, route: str, acks: Mapping[str, int]) -> None:
        """Record acks just sent (``publisher id -> seq``) so a restarted gateway continues
        each publisher's contiguous run instead of starting a new one."""
        if acks:
            with self._write() as conn:
                conn.executemany(SET_KV, ((f"{ACK_KEY_PREFIX}{route}.{pub}", seq) for pub, seq in acks.items()))

    def save_gateway_stats(self, stats: Mapping, *, now_ms: int | None = None) -> None:
        """Keep a gateway's latest stats JSON (``stats["gw"]`` names it), for status after a stop."""
        with self._write() as conn:
            conn.execute(UPSERT_GATEWAY_STATS, (stats["gw"], json.dumps(stats), _now_ms() if now_ms is None else now_ms))

    def gateway_stats(self) -> list[dict]:
        """The saved stats of each gateway that used this database, latest first, each with
        ``saved`` (ms UTC)."""
        return [{**json.loads(stats), "saved": saved} for stats, saved in self._read(SELECT_GATEWAY_STATS)]

    def db_bytes(self) -> int:
        """Bytes on disk: the database file and its WAL."""
        return sum(os.path.getsize(p) for p in (self.path, self.path + "-wal") if os.path.exists(p))


def _check_id(value: str, what: str) -> None:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise RegistryError("INVALID", f"{what} {value!r}: use 1-64 characters of [A-Za-z0-9_.-]")
