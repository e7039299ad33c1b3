"""The Store: the one interface between the gateway and its database (SQLite in WAL mode).

Everything the gateway keeps across restarts goes through ``Store``: the registry
(devices, patients, staff, bindings), readings, quarantine, alerts and their history,
window state and the gateway's counters. All SQL lives in ``gateway.store.sql``, as
constants and the numbered migrations; nothing sqlite-specific leaves this package (callers get ints, floats, str, bytes,
dicts and numpy arrays). ``Store.open`` of a ``postgresql://`` URL returns ``gateway.store.pg.PgStore``: the same
methods and statements on PostgreSQL, where several gateways may share the database.

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
  ``core.codes.Reason``, rule names of ``core.rule_tables.Rule``, unit names of ``UNIT_NAMES``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import itertools
import json
import math
import os
import re
import sqlite3
import time
import zoneinfo
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Literal, NotRequired, TypedDict

import numpy as np

from core.bindings import BINDING_DTYPE, OPEN_END, Bindings
from core.codes import NO_USER, UNIT_NAMES, Flag, Kind, Reason
from core.dedup_keys import KEY_DTYPE, TAG_CONTEXT_SEQ, TAG_FINGERPRINT, TAG_SEQ
from core.layout import empty_batch
from core.rule_tables import SEVERITY_RANK, THRESHOLDS, Param, Rule, default_thresholds, severity_and_route
from core.window_layout import DAY_SUMS_DTYPE, N_ACC, N_METRICS, RING_DAYS, empty_slots

from .. import broker_accounts
from ..clock import format_ms
from ..acks import ContiguousAcks
from ..escalation import ESCALATED_SEVERITY, ESCALATED_STATE, Pending, escalations_due
from .url import is_url
from .sql import (
    SCHEMA_TABLE,
    MIGRATIONS,
    PRAGMAS_NEW_DB,
    PRAGMAS,
    PAGE_SIZE,
    WAL_AUTOCHECKPOINT_PAGES,
    CHECKPOINT,
    JOURNAL_SIZE_LIMIT,
    PythonStep,
    READING_COLUMNS,
    INSERT_CHUNK_ROWS,
    INSERT_READING,
    INSERT_READINGS_CHUNK,
    MAX_READING_ID,
    READING_BY_KEY,
    SELECT_KEYS,
    SELECT_SEQ_BEFORE,
    SELECT_STORED_KEYS,
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
    ALERT_KEYS,
    SELECT_ALERT,
    SELECT_ALERTS,
    SELECT_ALERT_READINGS,
    SELECT_ALERT_STATE,
    SET_ALERT_STATE,
    SELECT_ALERT_EVENTS,
    SELECT_STAFF_ROLE,
    SELECT_LAST_ALERT_EVENT,
    SELECT_ESCALATION_CANDIDATES,
    ESCALATE_ALERT,
    COUNT_OPEN_ALERTS,
    UPSERT_GATEWAY_STATS,
    SELECT_GATEWAY_STATS,
    ADD_COUNTER,
    SET_KV,
    SELECT_KV,
    GET_KV,
    ACK_KEY_PREFIX,
    NEW_ACKS,
    LOCK_ACKS,
    SELECT_ACK_SEQS,
    SET_ACKS,
    INSERT_ACK_SEQS,
    DELETE_ACKED_SEQS,
    REGISTRY_VERSION_KEY,
    ACCOUNTS_VERSION_KEY,
    WINDOWS_THROUGH_KEY,
    UPSERT_WINDOW,
    ADD_DAY_SUMS,
    CLAIM_DAY_CLOSES,
    SELECT_DAY_SUMS,
    PRUNE_DAY_SUMS,
    PRUNE_DAY_CLOSES,
    DAY_SUMS_SEEDED_KEY,
    CLAIM_KV,
    SELECT_WINDOWS,
    NEXT_DEVICE_IDX,
    NEXT_PATIENT_IDX,
    INSERT_DEVICE,
    INSERT_PATIENT,
    INSERT_STAFF,
    SELECT_STAFF,
    PATIENT_IDX,
    ALL_DEVICES,
    DEVICE_KINDS_OF_ALL,
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
from .sql import (  # registry
    PATIENT_IDS_AMONG,
    STAFF_IDS_AMONG,
    SELECT_STAFF_LIST,
    PATIENT_KEYS,
    SELECT_PATIENT,
    SELECT_PATIENTS,
    PATIENT_NUMBER_TARGETS,
    PATIENT_BINDINGS,
    DEVICE_ROW,
    SELECT_DEVICES,
    DEVICE_BINDINGS,
    SET_DEVICE_KIND,
    RETIRE_DEVICE,
    UPSERT_ACCOUNT,
    DELETE_ACCOUNT,
    SELECT_ACCOUNTS,
    UPSERT_DASHBOARD,
    DELETE_DASHBOARD,
    SELECT_DASHBOARDS,
    BINDING_FROM,
    CLOSE_BINDINGS_AT,
)
from .sql import (  # sweeps
    UPSERT_DEVICE_ACTIVITY,
    UPSERT_PATIENT_ACTIVITY,
    SELECT_DEVICE_ACTIVITY,
    SELECT_PATIENT_ACTIVITY,
    ACTIVITY_THROUGH_KEY,
    SWEEP_PATIENTS,
    SWEEP_DEVICES,
    SELECT_OPEN_TASKS,
    SELECT_TASK_RESOLUTIONS,
    RESOLVE_TASK,
)
from .sql import (  # reports
    REPORT_PATIENT,
    REPORT_DEVICES,
    REPORT_READINGS,
    REPORT_BINDINGS,
    REPORT_ALERTS,
    INSERT_PROTOCOL,
    COVERAGE_GROUPS,
    COVERAGE_NO_DEVICE,
    COVERAGE_STAFF,
)
from .sql import (  # quarantine replay and status
    INSERT_AUDIT,
    SELECT_REPLAY_CANDIDATES,
    SELECT_REPLAY_CANDIDATE_KEYS,
    SELECT_PAYLOAD,
    SELECT_QUARANTINE_REASON,
    SET_QUARANTINE_REPLAYED,
    SET_QUARANTINE_REASON,
    SET_AUDIT_DETAIL,
    AUDIT_KEYS,
    SELECT_AUDIT,
    INSERT_REPLAY_REQUEST,
    REPLAY_REQUEST_KEYS,
    SELECT_REPLAY_REQUEST,
    SELECT_PENDING_REPLAY_REQUEST,
    FINISH_REPLAY_REQUEST,
    OPEN_ALERTS_SUMMARY,
    COUNT_SILENT_DEVICES,
)
from .sql import (  # device import
    DEVICES_AMONG,
    PATIENT_IDX_AMONG,
    BINDINGS_OF_DEVICES,
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
OPERATOR_KINDS = ("bp", "glu", "cgm", "hub")  # what an operator registers; "unknown" is the gateway's
PROGRAMMES = ("AH", "DM1", "DM2")
STAFF_ROLES = ("physician", "nurse", "device_admin", "personal_admin", "head", "monitoring_admin")
PLAN_METRICS = ("bp", "glu", "cgm")  # keys of a patient's measurement plan (targets "plan")
MAX_PLAN_DAYS = 366
CLI_ACTOR = "cli"  # who the audit trail names for a registry change made from the command line
_THRESHOLD_COLUMNS: dict[str, int] = {param.name: int(param) for param in Param}
_STAFF_FIELDS = ("physician", "nurse", "personal_admin")  # a patient's staff, by role
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
ALERT_STATES = ("open", "acknowledged", "resolved")
ALERT_TRANSITIONS: dict[str, tuple[str, ...]] = {"acknowledged": ("open",), "resolved": ("open", "acknowledged")}
# Work queues: role -> the patients' column that names a staff member of that role (whose
# queue holds the alerts routed to the role of their own patients); None: a staff member of
# the role sees every alert routed to it.
QUEUE_PATIENT_COLUMN: dict[str, str | None] = {"physician": "physician", "nurse": "nurse",
                                               "personal_admin": "personal_admin", "device_admin": None}
QUEUE_ROLES = tuple(QUEUE_PATIENT_COLUMN)
COOLDOWN_MS = 6 * 3_600_000  # DESIGN.md: an open alert is updated, re-notified after this
GATEWAY_ACTOR = "gateway"
ACTIVITY_NEVER = np.iinfo(np.int64).min  # "never" in the sweeps' activity arrays (NULL in their tables)
DEFAULT_BUSY_TIMEOUT_MS = 5_000
KEY_CHUNK_ROWS = 65_536  # dedup keys a chunk of ``dedup_key_chunks`` holds
_T_MIN = int(np.iinfo(np.int64).min)

_ID = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_BLE_ID = re.compile(r"(?:[0-9A-F]{2}:){5}[0-9A-F]{2}")
_TYPE_NAMES = np.array([KIND_TYPES.get(k) for k in range(256)], dtype=object)
_ACC_SHAPE = (N_METRICS, RING_DAYS, N_ACC)
_ACC_BYTES = N_METRICS * RING_DAYS * N_ACC * 8
# A row of REPORT_READINGS (NULL values become NaN).
_REPORT_ROW_DTYPE = np.dtype([("id", "<i8"), ("t", "<i8"), ("device", "<i8"), ("type", "O"), ("sys", "<f8"),
                              ("dia", "<f8"), ("pul", "<f8"), ("glu", "<f8"), ("flags", "<u2")])

# ---------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------

_SQLITE_REASONS: dict[str, tuple[str, str]] = {
    "SQLITE_BUSY": ("LOCKED", "the database is locked by another connection; nothing was written: "
                              "retry, or stop the process holding it (busy timeout {timeout} ms)"),
    "SQLITE_LOCKED": ("LOCKED", "the database is locked; nothing was written: retry"),
    "SQLITE_FULL": ("DISK_FULL", "no space left for the database (its disk is full, or it reached its "
                                 "max_page_count); nothing was written: free space, then retry"),
    "SQLITE_IOERR": ("IO", "I/O error on the database file; nothing was written: check the disk"),
    "SQLITE_CORRUPT": ("CORRUPT", "the database file is corrupt: restore it from a backup"),
    "SQLITE_NOTADB": ("CORRUPT", "the file is not an SQLite database: check --db"),
    "SQLITE_READONLY": ("READONLY", "the database is read-only: check file permissions"),
    "SQLITE_CANTOPEN": ("CANTOPEN", "cannot open the database file: check the path and its directory"),
}
# Below this many free bytes on the database's file system an I/O error is taken for a full
# disk (DISK_FULL): SQLite reports ENOSPC as SQLITE_FULL when a write comes up short, but as
# SQLITE_IOERR_* where it grows a file otherwise (e.g. the WAL index, ``-shm``); Python does
# not expose the errno.
LOW_DISK_BYTES = 1 << 20
# Between checkpoints the WAL grows to WAL_AUTOCHECKPOINT_PAGES pages (about 40 MB), and a
# checkpoint needs room to grow the database file by the pages it copies. With less free
# on the disk than twice that, the store checkpoints after every write transaction and the
# WAL file is cut back to TIGHT_WAL_BYTES when it restarts: else a disk that filled and got
# a little space back fills again with WAL, which can then never be checkpointed (found by
# bench faults.disk_full: a 32 MiB disk, 20 MB freed, refilled by the WAL within seconds).
# It costs a checkpoint (and its fsync) per commit, only while the disk is that full.
WAL_HEADROOM_BYTES = 2 * WAL_AUTOCHECKPOINT_PAGES * PAGE_SIZE
TIGHT_WAL_BYTES = 1 << 20


class StoreError(Exception):
    """Raised by ``Store`` when the database refuses an operation; nothing of it was written.

    ``reason`` says why: LOCKED, DISK_FULL (no space for the database on its disk; the
    message names the database and the free bytes), IO, CORRUPT, READONLY, CANTOPEN,
    SCHEMA (the file is newer than this code), DB (anything else). LOCKED and DISK_FULL
    are worth a retry later.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class RegistryError(StoreError, ValueError):
    """Bad input to a registry or alert-lifecycle call; nothing was written.

    ``reason``: INVALID (malformed id, kind, role, programme, zone, target or interval),
    EXISTS (the id is taken), UNKNOWN (no such device, patient, staff member or alert),
    OVERLAP (the device and user slot are already bound for part of the interval),
    RETIRED (the device is retired: it cannot be bound or retired again, nor get a broker account),
    RESERVED (a device id starting with ``pmpgw-``, the gateways' broker user names),
    STATE (alert transition not allowed from its current state; a device bound after the
    time it is to be retired at). ``value``: the offending input, when there is one.
    """

    def __init__(self, reason: str, message: str, value: object = None) -> None:
        super().__init__(reason, message)
        self.value = value


def disk_free_bytes(path: str) -> int | None:
    """Bytes an unprivileged writer may still use on the file system of ``path`` (a file or
    directory; its directory when it does not exist yet); None if that cannot be read."""
    try:
        stat = os.statvfs(path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path)))
    except OSError:
        return None
    return stat.f_bavail * stat.f_frsize


def _store_error(error: sqlite3.Error, timeout_ms: int, path: str) -> StoreError:
    """The StoreError of an sqlite3 error on the database at ``path``: its reason from
    ``_SQLITE_REASONS``; an I/O error while the disk has less than ``LOW_DISK_BYTES`` free
    is DISK_FULL. A DISK_FULL message names the database and the free bytes."""
    name = getattr(error, "sqlite_errorname", "") or ""
    base = "_".join(name.split("_")[:2])  # SQLITE_IOERR_WRITE -> SQLITE_IOERR
    reason, text = _SQLITE_REASONS.get(name) or _SQLITE_REASONS.get(base) or ("DB", "database error")
    free = disk_free_bytes(path) if reason in ("DISK_FULL", "IO") else None
    if reason == "IO" and free is not None and free < LOW_DISK_BYTES:
        reason, text = _SQLITE_REASONS["SQLITE_FULL"]
    where = f" ({path}: {free:,} bytes free on its disk)" if reason == "DISK_FULL" and free is not None else ""
    return StoreError(reason, f"{text.format(timeout=timeout_ms)}{where} ({name or type(error).__name__}: {error})")


# ---------------------------------------------------------------------------------------
# Values crossing the interface
# ---------------------------------------------------------------------------------------


class AlertIn(TypedDict):
    """An alert to raise in ``commit_batch``.

    ``patient`` registry index; ``rule`` a ``core.rule_tables.Rule`` name; ``t`` measurement ms
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
    (not to publish); ``acks``: with ``commit_batch``'s ``ack_seqs``, the ack to publish of
    each publisher (``{"dev" | "hub": {publisher id: seq}}``: those whose ack moved, and
    those whose batch seqs were all acked already, which hear their current ack again).
    """

    stored: int
    duplicate: int
    quarantined: dict[str, int]
    reason: np.ndarray
    reading_ids: np.ndarray
    alerts: list[dict]
    alerts_updated: int
    acks: dict[str, dict[str, int]] = dataclasses.field(default_factory=dict)


SEED_CHUNK_ROWS = 100_000  # daily sums a statement when seeding (``Store.seed_day_sums``)


@dataclasses.dataclass(frozen=True)
class DayClose:
    """Window rules at day close on the daily sums in the store (gateways sharing it,
    ``gateway.shared_windows``), for ``commit_batch``.

    ``patients`` int32[k], ``days`` int32[k]: the local day that closed for each patient.
    ``commit_batch`` claims each (patient, day) that has sums in the RING_DAYS days ending
    with it, unless another transaction claimed it (so each is evaluated once, by one
    gateway), reads the claimed patients' sums of those days and raises the alerts of
    ``evaluate(patients, days, sums)`` (the claimed int32[m], int32[m], and their
    DAY_SUMS_DTYPE rows), all in its transaction; it also forgets sums and claims older than
    RING_DAYS before the earliest of ``days``.
    """

    patients: np.ndarray
    days: np.ndarray
    evaluate: Callable[[np.ndarray, np.ndarray, np.ndarray], Sequence[AlertIn]]


class PatientIn(TypedDict):
    """A patient to register with ``add_patients``; absent keys take the defaults shown.

    ``id`` 1-64 of [A-Za-z0-9_.-]; ``programmes`` one or more of PROGRAMMES (("AH",));
    ``dispensary`` under dispensary observation (True); ``tz`` IANA zone ("UTC");
    ``physician``, ``nurse``, ``personal_admin`` registered staff ids (None); ``targets``
    the targets JSON of ``add_patients`` ({}).
    """

    id: str
    programmes: NotRequired[Sequence[str]]
    dispensary: NotRequired[bool]
    tz: NotRequired[str]
    physician: NotRequired[str | None]
    nurse: NotRequired[str | None]
    personal_admin: NotRequired[str | None]
    targets: NotRequired[Mapping]


@dataclasses.dataclass(frozen=True)
class Rejected:
    """A patient ``add_patients`` refused: its position in the list, a RegistryError
    reason, the message, the offending value."""

    index: int
    reason: str
    message: str
    value: object


@dataclasses.dataclass(frozen=True)
class PatientsAdded:
    """What ``add_patients`` did: ``valid`` patients passed the checks, ``added`` were
    registered (0 when nothing was written), ``rejected`` the others, in list order."""

    valid: int
    added: int
    rejected: list[Rejected]


# A device to register, and bind, with ``add_devices`` (a TypedDict: "from" is a keyword).
# ``id`` a device id or BLE address (``add_device``); ``kind`` one of OPERATOR_KINDS; when
# ``patient`` (a registered patient id) is given, a binding as ``bind`` makes: ``from`` ms
# UTC (default 0, the beginning of time), ``to`` ms UTC exclusive (None = open end),
# ``user`` slot (None = any slot). Without a patient, from/to/user are not given.
DeviceIn = TypedDict("DeviceIn", {"id": str, "kind": str, "patient": NotRequired[str | None],
                                  "from": NotRequired[int], "to": NotRequired[int | None],
                                  "user": NotRequired[int | None]})


@dataclasses.dataclass(frozen=True)
class DevicesAdded:
    """What ``add_devices`` did: ``valid`` entries passed the checks, ``added`` devices
    were registered or given their kind and ``bound`` bindings made (both 0 when nothing
    was written), ``rejected`` the other entries, in list order."""

    valid: int
    added: int
    bound: int
    rejected: list[Rejected]


@dataclasses.dataclass(frozen=True)
class ReadingColumns:
    """A patient's stored readings (bp, glu, cgm) as columns, by measurement time then id.

    ``id`` int64 reading ids; ``t`` int64 ms UTC; ``kind`` uint8 ``core.codes.Kind``;
    ``sys``, ``dia`` float64 mmHg, ``pul`` float64 beats/min, ``glu`` float64 mmol/L, NaN
    when absent (a censored glucose has NaN and RANGE_LO or RANGE_HI in flags); ``flags``
    uint16 ``core.codes.Flag``; ``device`` int32, the position of the reading's device in
    ``device_ids``.
    """

    id: np.ndarray
    t: np.ndarray
    kind: np.ndarray
    sys: np.ndarray
    dia: np.ndarray
    pul: np.ndarray
    glu: np.ndarray
    flags: np.ndarray
    device: np.ndarray
    device_ids: tuple[str, ...]

    def __len__(self) -> int:
        return len(self.t)


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


def _key_rows(rows: Sequence[tuple]) -> np.ndarray:
    """KEY_DTYPE of (device, dedup_tag, dedup_key, fingerprint, t) rows as SQL has them
    (the uint64 columns as the int64 of the same bits)."""
    signed = np.array(rows, dtype=[("device", "<i4"), ("tag", "u1"), ("key", "<i8"), ("fingerprint", "<i8"),
                                   ("t", "<i8")])
    keys = np.zeros(len(signed), dtype=KEY_DTYPE)
    keys["device"], keys["tag"], keys["t"] = signed["device"], signed["tag"], signed["t"]
    keys["key"], keys["fingerprint"] = signed["key"].view(np.uint64), signed["fingerprint"].view(np.uint64)
    return keys


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

    _MIGRATIONS = MIGRATIONS  # the dialect's DDL of the numbered migrations
    _db_error: type[Exception] = sqlite3.Error  # what the connection raises
    _integrity_error: type[Exception] = sqlite3.IntegrityError  # a constraint refused a row

    def __init__(self, conn: sqlite3.Connection, path: str, busy_timeout_ms: int) -> None:
        """Use ``Store.open``."""
        self._conn = conn
        self.path = path
        self._timeout = busy_timeout_ms
        self._data_version = -1
        self._registry_version = 0
        self._tight = False  # the disk has less than WAL_HEADROOM_BYTES free (see _mind_the_wal)

    # -- opening ------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike, *, synchronous: Synchronous = "FULL",
             busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> Store:
        """Open (creating it and its folder if needed) the database at ``path`` and apply
        pending migrations. A ``postgresql://`` (or ``postgres://``) URL opens that
        PostgreSQL database instead (``gateway.store.pg.PgStore``, same methods).

        ``synchronous``: FULL (default: a committed batch survives power loss, DESIGN.md) or
        NORMAL (survives a crash of the process, may lose the last commits on power loss).
        ``busy_timeout_ms``: how long a write waits for another connection's lock before
        failing with StoreError(reason="LOCKED").
        """
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        path = os.fspath(path)
        if is_url(path):
            from .pg import PgStore

            return PgStore.open_url(path, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        except OSError as error:
            raise StoreError("CANTOPEN", f"cannot create the folder of {path}: {error}") from error
        try:
            conn = sqlite3.connect(path, isolation_level=None, timeout=busy_timeout_ms / 1000,
                                   check_same_thread=False, cached_statements=256)
        except sqlite3.Error as error:
            raise _store_error(error, busy_timeout_ms, path) from error
        store = cls(conn, path, busy_timeout_ms)
        try:
            for pragma in PRAGMAS_NEW_DB + PRAGMAS + (f"PRAGMA synchronous = {synchronous}",):
                conn.execute(pragma)
            store._migrate()
        except sqlite3.Error as error:
            conn.close()
            raise _store_error(error, busy_timeout_ms, path) from error
        except StoreError:
            conn.close()
            raise
        return store

    def _migrate(self) -> None:
        conn = self._conn
        conn.execute(SCHEMA_TABLE)
        applied = {v for (v,) in conn.execute("SELECT version FROM schema_migrations")}
        for version, name, statements in self._MIGRATIONS:
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
            if isinstance(error, self._db_error):
                raise self._store_error(error) from error
            raise
        self._mind_the_wal()

    def _store_error(self, error: Exception) -> StoreError:
        """The StoreError of an error the connection raised."""
        return _store_error(error, self._timeout, self.path)

    def _mind_the_wal(self) -> None:
        """After a commit: on a disk with less than WAL_HEADROOM_BYTES free, checkpoint (and
        have the WAL cut back to TIGHT_WAL_BYTES when it restarts). Never raises: what was
        committed stays committed; a checkpoint with no room for the database file yet is
        tried again after the next commit."""
        free = disk_free_bytes(self.path)
        tight = free is not None and free < WAL_HEADROOM_BYTES
        with contextlib.suppress(sqlite3.Error):
            if tight != self._tight:
                self._conn.execute(JOURNAL_SIZE_LIMIT.format(limit=TIGHT_WAL_BYTES if tight else -1))
                self._tight = tight
            if tight:
                self._conn.execute(CHECKPOINT).fetchall()

    def _rows(self, sql: str, params: Sequence | Mapping = ()) -> Iterator[tuple]:
        """The rows of a query one at a time (for results too large to hold as a list)."""
        try:
            yield from self._conn.execute(sql, params)
        except self._db_error as error:
            raise self._store_error(error) from error

    def _read(self, sql: str, params: Sequence | Mapping = ()) -> list[tuple]:
        try:
            return self._conn.execute(sql, params).fetchall()
        except self._db_error as error:
            raise self._store_error(error) from error

    # -- the batch ----------------------------------------------------------------------

    def commit_batch(self, batch: np.ndarray, *, now_ms: int, payloads: Sequence[bytes] = (),
                     message: np.ndarray | None = None, element: np.ndarray | None = None,
                     topics: Sequence[str | None] | None = None, details: Mapping[int, str] | None = None,
                     meal: np.ndarray | None = None, battery: np.ndarray | None = None,
                     alerts: Sequence[AlertIn] = (), windows: Mapping[str, np.ndarray] | None = None,
                     replayed: np.ndarray | None = None,
                     publisher_acks: Mapping[str, Mapping[str, int]] | None = None,
                     ack_seqs: Mapping[str, Mapping[str, np.ndarray]] | None = None,
                     day_sums: Callable[[np.ndarray], np.ndarray] | None = None,
                     day_close: DayClose | None = None) -> CommitResult:
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
        replayed : int64[n], optional
            A quarantine replay (``gateway.replay``): the quarantine row each row of the
            batch re-ingests. No quarantine row is added: those rows are settled instead
            (``_settle_replayed``), and the counters move from their old reason rather than
            count a new arrival.
        publisher_acks : {"dev" | "hub": {publisher id: seq}}, optional
            The acks this batch moves (``publisher_acks`` reads them back): saved in the
            same transaction, so an ack is on disk exactly when what it confirms is, and a
            restarted gateway continues each publisher's contiguous run.
        ack_seqs : {"dev" | "hub": {publisher id: int64[k]}}, optional
            Instead of ``publisher_acks``, when several gateways share the database
            (``pmpgw run --shared``): the sequence numbers this batch committed (stored,
            duplicate or quarantined) of each publisher. The acks are advanced here, from
            what every gateway committed (``_advance_acks``); ``CommitResult.acks`` says
            which to publish.
        day_sums : callable, optional
            Gateways sharing the store: ``day_sums(stored)`` (``stored`` bool[n], the rows
            this transaction inserted, not those the store already held) returns those
            rows' daily window sums (DAY_SUMS_DTYPE), which are ADDED to the store's.
        day_close : DayClose, optional
            Gateways sharing the store: claim the days that closed and raise their window
            alerts from the store's daily sums (see ``DayClose``).

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
            if replayed is not None:
                quarantined, moved = self._settle_replayed(conn, replayed, reason, now_ms, details or {})
            elif len(bad):
                quarantined = self._insert_quarantine(conn, batch, bad, reason[bad], now_ms, payloads, message,
                                                      element, topics, details or {})
            is_new = reason == Reason.OK
            if day_sums is not None and is_new.any():
                self._add_day_sums(conn, day_sums(is_new))
            if day_close is not None:
                alerts = [*alerts, *self._close_days(conn, day_close, now_ms)]
            # In (patient, rule) order: two transactions raising alerts of one patient (on
            # PostgreSQL, each holding its alerts' locks to COMMIT) take them in one order.
            for alert in sorted(alerts, key=lambda alert: (alert["patient"], alert["rule"])):
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
            conn.executemany(ADD_COUNTER, counters if replayed is None else moved)
            conn.executemany(SET_KV, ((f"{ACK_KEY_PREFIX}{route}.{publisher}", seq)
                                      for route, acks in (publisher_acks or {}).items()
                                      for publisher, seq in acks.items()))
            acks_out = self._advance_acks(conn, ack_seqs) if ack_seqs else {}
            alerts_out = [self._alert_json(conn, alert_id) for alert_id, notify in notify_ids.items() if notify]
        return CommitResult(stored=stored, duplicate=duplicate, quarantined=quarantined, reason=reason,
                            reading_ids=reading_ids, alerts=alerts_out,
                            alerts_updated=len(notify_ids) - len(alerts_out), acks=acks_out)

    @staticmethod
    def _advance_acks(conn: sqlite3.Connection, ack_seqs: Mapping[str, Mapping[str, np.ndarray]]
                      ) -> dict[str, dict[str, int]]:
        """Advance the ack of each publisher of ``ack_seqs`` over the contiguous run of the
        sequence numbers committed by every gateway sharing the database (the ack in kv, the
        seqs held above it by a gap in ``ack_seqs``, migration 5); the acks to publish
        (``CommitResult.acks``). Inside the batch's write transaction, the publishers' ack
        rows locked first (``LOCK_ACKS``): two gateways advancing one publisher take turns
        and the second sees the first's seqs. A publisher without an ack starts its run at
        its lowest seq in this batch, as ``gateway.acks.ContiguousAcks`` does in memory."""
        seqs = {f"{ACK_KEY_PREFIX}{route}.{publisher}": sorted(set(np.asarray(values).tolist()))
                for route, publishers in ack_seqs.items() for publisher, values in publishers.items()
                if len(values)}
        keys = sorted(seqs)
        if not keys:
            return {}
        conn.execute(NEW_ACKS, (json.dumps([[key, seqs[key][0] - 1] for key in keys]),))
        before = dict(conn.execute(LOCK_ACKS, (json.dumps(keys),)).fetchall())
        held: dict[str, list[int]] = {}
        for key, seq in conn.execute(SELECT_ACK_SEQS, (json.dumps(keys),)).fetchall():
            held.setdefault(key, []).append(seq)
        gapped = ContiguousAcks(before)
        moved, above, out = [], [], {}
        for key in keys:
            batch, acked = seqs[key], before[key]
            fresh = [seq for seq in batch if seq > acked]
            if key not in held and fresh and fresh[-1] - acked == len(fresh):
                now = fresh[-1]  # the common case: one run right after the ack, nothing held
            else:
                gapped.commit(key, held.get(key, []) + fresh)
                now = gapped.acked(key)
                kept = set(held.get(key, ()))
                above += [[key, seq] for seq in gapped.above(key) if seq not in kept]
            if now != acked:
                moved.append([key, now])
            if now != acked or batch[0] <= now:  # moved, or a re-send of what is acked: say it again
                route, publisher = key[len(ACK_KEY_PREFIX):].split(".", 1)
                out.setdefault(route, {})[publisher] = now
        if moved:
            conn.execute(SET_ACKS, (json.dumps(moved),))
        if above:
            conn.execute(INSERT_ACK_SEQS, (json.dumps(above),))
        released = [key for key, now in moved if min(held.get(key, [now + 1])) <= now]
        if released:
            conn.execute(DELETE_ACKED_SEQS, (json.dumps(released),))
        return out

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

    @staticmethod
    def _add_day_sums(conn: sqlite3.Connection, sums: np.ndarray) -> None:
        """Add DAY_SUMS_DTYPE rows to the store's daily sums, in (patient, metric, day) order."""
        sums = np.sort(sums, order=["patient", "metric", "day"])
        conn.executemany(ADD_DAY_SUMS, (
            (patient, metric, day, *acc) for patient, metric, day, acc in
            zip(sums["patient"].tolist(), sums["metric"].tolist(), sums["day"].tolist(), sums["acc"].tolist())))

    def window_sums_seeded(self) -> bool:
        """Whether a gateway was started shared on this database (``seed_day_sums``): its
        window state is the store's daily sums, which every writer must then add to."""
        return bool(self._read(GET_KV, (DAY_SUMS_SEEDED_KEY,)))

    def seed_day_sums(self, day_sums: Callable[[], np.ndarray], *, now_ms: int) -> bool:
        """Once per database, by the first gateway started to share it: add ``day_sums()``
        (DAY_SUMS_DTYPE: its window state, whole while one gateway wrote the store) to the
        store's daily sums, in the transaction that records it was done. True if this call
        did it; another gateway starting at the same time waits for it, then does nothing."""
        with self._write() as conn:
            if not conn.execute(CLAIM_KV, (DAY_SUMS_SEEDED_KEY, now_ms)).fetchall():
                return False
            sums = np.sort(day_sums(), order=["patient", "metric", "day"])
            for start in range(0, len(sums), SEED_CHUNK_ROWS):
                self._add_day_sums(conn, sums[start:start + SEED_CHUNK_ROWS])
        return True

    @staticmethod
    def _close_days(conn: sqlite3.Connection, close: DayClose, now_ms: int) -> Sequence[AlertIn]:
        """Claim ``close``'s (patient, day) pairs with sums, read their sums, evaluate them."""
        if not len(close.patients):
            return []
        pairs = json.dumps(np.column_stack([close.patients, close.days]).astype(np.int64).tolist())
        claimed = np.array(conn.execute(CLAIM_DAY_CLOSES, (now_ms, pairs)).fetchall(), dtype=np.int64).reshape(-1, 2)
        oldest = int(np.min(close.days)) - RING_DAYS
        conn.execute(PRUNE_DAY_SUMS, (oldest,))
        conn.execute(PRUNE_DAY_CLOSES, (oldest,))
        if not len(claimed):
            return []
        rows = conn.execute(SELECT_DAY_SUMS, (json.dumps(claimed.tolist()),)).fetchall()
        sums = np.zeros(len(rows), dtype=DAY_SUMS_DTYPE)
        if rows:
            columns = np.array(rows, dtype=np.float64)
            sums["patient"], sums["metric"], sums["day"], sums["acc"] = (
                columns[:, 0], columns[:, 1], columns[:, 2], columns[:, 3:])
        return close.evaluate(claimed[:, 0].astype(np.int32), claimed[:, 1].astype(np.int32), sums)

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
        return self._alert_dict(conn, conn.execute(SELECT_ALERT, (alert_id,)).fetchone())

    @staticmethod
    def _alert_dict(conn: sqlite3.Connection, row: tuple) -> dict:
        """The alert JSON of DESIGN.md (plus escalated, escalated_at, occurrences) of a row
        of SELECT_ALERT / SELECT_ALERTS."""
        alert = dict(zip(ALERT_KEYS, row))
        alert["route"], alert["values"] = json.loads(alert["route"]), json.loads(alert["values"])
        alert["late"] = bool(alert["late"])
        alert["readings"] = [r for (r,) in conn.execute(SELECT_ALERT_READINGS, (alert["id"],))]
        return alert

    # -- dedup and window state ---------------------------------------------------------

    def dedup_keys(self, since_t: int | None = None) -> np.ndarray:
        """Keys of stored readings measured at or after ``since_t`` (ms UTC; all when None),
        as ``core.dedup_keys.KEY_DTYPE`` sorted by (device, tag, key), for ``DedupTable.from_keys``."""
        keys = _key_rows(self._read(SELECT_KEYS, (_T_MIN if since_t is None else since_t,)))
        return np.sort(keys, order=["device", "tag", "key"])

    def dedup_key_chunks(self, since_t: int | None = None, rows: int = KEY_CHUNK_ROWS) -> Iterator[np.ndarray]:
        """The keys of ``dedup_keys`` (unsorted) in KEY_DTYPE chunks of up to ``rows``: a
        gateway start fills its bounded dedup table from them without holding every stored
        key, as Python rows, at once (~200 bytes a key that way, 29 bytes in a chunk)."""
        cursor = self._rows(SELECT_KEYS, (_T_MIN if since_t is None else since_t,))
        while chunk := list(itertools.islice(cursor, rows)):
            yield _key_rows(chunk)

    def highest_seqs_before(self, t: int) -> tuple[np.ndarray, np.ndarray]:
        """(device int32[k], seq int64[k]): each device's highest sequence number (seq and
        context-seq keys) among readings measured before ``t`` (ms UTC): what a dedup table
        filled with the keys from ``t`` on does not hold (``DedupTable.add_evicted_seqs``)."""
        rows = self._read(SELECT_SEQ_BEFORE, (TAG_FINGERPRINT, t))
        return np.array([d for d, _ in rows], dtype=np.int32), np.array([s for _, s in rows], dtype=np.int64)

    def stored_keys(self, device: np.ndarray, tag: np.ndarray, key: np.ndarray) -> np.ndarray:
        """KEY_DTYPE rows of the stored readings with the dedup keys (device int32[k], tag
        uint8[k], key uint64[k]; a key asked twice is found once), in no particular order:
        ONE query, a search of the UNIQUE index per key (``DedupTable.check_and_insert``'s
        ``recall``)."""
        if not len(device):
            return np.zeros(0, dtype=KEY_DTYPE)
        triples = np.unique(np.column_stack([np.asarray(device, dtype=np.int64), np.asarray(tag, dtype=np.int64),
                                             np.asarray(key, dtype=np.uint64).view(np.int64)]), axis=0)
        return _key_rows(self._read(SELECT_STORED_KEYS, (json.dumps(triples.tolist()),)))

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
        acc = empty_slots(len(tz_min))
        per_patient = acc.reshape(-1, *_ACC_SHAPE)
        for patient, blob in self._rows(SELECT_WINDOWS, (len(tz_min),)):  # one ~3 KiB blob at a time
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
    #
    # Every change bumps the registry version (a running gateway reloads devices, patients,
    # bindings and thresholds on it) and is recorded in ``audit`` with its actor: a staff
    # id, CLI_ACTOR or GATEWAY_ACTOR.

    def _bump_registry(self, conn: sqlite3.Connection) -> None:
        conn.execute(ADD_COUNTER, (REGISTRY_VERSION_KEY, 1))
        self._data_version = -1  # PRAGMA data_version ignores this connection's own commits

    @staticmethod
    def _audit(conn: sqlite3.Connection, at_ms: int, actor: str, action: str, subject: str | None,
               detail: Mapping) -> None:
        conn.execute(INSERT_AUDIT, (at_ms, actor, action, subject, json.dumps(detail, separators=(",", ":"))))

    def add_staff(self, staff_id: str, name: str, role: str, *, actor: str = CLI_ACTOR) -> None:
        """Register a staff member; ``role`` one of STAFF_ROLES, ``name`` not empty."""
        _check_id(staff_id, "staff id")
        if role not in STAFF_ROLES:
            raise RegistryError("INVALID", f"role {role!r} is not one of {', '.join(STAFF_ROLES)}", role)
        if not name.strip():
            raise RegistryError("INVALID", f"staff member {staff_id!r} needs a name", name)
        with self._write() as conn:
            try:
                conn.execute(INSERT_STAFF, (staff_id, name.strip(), role))
            except self._integrity_error:
                raise RegistryError("EXISTS", f"staff member {staff_id!r} already exists", staff_id) from None
            self._audit(conn, _now_ms(), actor, "staff.add", staff_id, {"name": name.strip(), "role": role})
            self._bump_registry(conn)

    def staff(self, *, role: str | None = None, limit: int = 10_000) -> list[dict]:
        """Staff members (dicts with id, name, role) by id, of one role or all."""
        return [dict(zip(("id", "name", "role"), row))
                for row in self._read(SELECT_STAFF_LIST, {"role": role, "limit": limit})]

    def add_device(self, device_id: str, kind: str, *, now_ms: int | None = None, actor: str = CLI_ACTOR) -> int:
        """Register a device (a BLE meter behind a hub by its address); return its index.

        A device the gateway registered on first sight with kind "unknown" takes ``kind``
        (same index); any other registered id is EXISTS.
        """
        _check_device_id(device_id)
        if kind not in DEVICE_KINDS:
            raise RegistryError("INVALID", f"device kind {kind!r} is not one of {', '.join(DEVICE_KINDS)}", kind)
        now_ms = _now_ms() if now_ms is None else now_ms
        with self._write() as conn:
            row = conn.execute(DEVICE_ROW, (device_id,)).fetchone()
            if row is None:
                idx = conn.execute(NEXT_DEVICE_IDX).fetchone()[0]
                conn.execute(INSERT_DEVICE, (device_id, idx, kind, now_ms))
                self._audit(conn, now_ms, actor, "device.add", device_id, {"kind": kind})
            elif row[1] == "unknown" and kind != "unknown":
                idx = row[0]
                conn.execute(SET_DEVICE_KIND, (kind, idx))
                self._audit(conn, now_ms, actor, "device.kind", device_id, {"kind": kind, "was": "unknown"})
            else:
                raise RegistryError("EXISTS", f"device {device_id!r} already exists (kind {row[1]})", device_id)
            self._bump_registry(conn)
        return idx

    def retire_device(self, device_id: str, at_ms: int, *, actor: str = CLI_ACTOR) -> int:
        """Take a device out of service at ``at_ms`` (ms UTC): its bindings that hold
        ``at_ms`` end there, and it can never be bound again. Returns how many bindings ended.

        RegistryError UNKNOWN (no such device), RETIRED (retired already), STATE (a
        binding of it starts at or after ``at_ms``: retire it later).
        """
        with self._write() as conn:
            idx, _, retired, _ = self._device_row(conn, device_id)
            if retired is not None:
                raise RegistryError("RETIRED", f"device {device_id!r} was retired at {format_ms(retired)}",
                                    device_id)
            later = conn.execute(BINDING_FROM, (idx, at_ms)).fetchone()
            if later is not None:
                raise RegistryError("STATE", f"device {device_id!r} is bound to patient {later[0]!r} from "
                                             f"{format_ms(later[1])}, not before {format_ms(at_ms)}: retire it "
                                             "after that binding starts", at_ms)
            closed = conn.execute(CLOSE_BINDINGS_AT, {"at": at_ms, "device": idx}).rowcount
            conn.execute(RETIRE_DEVICE, (at_ms, idx))
            revoked = conn.execute(DELETE_ACCOUNT, (idx,)).rowcount
            self._audit(conn, _now_ms(), actor, "device.retire", device_id,
                        {"at": at_ms, "bindings_ended": closed, "account_revoked": bool(revoked)})
            self._bump_registry(conn)
            conn.execute(ADD_COUNTER, (ACCOUNTS_VERSION_KEY, 1))
        return closed

    def issue_credentials(self, device_ids: Sequence[str], *, actor: str = CLI_ACTOR) -> dict[str, str]:
        """Give registered devices and hubs new broker passwords (an old one, if any, stops
        working) in one transaction; return id -> password. Passwords are stored only as
        their hashes, so this is the one time they can be shown. An account's user name is
        the device id.

        RegistryError, nothing issued: UNKNOWN (not registered), RETIRED, INVALID (a kind
        that does not connect to the broker: a BLE meter, which its hub relays, or a device
        of unknown kind), and the reasons of ``broker_accounts.check_username``.
        """
        for device_id in device_ids:
            try:
                broker_accounts.check_username(device_id)
            except broker_accounts.AccountError as error:
                raise RegistryError(error.reason, str(error), error.value) from None
        if not device_ids:
            return {}
        passwords = {device_id: broker_accounts.new_password() for device_id in device_ids}
        now_ms = _now_ms()
        with self._write() as conn:
            rows = []
            for device_id, password in passwords.items():
                idx, kind, retired, _ = self._device_row(conn, device_id)
                if retired is not None:
                    raise RegistryError("RETIRED", f"device {device_id!r} was retired at {format_ms(retired)}: it "
                                                   "gets no broker account", device_id)
                if not broker_accounts.connects(device_id, kind):
                    raise RegistryError("INVALID", f"device {device_id!r} is of kind {kind!r}, which does not "
                                                   "connect to the broker (register its kind: pmpgw devices add)", kind)
                rows.append((idx, broker_accounts.hash_password(password), now_ms))
            conn.executemany(UPSERT_ACCOUNT, rows)
            self._audit(conn, now_ms, actor, "devices.credentials", device_ids[0] if len(device_ids) == 1 else None,
                        {"issued": len(rows)})
            conn.execute(ADD_COUNTER, (ACCOUNTS_VERSION_KEY, 1))
        return passwords

    def issue_dashboard_account(self, name: str, *, actor: str = CLI_ACTOR) -> str:
        """Give dashboard ``name`` (user name ``broker_accounts.dashboard_username(name)``) a
        new broker password, creating the account if needed, and return it (shown once: only
        its hash is kept). RegistryError INVALID for a name that cannot be a user name."""
        try:
            broker_accounts.dashboard_username(name)
        except broker_accounts.AccountError as error:
            raise RegistryError(error.reason, str(error), error.value) from None
        password = broker_accounts.new_password()
        now_ms = _now_ms()
        with self._write() as conn:
            conn.execute(UPSERT_DASHBOARD, (name, broker_accounts.hash_password(password), now_ms))
            self._audit(conn, now_ms, actor, "dashboard.credentials", name, {})
            conn.execute(ADD_COUNTER, (ACCOUNTS_VERSION_KEY, 1))
        return password

    def revoke_dashboard_account(self, name: str, *, actor: str = CLI_ACTOR) -> None:
        """Delete dashboard ``name``'s account; RegistryError UNKNOWN if it has none."""
        with self._write() as conn:
            if not conn.execute(DELETE_DASHBOARD, (name,)).rowcount:
                raise RegistryError("UNKNOWN", f"dashboard {name!r} has no broker account", name)
            self._audit(conn, _now_ms(), actor, "dashboard.revoke", name, {})
            conn.execute(ADD_COUNTER, (ACCOUNTS_VERSION_KEY, 1))

    def dashboards(self) -> list[dict]:
        """Dashboard accounts by name: dicts with name, username, issued (ms UTC)."""
        return [{"name": name, "username": broker_accounts.dashboard_username(name), "issued": issued}
                for name, _, issued in self._read(SELECT_DASHBOARDS)]

    def broker_accounts(self) -> list[broker_accounts.Account]:
        """The broker accounts of devices and hubs in service (by registry index) and of dashboards."""
        devices = [broker_accounts.Account(device_id, broker_accounts.DEVICE_ROLES[kind], password_hash)
                   for device_id, kind, password_hash in self._read(SELECT_ACCOUNTS)]
        return devices + [broker_accounts.Account(broker_accounts.dashboard_username(name), "dashboard", password_hash)
                          for name, password_hash, _ in self._read(SELECT_DASHBOARDS)]

    def broker_accounts_version(self) -> int:
        """A number that changes whenever an account is issued or revoked (cheap to poll)."""
        row = self._read(GET_KV, (ACCOUNTS_VERSION_KEY,))
        return int(row[0][0]) if row else 0

    def devices(self, *, kind: str | None = None, at_ms: int | None = None, limit: int = 10_000) -> list[dict]:
        """Devices by index: dicts with id, kind, created, retired (ms UTC or None) and
        ``patients``, the ids of the patients bound to it at ``at_ms`` (default now; several
        for a meter shared by user slots)."""
        rows = self._read(SELECT_DEVICES, {"kind": kind, "at": _now_ms() if at_ms is None else at_ms,
                                           "limit": limit})
        return [{"id": device_id, "kind": device_kind, "created": created, "retired": retired,
                 "patients": sorted(patients.split(",")) if patients else []}
                for device_id, device_kind, created, retired, patients in rows]

    def device(self, device_id: str, *, at_ms: int | None = None) -> dict:
        """One device (as in ``devices``) with its bindings, oldest first: dicts with
        patient, user (slot or None), from, to (ms UTC; None = open end) and current (holds
        ``at_ms``, default now). RegistryError UNKNOWN if not registered."""
        at_ms = _now_ms() if at_ms is None else at_ms
        row = self._read(DEVICE_ROW, (device_id,))
        if not row:
            raise RegistryError("UNKNOWN", f"device {device_id!r} is not registered", device_id)
        idx, kind, retired, created = row[0]
        bindings = [{"patient": patient, "user": user, "from": start, "to": end,
                     "current": start <= at_ms and (end is None or at_ms < end)}
                    for patient, user, start, end in self._read(DEVICE_BINDINGS, (idx,))]
        return {"id": device_id, "kind": kind, "created": created, "retired": retired,
                "patients": sorted(b["patient"] for b in bindings if b["current"]), "bindings": bindings}

    def add_patient(self, patient_id: str, *, programmes: Sequence[str] = ("AH",), tz: str = "UTC",
                    dispensary: bool = True, physician: str | None = None, nurse: str | None = None,
                    personal_admin: str | None = None, targets: Mapping | None = None,
                    now_ms: int | None = None, actor: str = CLI_ACTOR) -> int:
        """Register one patient (fields and targets as in ``add_patients``); return its
        index. RegistryError with the reason of its first problem."""
        added = self.add_patients([PatientIn(id=patient_id, programmes=programmes, tz=tz, dispensary=dispensary,
                                             physician=physician, nurse=nurse, personal_admin=personal_admin,
                                             targets=targets or {})], now_ms=now_ms, actor=actor)
        if added.rejected:
            bad = added.rejected[0]
            raise RegistryError(bad.reason, bad.message, bad.value)
        return self._patient_idx(self._conn, patient_id)

    def add_patients(self, patients: Sequence[PatientIn], *, skip_bad: bool = False, check_only: bool = False,
                     source: str | None = None, now_ms: int | None = None, actor: str = CLI_ACTOR) -> PatientsAdded:
        """Register patients in ONE transaction: all of them, or none if any is bad (unless
        ``skip_bad``: the good ones). ``check_only``: check, write nothing.

        Checks, each bad patient rejected with the first it fails (``Rejected``): id
        (INVALID), not registered and not earlier in the list (EXISTS), programmes
        (INVALID), time zone (INVALID), staff ids registered (UNKNOWN), targets (INVALID).
        The registry is asked once which of the list's ids and staff ids it holds (one query
        each, whatever the list's length and the registry's size); the patients are written
        with one executemany, the registry version is bumped once and one audit row (action
        ``patients.add``, ``source`` e.g. the file name) records the call. Patients get
        consecutive indexes in list order.

        ``tz``'s UTC offset at ``now_ms`` is stored as utc_offset_min (what windows use for
        the local day).

        Targets JSON (the ``targets`` column): an object whose keys are optional::

            {"home_sys": 130, "home_dia": 80,      # any name of core.rule_tables.THRESHOLDS: the
             "tir_low": 4.0, "tir_high": 9.0,      #   patient's value in its unit (mmHg,
                                                   #   mmol/L, ...), a positive number
             "plan": {"bp": 1, "glu": 3, "cgm": 1}}  # measurement plan: a reading of each
                                                     #   metric is expected every N days

        Threshold names override the defaults of ``core.rule_tables.THRESHOLDS`` for this patient
        in the core's rules and windows (``thresholds``): the BP target SYS/DIA is
        home_sys/home_dia (BP_HOME_HIGH), the glucose range LOW-HIGH is tir_low/tir_high
        (CGM_TIR). ``plan`` keys are PLAN_METRICS, days a positive number up to
        MAX_PLAN_DAYS; the MISSED sweep expects every metric of the patient's programmes
        (AH: bp; DM1, DM2: glu) every 3 days unless the plan says otherwise.
        """
        now_ms = _now_ms() if now_ms is None else now_ms
        offsets: dict[str, int | None] = {}
        rows: list[tuple] = []
        rejected: list[Rejected] = []
        ids = json.dumps([p.get("id") for p in patients])
        staff_ids = json.dumps(list({p[role] for p in patients for role in _STAFF_FIELDS if p.get(role)}))
        with self._write() as conn:
            known = {patient_id for (patient_id,) in conn.execute(PATIENT_IDS_AMONG, (ids,))}
            staff = {staff_id for (staff_id,) in conn.execute(STAFF_IDS_AMONG, (staff_ids,))}
            next_idx = conn.execute(NEXT_PATIENT_IDX).fetchone()[0]
            for index, patient in enumerate(patients):
                try:
                    row = _patient_row(patient, next_idx + len(rows), now_ms, known, staff, offsets)
                except RegistryError as error:
                    rejected.append(Rejected(index, error.reason, str(error), error.value))
                    continue
                known.add(row[0])
                rows.append(row)
            if check_only or not rows or (rejected and not skip_bad):
                return PatientsAdded(valid=len(rows), added=0, rejected=rejected)
            conn.executemany(INSERT_PATIENT, rows)
            self._audit(conn, now_ms, actor, "patients.add", rows[0][0] if len(rows) == 1 else None,
                        {"added": len(rows), "rejected": len(rejected), "source": source})
            self._bump_registry(conn)
        return PatientsAdded(valid=len(rows), added=len(rows), rejected=rejected)

    def patients(self, *, programme: str | None = None, physician: str | None = None, nurse: str | None = None,
                 personal_admin: str | None = None, limit: int = 10_000) -> list[dict]:
        """Patients by index, each filter optional: dicts with id, programmes (list),
        dispensary (bool), tz, utc_offset_min, physician, nurse, personal_admin (None if
        not set), targets (the targets JSON of ``add_patients``), created (ms UTC)."""
        rows = self._read(SELECT_PATIENTS, {"programme": programme, "physician": physician, "nurse": nurse,
                                            "personal_admin": personal_admin, "limit": limit})
        return [_patient_dict(row) for row in rows]

    def patient(self, patient_id: str, *, at_ms: int | None = None) -> dict:
        """One patient (as in ``patients``) with the bindings of devices to it, oldest first:
        dicts with device, kind, user (slot or None), from, to (ms UTC; None = open end) and
        current (holds ``at_ms``, default now). RegistryError UNKNOWN if not registered."""
        at_ms = _now_ms() if at_ms is None else at_ms
        row = self._read(SELECT_PATIENT, (patient_id,))
        if not row:
            raise RegistryError("UNKNOWN", f"patient {patient_id!r} is not registered", patient_id)
        bindings = [{"device": device, "kind": kind, "user": user, "from": start, "to": end,
                     "current": start <= at_ms and (end is None or at_ms < end)}
                    for device, kind, user, start, end in self._read(PATIENT_BINDINGS, (row[0][0],))]
        return {**_patient_dict(row[0]), "bindings": bindings}

    def thresholds(self) -> np.ndarray:
        """float64[n_patients, N_PARAMS]: each patient's alert thresholds, by index, for the
        core (``core.Pipeline``): ``core.rule_tables.default_thresholds`` with the patient's
        targets of THRESHOLDS names written over them."""
        out = default_thresholds(self._read(NEXT_PATIENT_IDX)[0][0])
        rows = self._read(PATIENT_NUMBER_TARGETS)
        if rows:
            idx, names, values = zip(*rows)
            column = np.array([_THRESHOLD_COLUMNS.get(name, -1) for name in names], dtype=np.int64)
            known = column >= 0  # names the store did not write (an edited file) are ignored
            out[np.array(idx, dtype=np.int64)[known], column[known]] = np.array(values, dtype=np.float64)[known]
        return out

    def bind(self, device_id: str, patient_id: str, start_ms: int, end_ms: int | None = None, *,
             user: int | None = None, now_ms: int | None = None, actor: str = CLI_ACTOR) -> int:
        """Bind a device (and user slot; None = any slot) to a patient for [start_ms, end_ms)
        (None = open-ended); return the binding's id. A reading measured at start_ms
        belongs to this binding, one at end_ms does not.

        Raises RegistryError OVERLAP when the device and slot are bound for part of that
        interval already (unbind first), UNKNOWN for an unregistered device or patient,
        RETIRED for a retired device.
        """
        _check_binding(start_ms, end_ms, user)
        now_ms = _now_ms() if now_ms is None else now_ms
        with self._write() as conn:
            device, _, retired, _ = self._device_row(conn, device_id)
            if retired is not None:
                raise RegistryError("RETIRED", f"device {device_id!r} was retired at {format_ms(retired)}: it "
                                               "cannot be bound again", device_id)
            patient = self._patient_idx(conn, patient_id)
            end = OPEN_END if end_ms is None else end_ms
            clash = conn.execute(OVERLAPPING_BINDING, (device, user, end, start_ms)).fetchone()
            if clash:
                raise _overlap(device_id, user, *clash[1:])
            binding = conn.execute(INSERT_BINDING, (device, user, start_ms, end_ms, patient, now_ms)).lastrowid
            self._audit(conn, now_ms, actor, "bind", device_id,
                        {"patient": patient_id, "user": user, "from": start_ms, "to": end_ms})
            self._bump_registry(conn)
        return binding

    def unbind(self, device_id: str, end_ms: int, *, user: int | None = None, actor: str = CLI_ACTOR) -> str:
        """End the binding of the device (and slot; None = the any-slot binding) that holds
        ``end_ms``, at ``end_ms``: readings measured from then on are no longer its
        patient's. Returns that patient's id; RegistryError UNKNOWN if no binding holds
        ``end_ms`` (one that starts exactly then is not ended: it never held the device)."""
        with self._write() as conn:
            device = self._device_row(conn, device_id)[0]
            found = conn.execute(OPEN_BINDING_AT, (device, user, end_ms, end_ms)).fetchone()
            if found is None:
                slot = "" if user is None else f" user slot {user}"
                raise RegistryError("UNKNOWN", f"device {device_id!r}{slot} has no binding that holds "
                                               f"{format_ms(end_ms)} (see pmpgw devices show {device_id})", end_ms)
            conn.execute(CLOSE_BINDING, (end_ms, found[0]))
            self._audit(conn, _now_ms(), actor, "unbind", device_id, {"patient": found[1], "user": user, "at": end_ms})
            self._bump_registry(conn)
        return found[1]

    def add_devices(self, devices: Sequence[DeviceIn], *, skip_bad: bool = False, check_only: bool = False,
                    source: str | None = None, now_ms: int | None = None, actor: str = CLI_ACTOR) -> DevicesAdded:
        """Register devices and bind them to patients in ONE transaction: all of them, or
        none if any is bad (unless ``skip_bad``: the good ones). ``check_only``: check,
        write nothing.

        Each entry (``DeviceIn``) registers a device as ``add_device`` does (a device the
        gateway registered with kind "unknown" takes the entry's kind, same index) and, when
        it names a patient, binds it as ``bind`` does. An id earlier in the list is there
        again only to be bound again (another user slot of a shared meter, a later
        patient): with a patient and the same kind.

        Checks, each bad entry rejected with the first it fails (``Rejected``): id and kind
        (INVALID; kind one of OPERATOR_KINDS); a registered device retired (RETIRED) or of a
        known kind (EXISTS); an id earlier in the list without a patient or with another
        kind (EXISTS); from, to or user without a patient, an interval that ends before it
        starts, a slot outside 0..254 (INVALID); the patient registered (UNKNOWN: patients
        are registered before their devices); the binding overlapping one of the same device
        and slot, stored or earlier in the list (OVERLAP, as ``bind``). The registry is asked
        once for the list's devices, once for its patients and once for the bindings of its
        devices of kind "unknown" (one query each, whatever the list's length and the
        registry's size); new devices (consecutive indexes in list order), kinds and
        bindings are written with one executemany each, the registry version is bumped once
        and one audit row (action ``devices.add``, counts and ``source``, e.g. the file
        name) records the call.
        """
        now_ms = _now_ms() if now_ms is None else now_ms
        ids = json.dumps([device.get("id") for device in devices])
        patient_ids = json.dumps(list({d["patient"] for d in devices if d.get("patient") is not None}))
        new: list[tuple] = []
        kinds: list[tuple] = []
        bindings: list[tuple] = []
        rejected: list[Rejected] = []
        with self._write() as conn:
            stored = {row[0]: row[1:] for row in conn.execute(DEVICES_AMONG, (ids,))}
            patients = dict(conn.execute(PATIENT_IDX_AMONG, (patient_ids,)))
            unknown = json.dumps([idx for idx, kind, _ in stored.values() if kind == "unknown"])
            held: dict[tuple[int, int | None], list[tuple[int, int | None, str]]] = {}
            for device_idx, user, start, end, patient_id in conn.execute(BINDINGS_OF_DEVICES, (unknown,)):
                held.setdefault((device_idx, user), []).append((start, end, patient_id))
            listed: dict[str, tuple[int, str]] = {}
            next_idx = conn.execute(NEXT_DEVICE_IDX).fetchone()[0]
            for index, device in enumerate(devices):
                try:
                    idx, binding = _enrolment(device, stored, listed, patients, held, next_idx + len(new))
                except RegistryError as error:
                    rejected.append(Rejected(index, error.reason, str(error), error.value))
                    continue
                if device["id"] not in listed:
                    listed[device["id"]] = (idx, device["kind"])
                    if device["id"] in stored:
                        kinds.append((device["kind"], idx))
                    else:
                        new.append((device["id"], idx, device["kind"], now_ms))
                if binding is not None:
                    bindings.append((*binding, now_ms))
                    held.setdefault((idx, binding[1]), []).append((binding[2], binding[3], device["patient"]))
            valid = len(devices) - len(rejected)
            if check_only or not valid or (rejected and not skip_bad):
                return DevicesAdded(valid=valid, added=0, bound=0, rejected=rejected)
            conn.executemany(INSERT_DEVICE, new)
            conn.executemany(SET_DEVICE_KIND, kinds)
            conn.executemany(INSERT_BINDING, bindings)
            self._audit(conn, now_ms, actor, "devices.add", next(iter(listed)) if len(listed) == 1 else None,
                        {"added": len(new), "kinds_set": len(kinds), "bound": len(bindings),
                         "rejected": len(rejected), "source": source})
            self._bump_registry(conn)
        return DevicesAdded(valid=valid, added=len(new) + len(kinds), bound=len(bindings), rejected=rejected)

    @staticmethod
    def _device_row(conn: sqlite3.Connection, device_id: str) -> tuple[int, str, int | None, int]:
        """(idx, kind, retired, created) of a registered device; RegistryError UNKNOWN."""
        row = conn.execute(DEVICE_ROW, (device_id,)).fetchone()
        if row is None:
            raise RegistryError("UNKNOWN", f"device {device_id!r} is not registered: add it first", device_id)
        return row

    @staticmethod
    def _patient_idx(conn: sqlite3.Connection, patient_id: str) -> int:
        row = conn.execute(PATIENT_IDX, (patient_id,)).fetchone()
        if row is None:
            raise RegistryError("UNKNOWN", f"patient {patient_id!r} is not registered: add it first", patient_id)
        return row[0]

    def device_index(self) -> dict[str, int]:
        """Device id -> registry index."""
        return dict(self._read(ALL_DEVICES))

    def device_kinds(self) -> dict[str, str]:
        """Device id -> kind (DEVICE_KINDS)."""
        return dict(self._read(DEVICE_KINDS_OF_ALL))

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
                raise RegistryError("UNKNOWN", f"alert {alert_id} does not exist", alert_id)
            if by != GATEWAY_ACTOR and not conn.execute(SELECT_STAFF, (by,)).fetchone():
                raise RegistryError("UNKNOWN", f"staff member {by!r} is not registered: add them first", by)
            current = row[0]
            if current not in ALERT_TRANSITIONS[state]:
                last = conn.execute(SELECT_LAST_ALERT_EVENT, (alert_id, current)).fetchone()
                since = f" (by {last[1]} at {format_ms(last[0])})" if last else ""
                raise RegistryError("STATE", f"alert {alert_id} is already {current}{since}; it cannot become "
                                             f"{state}", current)
            conn.execute(SET_ALERT_STATE, (state, at_ms, alert_id))
            conn.execute(INSERT_ALERT_EVENT, (alert_id, at_ms, by, state, note))

    def acknowledge_alert(self, alert_id: int, *, by: str, at_ms: int, note: str | None = None) -> None:
        """open -> acknowledged, recorded with who and when."""
        self._transition(alert_id, "acknowledged", by, at_ms, note)

    def resolve_alert(self, alert_id: int, *, by: str, at_ms: int, note: str | None = None) -> None:
        """open or acknowledged -> resolved; a later alert of the rule opens a new one."""
        self._transition(alert_id, "resolved", by, at_ms, note)

    def escalate_alerts(self, now_ms: int) -> list[dict]:
        """Escalate every open emergency due at ``now_ms`` (ms UTC; ``gateway.escalation``),
        in one transaction: escalated + 1, escalated_at = now, an 'escalated' event by the
        gateway. Returns the alert JSON of each (with its new ``escalated``), to publish
        again. Idempotent: a second call at the same time escalates nothing."""
        with self._write() as conn:
            pending = [Pending(*row) for row in conn.execute(SELECT_ESCALATION_CANDIDATES,
                                                             (ESCALATED_STATE, ESCALATED_SEVERITY))]
            due = escalations_due(pending, now_ms)
            for alert_id, n in due:
                conn.execute(ESCALATE_ALERT, (n, now_ms, now_ms, alert_id))
                conn.execute(INSERT_ALERT_EVENT, (alert_id, now_ms, GATEWAY_ACTOR, "escalated",
                                                  f"escalation {n}: not acknowledged"))
            return [self._alert_json(conn, alert_id) for alert_id, _ in due]

    def alert(self, alert_id: int) -> dict:
        """One alert (as in ``alerts``) with its full history under ``events`` (as in
        ``alert_events``); RegistryError UNKNOWN if there is none of that id."""
        row = self._read(SELECT_ALERT, (alert_id,))
        if not row:
            raise RegistryError("UNKNOWN", f"alert {alert_id} does not exist", alert_id)
        return {**self._alert_dict(self._conn, row[0]), "events": self.alert_events(alert_id)}

    def alerts(self, *, patient: str | None = None, state: str | None = None, severity: str | None = None,
               role: str | None = None, staff: str | None = None, limit: int = 10_000) -> list[dict]:
        """Alerts (DESIGN.md alert JSON plus escalated, escalated_at, occurrences), each
        filter optional.

        Without ``role`` or ``staff``: every alert, oldest first. With either, a work queue:
        not-resolved alerts (unless ``state`` is given), most severe first, then oldest
        first. ``role`` (one of QUEUE_ROLES): alerts whose route holds it. ``staff``: the
        queue of a registered staff member, by their role (which replaces ``role``): the
        alerts routed to it of the patients they are physician / nurse / personal
        administrator of (a device administrator: every alert routed to device_admin);
        RegistryError UNKNOWN for an unregistered staff id, INVALID for a role (given, or
        the staff member's) without a queue (head, monitoring_admin).
        """
        columns: dict[str, str | None] = {column: None for column in QUEUE_PATIENT_COLUMN.values() if column}
        if staff is not None:
            row = self._read(SELECT_STAFF_ROLE, (staff,))
            if not row:
                raise RegistryError("UNKNOWN", f"staff member {staff!r} is not registered", staff)
            role = row[0][0]
            if role not in QUEUE_PATIENT_COLUMN:
                raise RegistryError("INVALID", f"staff member {staff!r} is {role}, a role without an alert "
                                               f"queue (queues: {', '.join(QUEUE_ROLES)})", role)
            if QUEUE_PATIENT_COLUMN[role] is not None:
                columns[QUEUE_PATIENT_COLUMN[role]] = staff
        elif role is not None and role not in QUEUE_PATIENT_COLUMN:
            raise RegistryError("INVALID", f"role {role!r} has no alert queue: use one of {', '.join(QUEUE_ROLES)}",
                                role)
        rows = self._read(SELECT_ALERTS, {
            "patient": patient, "state": state, "severity": severity, "role": role, **columns,
            "queue": role is not None, "severity_order": f",{','.join(SEVERITY_RANK)},", "limit": limit})
        return [self._alert_dict(self._conn, row) for row in rows]

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

    def alert_events(self, alert_id: int) -> list[dict]:
        """History of one alert: dicts with at, actor, action, note, oldest first."""
        return [dict(zip(("at", "actor", "action", "note"), row))
                for row in self._read(SELECT_ALERT_EVENTS, (alert_id,))]

    def alerts_open(self) -> dict[str, int]:
        """Not-resolved alerts by severity, most severe first (stats JSON ``alerts_open``)."""
        counts = dict(self._read(COUNT_OPEN_ALERTS))
        return {s: counts[s] for s in sorted(counts, key=SEVERITY_RANK.__getitem__)}

    def quarantine(self, *, device: str | None = None, reason: str | None = None, pending: bool = False,
                   limit: int = 10_000) -> list[dict]:
        """Quarantined rows, oldest first: dicts with id, device (None if unknown), reason,
        detail, type, seq, t, rx, element, replayed (ms UTC of the replay that stored the
        reading, None while it waits), topic and payload (raw bytes). ``pending``: only
        rows not replayed."""
        rows = self._read(SELECT_QUARANTINE, {"device": device, "reason": reason, "pending": pending, "limit": limit})
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
        """The last ack of each publisher of ``route`` ("dev" or "hub"): its highest
        contiguous committed sequence number, saved by ``commit_batch`` with the batch
        that moved it."""
        prefix = f"{ACK_KEY_PREFIX}{route}."
        return {key[len(prefix):]: value for key, value in self._read(SELECT_KV) if key.startswith(prefix)}

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

    def disk_free_bytes(self) -> int | None:
        """Bytes still free for the database on its disk (None if unknown): a statvfs, no I/O on the database."""
        return disk_free_bytes(self.path)

    # -- quarantine replay --------------------------------------------------------------
    #
    # ``gateway.replay`` re-ingests quarantined rows through ``Ingest`` and commits them with
    # ``commit_batch(replayed=...)``; a gateway that runs takes the CLI's requests from
    # ``replay_requests``. Actors: a registered staff id, CLI_ACTOR or GATEWAY_ACTOR.

    def replay_candidates(self, *, device: str | None, reason: str | None, after_id: int,
                          limit: int) -> list[dict]:
        """Quarantine rows a replay takes next: not replayed, with a raw payload, id >
        ``after_id``, in id order, at most ``limit``; dicts with id, payload (its id),
        element, reason, t, seq. RegistryError UNKNOWN for an unregistered ``device``."""
        device_idx = None if device is None else self._device_row(self._conn, device)[0]
        rows = self._read(SELECT_REPLAY_CANDIDATES, {"device": device_idx, "reason": reason, "after": after_id,
                                                     "limit": limit})
        return [dict(zip(SELECT_REPLAY_CANDIDATE_KEYS, row)) for row in rows]

    def quarantine_payload(self, payload_id: int) -> tuple[str | None, int, bytes]:
        """(topic, rx ms UTC, octets) of a quarantined message, as it arrived."""
        return self._read(SELECT_PAYLOAD, (payload_id,))[0]

    def _settle_replayed(self, conn: sqlite3.Connection, replayed: np.ndarray, reason: np.ndarray, now_ms: int,
                         details: Mapping[int, str]) -> tuple[dict[str, int], list[tuple[str, int]]]:
        """Settle the quarantine rows a replayed batch re-ingested (``replayed[row]`` is the
        quarantine id of a row; ``reason`` the rows' reasons after the store's dedup).

        A row stored now (OK) or found already stored (DUPLICATE, e.g. after a re-send)
        gets ``replayed`` = now_ms; any other row stays in quarantine, with the reason and
        detail the replay found. Returns the still-quarantined counts by reason and the
        counter moves: each row leaves ``quarantined.<old reason>`` for ``stored``,
        ``duplicate`` or ``quarantined.<new reason>`` (``received`` is unchanged).
        """
        moves: dict[str, int] = {}
        quarantined: dict[str, int] = {}
        settled, still = [], []
        for row, (quarantine_id, code) in enumerate(zip(replayed.tolist(), reason.tolist())):
            (old,) = conn.execute(SELECT_QUARANTINE_REASON, (quarantine_id,)).fetchone()
            moves[f"quarantined.{old}"] = moves.get(f"quarantined.{old}", 0) - 1
            if code in (Reason.OK, Reason.DUPLICATE):
                settled.append((now_ms, quarantine_id))
                counter = "stored" if code == Reason.OK else "duplicate"
            else:
                name = Reason(code).name
                still.append((name, details.get(row, REASON_DETAILS.get(Reason(code))), quarantine_id))
                quarantined[name] = quarantined.get(name, 0) + 1
                counter = f"quarantined.{name}"
            moves[counter] = moves.get(counter, 0) + 1
        conn.executemany(SET_QUARANTINE_REPLAYED, settled)
        conn.executemany(SET_QUARANTINE_REASON, still)
        return quarantined, [(key, n) for key, n in moves.items() if n]

    def _check_actor(self, conn: sqlite3.Connection, actor: str) -> None:
        if actor not in (CLI_ACTOR, GATEWAY_ACTOR) and not conn.execute(SELECT_STAFF, (actor,)).fetchone():
            raise RegistryError("UNKNOWN", f"staff member {actor!r} is not registered: add them first", actor)

    def start_audit(self, actor: str, action: str, subject: str | None, detail: Mapping, *, at_ms: int) -> int:
        """Record an action that is starting (e.g. 'quarantine.replay') in ``audit``; return
        its id, for ``finish_audit``. RegistryError UNKNOWN if ``actor`` is neither a staff
        id, CLI_ACTOR nor GATEWAY_ACTOR."""
        with self._write() as conn:
            self._check_actor(conn, actor)
            return conn.execute(INSERT_AUDIT, (at_ms, actor, action, subject,
                                               json.dumps(detail, separators=(",", ":")))).lastrowid

    def finish_audit(self, audit_id: int, detail: Mapping) -> None:
        """Replace the detail of an audit row by its final form (the action's outcome)."""
        with self._write() as conn:
            conn.execute(SET_AUDIT_DETAIL, (json.dumps(detail, separators=(",", ":")), audit_id))

    def audit(self, *, action: str | None = None, limit: int = 10_000) -> list[dict]:
        """Audit rows, newest first, of one action or all: dicts with id, at (ms UTC), actor,
        action, subject and detail (a dict)."""
        rows = self._read(SELECT_AUDIT, {"action": action, "limit": limit})
        return [{**dict(zip(AUDIT_KEYS, row)), "detail": json.loads(row[-1] or "null")} for row in rows]

    def request_replay(self, *, actor: str, device: str | None, reason: str | None, shift_ms: int,
                       now_ms: int) -> int:
        """Queue a replay for the running gateway's writer (``replay_requests``); return its
        id. RegistryError UNKNOWN for an unregistered actor or device."""
        with self._write() as conn:
            self._check_actor(conn, actor)
            if device is not None:
                self._device_row(conn, device)
            return conn.execute(INSERT_REPLAY_REQUEST, (now_ms, actor, device, reason, shift_ms)).lastrowid

    def replay_request(self, request_id: int) -> dict:
        """One replay request: dicts with id, requested, actor, device, reason, shift_ms,
        done (ms UTC, None while pending) and result (dict, None while pending)."""
        return self._replay_request_dict(self._read(SELECT_REPLAY_REQUEST, (request_id,))[0])

    def pending_replay_request(self) -> dict | None:
        """The oldest replay request not run yet (as ``replay_request``), or None."""
        rows = self._read(SELECT_PENDING_REPLAY_REQUEST)
        return self._replay_request_dict(rows[0]) if rows else None

    @staticmethod
    def _replay_request_dict(row: tuple) -> dict:
        request = dict(zip(REPLAY_REQUEST_KEYS, row))
        request["result"] = None if request["result"] is None else json.loads(request["result"])
        return request

    def finish_replay_request(self, request_id: int, result: Mapping, *, now_ms: int) -> None:
        """Mark a replay request run, with its result (JSON-able)."""
        with self._write() as conn:
            conn.execute(FINISH_REPLAY_REQUEST, (now_ms, json.dumps(result), request_id))

    # -- status -------------------------------------------------------------------------

    def open_alerts_summary(self) -> dict[str, dict[str, int]]:
        """Not-resolved alerts by severity, most severe first: ``{severity: {"n": count,
        "oldest": raised ms UTC of the oldest}}``, from an index alone."""
        rows = {severity: {"n": n, "oldest": oldest} for severity, n, oldest in self._read(OPEN_ALERTS_SUMMARY)}
        return {s: rows[s] for s in sorted(rows, key=SEVERITY_RANK.__getitem__)}

    def silent_devices(self) -> int:
        """Devices listed as "silent" in not-resolved DEVICE alerts (values
        ``{"devices": {device id: [problems]}}``)."""
        return int(self._read(COUNT_SILENT_DEVICES)[0][0])

    # -- sweeps: activity state and MISSED / DEVICE tasks -------------------------------
    #
    # ``gateway.activity`` keeps what the sweeps know of each device and patient in arrays;
    # here it is saved by rows (device_activity, patient_activity). In those arrays int64 min
    # (``ACTIVITY_NEVER``) and NaN mean "never"; in the tables, NULL. ``gateway.sweeps``
    # decides the tasks; ``apply_tasks`` writes them.

    def save_activity(self, devices: Mapping[str, np.ndarray], patients: Mapping[str, np.ndarray]) -> int:
        """Upsert activity rows in one transaction and record the id of the last stored
        reading they include (every reading stored so far: the writer calls this between
        batches); return that id.

        ``devices``: "device" (registry idx) and each column of device_activity (last_rx,
        reset_at int64; battery float64; battery_low bool; rejects, clock_faults uint64 < 2^50;
        counted); ``patients``: "patient" and last_bp, last_glu, last_cgm (int64), arrays of
        one length each.
        """
        def never(column: np.ndarray) -> list:
            return _nullable(column, column != ACTIVITY_NEVER)

        with self._write() as conn:
            conn.executemany(UPSERT_DEVICE_ACTIVITY, zip(
                devices["device"].tolist(), never(devices["last_rx"]),
                _nullable(devices["battery"], ~np.isnan(devices["battery"])),
                devices["battery_low"].astype(int).tolist(), devices["rejects"].astype(np.int64).tolist(),
                devices["clock_faults"].astype(np.int64).tolist(), devices["counted"].tolist(),
                never(devices["reset_at"])))
            conn.executemany(UPSERT_PATIENT_ACTIVITY, zip(
                patients["patient"].tolist(), never(patients["last_bp"]), never(patients["last_glu"]),
                never(patients["last_cgm"])))
            through = int(conn.execute(MAX_READING_ID).fetchone()[0])
            conn.execute(SET_KV, (ACTIVITY_THROUGH_KEY, through))
        return through

    def load_activity(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], int]:
        """The saved activity rows, in the form ``save_activity`` takes, and the id of the
        last stored reading they include (0 when never saved): readings after it are to be
        replayed (``readings_batch``)."""
        def ints(values: Sequence) -> np.ndarray:
            return np.array([ACTIVITY_NEVER if v is None else v for v in values], dtype=np.int64)

        rows = self._read(SELECT_DEVICE_ACTIVITY)
        device, last_rx, battery, battery_low, rejects, clock_faults, counted, reset_at = (
            zip(*rows) if rows else ((),) * 8)
        devices = {"device": ints(device), "last_rx": ints(last_rx),
                   "battery": np.array([math.nan if v is None else v for v in battery], dtype=np.float64),
                   "battery_low": np.array(battery_low, dtype=bool),
                   "rejects": ints(rejects).astype(np.uint64), "clock_faults": ints(clock_faults).astype(np.uint64),
                   "counted": np.array(counted, dtype=np.uint8), "reset_at": ints(reset_at)}
        rows = self._read(SELECT_PATIENT_ACTIVITY)
        columns = zip(*rows) if rows else ((),) * 4
        patients = dict(zip(("patient", "last_bp", "last_glu", "last_cgm"), map(ints, columns)))
        through = self._read(GET_KV, (ACTIVITY_THROUGH_KEY,))
        return devices, patients, int(through[0][0]) if through else 0

    def sweep_registry(self) -> dict:
        """What the sweeps read of the registry (``gateway.sweeps.Registry.from_rows``):
        ``patients`` rows (idx, programmes, dispensary, targets JSON, created), ``devices``
        rows (idx, id, kind, retired or None) and ``bindings`` (BINDING_DTYPE)."""
        return {"patients": self._read(SWEEP_PATIENTS), "devices": self._read(SWEEP_DEVICES),
                "bindings": self.bindings().rows}

    def open_tasks(self) -> list[tuple[int, int, str, str, int, dict]]:
        """Not-resolved sweep tasks (severity task: MISSED, DEVICE): ``(id, patient idx,
        rule, state, notified ms, values)``."""
        return [(alert_id, patient, rule, state, notified, json.loads(values))
                for alert_id, patient, rule, state, notified, values in self._read(SELECT_OPEN_TASKS)]

    def task_resolutions(self, after_ms: int | None = None) -> list[tuple[int, str, int, str]]:
        """Resolutions of sweep tasks resolved after ``after_ms`` (all when None): ``(patient
        idx, rule, resolved at ms, actor)``."""
        return self._read(SELECT_TASK_RESOLUTIONS, (ACTIVITY_NEVER if after_ms is None else after_ms,))

    def apply_tasks(self, raises: Sequence[AlertIn], resolves: Sequence[tuple[int, str]], now_ms: int) -> list[dict]:
        """What a sweep decided, in one transaction: raise ``raises`` (as ``commit_batch``
        raises alerts: an open one of the same patient and rule is updated, re-notified
        after COOLDOWN_MS) and resolve each ``(alert id, note)`` of ``resolves`` that is not
        resolved yet, by the gateway (an alert_events row with the note). Returns the alert
        JSON of each alert raised or re-notified, to publish (resolutions are not)."""
        with self._write() as conn:
            for alert_id, note in resolves:
                if conn.execute(RESOLVE_TASK, (now_ms, alert_id)).rowcount:
                    conn.execute(INSERT_ALERT_EVENT, (alert_id, now_ms, GATEWAY_ACTOR, "resolved", note))
            notify = [alert_id for alert_id, notified in (self._raise_alert(conn, alert, [], now_ms)
                                                          for alert in raises) if notified]
            return [self._alert_json(conn, alert_id) for alert_id in notify]


    # -- reports ------------------------------------------------------------------------

    def report_patient(self, patient_id: str) -> dict:
        """A patient's registry facts for a report: id, programmes (list), dispensary (bool),
        tz (IANA name), targets (dict), and physician, nurse, personal_admin as
        ``{"id", "name"}`` (None when not assigned). RegistryError UNKNOWN if unregistered."""
        rows = self._read(REPORT_PATIENT, (patient_id,))
        if not rows:
            raise RegistryError("UNKNOWN", f"patient {patient_id!r} is not registered: add it first", patient_id)
        _, pid, programmes, dispensary, tz, targets, *staff = rows[0]
        people = {role: None if staff_id is None else {"id": staff_id, "name": name}
                  for role, staff_id, name in zip(("physician", "nurse", "personal_admin"), staff[0::2], staff[1::2])}
        return {"id": pid, "programmes": programmes.split(","), "dispensary": bool(dispensary), "tz": tz,
                "targets": json.loads(targets), **people}

    def report_readings(self, patient_id: str, since: int, until: int) -> ReadingColumns:
        """The patient's stored bp, glu and cgm readings measured in [since, until) (ms UTC),
        as columns ordered by (t, id). RegistryError UNKNOWN for an unregistered patient."""
        patient = self._patient_idx(self._conn, patient_id)
        devices = sorted(self._read(REPORT_DEVICES, (patient,)))
        rows = self._read(REPORT_READINGS, {"patient": patient, "since": since, "until": until})
        table = np.array(rows, dtype=_REPORT_ROW_DTYPE)
        table = table[np.lexsort((table["id"], table["t"]))]
        kind = np.zeros(len(table), dtype=np.uint8)
        for name in ("bp", "glu", "cgm"):
            kind[table["type"] == name] = TYPE_KINDS[name]
        device_idx = np.array([idx for idx, _ in devices], dtype=np.int64)
        return ReadingColumns(
            id=table["id"], t=table["t"], kind=kind, sys=table["sys"], dia=table["dia"], pul=table["pul"],
            glu=table["glu"], flags=table["flags"],
            device=np.searchsorted(device_idx, table["device"]).astype(np.int32),
            device_ids=tuple(device_id for _, device_id in devices))

    def report_bindings(self, patient_id: str, since: int, until: int) -> list[dict]:
        """The patient's bindings in force during part of [since, until) (ms UTC), by device
        then start: dicts with device, kind, retired (ms or None), user (slot or None),
        valid_from, valid_to (None = open)."""
        patient = self._patient_idx(self._conn, patient_id)
        keys = ("device", "kind", "retired", "user", "valid_from", "valid_to")
        return [dict(zip(keys, row)) for row in
                self._read(REPORT_BINDINGS, {"patient": patient, "since": since, "until": until})]

    def report_alerts(self, patient_id: str, since: int, until: int) -> list[dict]:
        """The patient's alerts raised, or measured, in [since, until) (ms UTC), oldest first:
        dicts with id, rule, severity, t, raised, late, state, escalated, escalated_at,
        occurrences and events (the history, oldest first: at, actor, name (staff member's
        name, None for the gateway), action, note)."""
        patient = self._patient_idx(self._conn, patient_id)
        alerts: dict[int, dict] = {}
        for (alert_id, rule, severity, t, raised, late, state, escalated, escalated_at, occurrences,
             at, actor, name, action, note) in self._read(REPORT_ALERTS, {"patient": patient, "since": since,
                                                                         "until": until}):
            alert = alerts.setdefault(alert_id, {
                "id": alert_id, "rule": rule, "severity": severity, "t": t, "raised": raised, "late": bool(late),
                "state": state, "escalated": escalated, "escalated_at": escalated_at, "occurrences": occurrences,
                "events": []})
            if at is not None:
                alert["events"].append({"at": at, "actor": actor, "name": name, "action": action, "note": note})
        return list(alerts.values())

    def save_protocol(self, patient_id: str, period_from: int, period_to: int, content: Mapping, *,
                      issued_ms: int, issued_by: str | None = None) -> int:
        """Record a final protocol of [period_from, period_to) (ms UTC) issued at ``issued_ms``
        by staff member ``issued_by`` (None: not named); ``content`` its JSON. Returns its id.
        RegistryError UNKNOWN for an unregistered patient or staff member."""
        with self._write() as conn:
            patient = self._patient_idx(conn, patient_id)
            if issued_by is not None and not conn.execute(SELECT_STAFF, (issued_by,)).fetchone():
                raise RegistryError("UNKNOWN", f"staff member {issued_by!r} is not registered", issued_by)
            return conn.execute(INSERT_PROTOCOL, (patient, period_from, period_to, issued_ms, issued_by,
                                                  json.dumps(content, separators=(",", ":")))).lastrowid

    def coverage_counts(self, as_of: int, since: int, *, limit: int = 10_000) -> dict:
        """The programme indicator's counts at ``as_of`` (ms UTC), SQL aggregates.

        The cohort: patients under dispensary observation in AH, DM1 or DM2 registered by
        ``as_of``; covered: a final protocol issued in [since, as_of); without a device: no
        measuring device (not a hub, not retired) bound at ``as_of``. Returns ``{"groups":
        [{"physician", "personal_admin", "programmes" (list), "patients", "covered",
        "without_device"}], "staff": [{"id", "name", "role"}] (physicians and personal
        administrators), "without_device": [{"id", "physician", "personal_admin"}] (at most
        ``limit``, by personal administrator then id)}``.
        """
        params = {"as_of": as_of, "since": since, "limit": limit}
        groups = [{"physician": physician, "personal_admin": admin, "programmes": programmes.split(","),
                   "patients": patients, "covered": covered, "without_device": without}
                  for physician, admin, programmes, patients, covered, without in self._read(COVERAGE_GROUPS, params)]
        staff = [dict(zip(("id", "name", "role"), row)) for row in self._read(COVERAGE_STAFF)]
        missing = [dict(zip(("id", "physician", "personal_admin"), row)) for row in self._read(COVERAGE_NO_DEVICE, params)]
        return {"groups": groups, "staff": staff, "without_device": missing}


def _check_device_id(device_id: str) -> None:
    if not isinstance(device_id, str) or not (_ID.fullmatch(device_id) or _BLE_ID.fullmatch(device_id)):
        raise RegistryError("INVALID", f"device id {device_id!r}: use 1-64 of [A-Za-z0-9_.-], or a BLE "
                                       "address in upper case with colons (AA:BB:CC:DD:EE:FF)", device_id)
    if device_id.startswith(broker_accounts.GATEWAY_PREFIX):
        raise RegistryError("RESERVED", f"device id {device_id!r}: ids starting with "
                                        f"{broker_accounts.GATEWAY_PREFIX!r} are gateways' broker user names", device_id)


def _check_binding(start_ms: int, end_ms: int | None, user: int | None) -> None:
    """RegistryError INVALID unless [start_ms, end_ms) is an interval (end None = open) and
    ``user`` a slot (None = any)."""
    if end_ms is not None and end_ms <= start_ms:
        raise RegistryError("INVALID", f"binding ends ({format_ms(end_ms)}) before it starts "
                                       f"({format_ms(start_ms)})", end_ms)
    if user is not None and not 0 <= user < NO_USER:
        raise RegistryError("INVALID", f"user slot {user} outside 0..{NO_USER - 1}", user)


def _overlap(device_id: str, user: int | None, patient_id: str, c_from: int, c_to: int | None) -> RegistryError:
    """The OVERLAP error of a binding of ``device_id`` and slot ``user`` clashing with the
    binding to ``patient_id`` for [c_from, c_to)."""
    slot = "any slot" if user is None else f"user slot {user}"
    return RegistryError("OVERLAP", f"device {device_id!r} ({slot}) is already bound to patient {patient_id!r} from "
                                    f"{format_ms(c_from)} to {'open end' if c_to is None else format_ms(c_to)}: "
                                    "unbind it first, or choose a later start", device_id)


def _enrolment(device: DeviceIn, stored: Mapping[str, tuple[int, str, int | None]],
               listed: Mapping[str, tuple[int, str]], patients: Mapping[str, int],
               held: Mapping[tuple[int, int | None], list[tuple[int, int | None, str]]],
               next_idx: int) -> tuple[int, tuple | None]:
    """The registry index of an ``add_devices`` entry's device, and the binding it makes
    (device idx, user slot, from, to, patient idx) or None; RegistryError with its first
    problem. ``stored``: id -> (idx, kind, retired) of the registered devices among the
    list's; ``listed``: id -> (idx, kind) of the entries accepted so far; ``patients``: id
    -> idx; ``held``: (device idx, slot) -> [(from, to, patient id)] of the bindings stored
    or accepted so far; ``next_idx``: the index of a new device."""
    device_id, kind, patient_id = device.get("id"), device.get("kind"), device.get("patient")
    _check_device_id(device_id)
    if kind not in OPERATOR_KINDS:
        raise RegistryError("INVALID", f"device kind {kind!r} is not one of {', '.join(OPERATOR_KINDS)}", kind)
    if device_id in listed:
        idx, first_kind = listed[device_id]
        if patient_id is None or kind != first_kind:
            raise RegistryError("EXISTS", f"device {device_id!r} already exists (kind {first_kind}, earlier in the "
                                          "list): it is listed again only to be bound again, with the same kind",
                                device_id)
    elif device_id in stored:
        idx, stored_kind, retired = stored[device_id]
        if retired is not None:
            raise RegistryError("RETIRED", f"device {device_id!r} was retired at {format_ms(retired)}: it cannot be "
                                           "registered or bound again", device_id)
        if stored_kind != "unknown":
            raise RegistryError("EXISTS", f"device {device_id!r} already exists (kind {stored_kind})", device_id)
    else:
        idx = next_idx
    if patient_id is None:
        stray = next((key for key in ("from", "to", "user") if device.get(key) is not None), None)
        if stray is not None:
            raise RegistryError("INVALID", f"device {device_id!r}: {stray} without a patient", device.get(stray))
        return idx, None
    start, end, user = device.get("from", 0), device.get("to"), device.get("user")
    _check_binding(start, end, user)
    if patient_id not in patients:
        raise RegistryError("UNKNOWN", f"patient {patient_id!r} is not registered: register patients before "
                                       "binding devices to them (pmpgw patients import)", patient_id)
    stop = OPEN_END if end is None else end
    for c_from, c_to, other in held.get((idx, user), ()):
        if c_from < stop and (c_to is None or c_to > start):
            raise _overlap(device_id, user, other, c_from, c_to)
    return idx, (idx, user, start, end, patients[patient_id])


def _check_id(value: str, what: str) -> None:
    if not isinstance(value, str) or not _ID.fullmatch(value):
        raise RegistryError("INVALID", f"{what} {value!r}: use 1-64 characters of [A-Za-z0-9_.-]", value)


def _utc_offset_min(tz: str, at_ms: int) -> int | None:
    """The UTC offset (minutes) of IANA zone ``tz`` at ``at_ms``; None for an unknown zone."""
    try:
        zone = zoneinfo.ZoneInfo(tz)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, TypeError):
        return None
    offset = datetime.datetime.fromtimestamp(at_ms / 1000, zone).utcoffset()
    return int(offset.total_seconds() // 60) if offset is not None else 0


def _positive_number(value: object) -> bool:
    return (isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            and value > 0)


def _checked_targets(targets: Mapping) -> dict:
    """A copy of a targets JSON (``Store.add_patients``); RegistryError INVALID for a name
    that is neither a THRESHOLDS name nor ``plan``, or a value that is not a positive number."""
    if not isinstance(targets, Mapping):
        raise RegistryError("INVALID", f"targets {targets!r} are not an object of name -> value", targets)
    checked: dict = {}
    for name, value in targets.items():
        if name == "plan":
            if not isinstance(value, Mapping) or not value:
                raise RegistryError("INVALID", f"plan {value!r}: give {{metric: days}} with metrics of "
                                               f"{', '.join(PLAN_METRICS)}", value)
            for metric, days in value.items():
                if metric not in PLAN_METRICS:
                    raise RegistryError("INVALID", f"plan metric {metric!r} is not one of {', '.join(PLAN_METRICS)}",
                                        metric)
                if not _positive_number(days) or days > MAX_PLAN_DAYS:
                    raise RegistryError("INVALID", f"plan days of {metric} {days!r}: give a number of days above 0, "
                                                   f"up to {MAX_PLAN_DAYS}", days)
            checked["plan"] = dict(value)
        elif name in THRESHOLDS:
            if not _positive_number(value):
                raise RegistryError("INVALID", f"target {name} {value!r} is not a positive number", value)
            checked[name] = value
        else:
            raise RegistryError("INVALID", f"target {name!r} is neither 'plan' nor a threshold of "
                                           f"core.rule_tables.THRESHOLDS ({', '.join(THRESHOLDS)})", name)
    return checked


def _patient_row(patient: PatientIn, idx: int, now_ms: int, known: set[str], staff: set[str],
                 offsets: dict[str, int | None]) -> tuple:
    """INSERT_PATIENT parameters of one patient (``Store.add_patients``), or RegistryError
    with its first problem. ``known`` ids registered, ``staff`` staff ids, ``offsets`` the
    UTC offset of each zone seen so far (filled in here)."""
    patient_id = patient["id"]
    _check_id(patient_id, "patient id")
    if patient_id in known:
        raise RegistryError("EXISTS", f"patient {patient_id!r} already exists", patient_id)
    programmes = tuple(patient.get("programmes", ("AH",)))
    if not programmes or any(p not in PROGRAMMES for p in programmes) or len(set(programmes)) < len(programmes):
        raise RegistryError("INVALID", f"programmes {','.join(map(str, programmes))!r}: give one or more of "
                                       f"{', '.join(PROGRAMMES)}, each once", ",".join(map(str, programmes)))
    tz = patient.get("tz", "UTC")
    if tz not in offsets:
        offsets[tz] = _utc_offset_min(tz, now_ms)
    if offsets[tz] is None:
        raise RegistryError("INVALID", f"time zone {tz!r} is unknown: use an IANA name such as Europe/Moscow", tz)
    for role in _STAFF_FIELDS:
        staff_id = patient.get(role)
        if staff_id is not None and staff_id not in staff:
            raise RegistryError("UNKNOWN", f"{role} {staff_id!r} is not registered: add the staff member first "
                                           "(pmpgw staff add)", staff_id)
    targets = _checked_targets(patient.get("targets") or {})
    return (patient_id, idx, ",".join(programmes), bool(patient.get("dispensary", True)), tz, offsets[tz],
            patient.get("physician"), patient.get("nurse"), patient.get("personal_admin"),
            json.dumps(targets, separators=(",", ":")), now_ms)


def _patient_dict(row: tuple) -> dict:
    """A patient dict (``Store.patients``) of a SELECT_PATIENT(S) row (idx first)."""
    patient = dict(zip(PATIENT_KEYS, row[1:]))
    patient["programmes"] = patient["programmes"].split(",")
    patient["dispensary"] = bool(patient["dispensary"])
    patient["targets"] = json.loads(patient["targets"])
    return patient
