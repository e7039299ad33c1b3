"""The Store on PostgreSQL (psycopg 3): ``Store.open("postgresql://...")`` returns a ``PgStore``.

``PgStore`` is ``Store`` with the same methods and the same SQL (``gateway.store.sql``),
which ``PgConnection`` runs as psycopg statements: each SQLite statement is translated once
(``translate``) and cached, the few that differ are in ``gateway.store.sql_pg``. What
differs in code is here: opening (a libpq URL; durability as ``synchronous_commit``), the
migrations (PostgreSQL DDL, one migrating connection at a time), errors (SQLSTATE ->
StoreError reasons), the readings insert (ids come back with ``RETURNING``), the registry
version (no ``PRAGMA data_version``), and the database's size.

Several gateways may share one PostgreSQL database (DESIGN.md "Scaling out"). Every write
is one transaction (``BEGIN`` ... ``COMMIT``) under READ COMMITTED, and what must never
happen twice is refused by the database: a reading is inserted ``ON CONFLICT DO NOTHING``
on the UNIQUE dedup key (a concurrent insert of the same key waits for the other
transaction, then is skipped), and the partial UNIQUE index ``alerts_one_open`` refuses a
second open alert of a (patient, rule). The read-then-write steps take advisory locks
first (``sql_pg``: the registry; each alert's (patient, rule)). A lock wait longer than the
busy timeout (``lock_timeout``), a deadlock or a serialization failure is StoreError
LOCKED: nothing was written, retry.

Readings insert, measured with ``python -m bench --only store_pg_insert --quick`` on this
project's 2-core machine (batches of 5,000 processed readings, one transaction each,
synchronous_commit on; SQLite's Store on the same batches: 280k rows/s): COPY into a
temporary table then INSERT ... SELECT ... ON CONFLICT DO NOTHING RETURNING (COPY cannot
skip a conflict itself) 67k rows/s, the store's choice; INSERT ... SELECT FROM unnest(one
array parameter per column) 45k; multi-row INSERT ... VALUES of 1,000 rows a statement 14k
(psycopg parses a 13,000-placeholder statement each time). ``INSERT_METHODS``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import numpy as np
import psycopg
from psycopg.adapt import Dumper

from core.codes import Reason

from . import sql, sql_pg
from .store import DEFAULT_BUSY_TIMEOUT_MS, Store, StoreError, Synchronous, reading_params
from .url import public_url

READINGS_CHUNK_ROWS = 1_000  # rows a multi-row INSERT holds (13,000 parameters; PostgreSQL allows 65,535)
_FLOAT_COLUMNS = slice(4, 8)  # sys, dia, pul, glu in READING_COLUMNS: NaN is stored as NULL
_KEY_COLUMNS = (0, 9, 10)  # device, dedup_tag, dedup_key in READING_COLUMNS


_NAMED = re.compile(r"(?<![:\w]):([A-Za-z_]\w*)")
_INDEXED_BY = re.compile(r"\s+INDEXED BY \w+")


def _placeholders(statement: str) -> str:
    """SQLite placeholders (``?``, ``:name``) -> psycopg's (``%s``, ``%(name)s``); ``instr`` ->
    ``strpos``; ``INDEXED BY`` (a SQLite planner hint) dropped."""
    text = _INDEXED_BY.sub("", statement).replace("%", "%%").replace("instr(", "strpos(")
    return _NAMED.sub(r"%(\1)s", text.replace("?", "%s"))


def translate(statement: str) -> tuple[tuple[str, bool], ...]:
    """The psycopg statements (text, whether it takes the parameters) that run SQLite
    ``statement`` on PostgreSQL, in order; the last one's rows are the result."""
    override = sql_pg.OVERRIDES.get(statement, statement)
    parts = (override,) if isinstance(override, str) else override
    out = []
    for part in parts:
        text = _placeholders(part)
        if statement in sql_pg.RETURNING_ID and part is parts[-1]:
            text += " RETURNING id"
        out.append((text, "%" in text.replace("%%", "")))
    return tuple(out)


_STATEMENTS = {"BEGIN IMMEDIATE": (("BEGIN", False),)}


class _Result:
    """What ``PgConnection.execute`` returns: the sqlite3 cursor's fetchone, fetchall,
    iteration, rowcount and lastrowid (the id an INSERT of ``sql_pg.RETURNING_ID`` returned)."""

    def __init__(self, cursor, lastrowid: int | None) -> None:
        self._cursor, self.rowcount, self.lastrowid = cursor, cursor.rowcount, lastrowid

    def fetchone(self):
        return self._cursor.fetchone() if self._cursor.description else None

    def fetchall(self) -> list[tuple]:
        return self._cursor.fetchall() if self._cursor.description else []

    def __iter__(self):
        return iter(self.fetchall())


class PgConnection:
    """A psycopg connection that takes the store's SQLite statements and parameters (the
    sqlite3 methods ``Store`` uses: execute, executemany, total_changes, in_transaction).

    Statements run with client-side binding (``psycopg.ClientCursor``: a NULL parameter
    needs no type, as in SQLite); a bool is bound as 0/1, as sqlite3 does. A connection
    lost (server restart) is opened again by the next call."""

    def __init__(self, url: str, *, synchronous: Synchronous, busy_timeout_ms: int) -> None:
        self.url, self._synchronous, self._timeout = url, synchronous, busy_timeout_ms
        self.total_changes = 0
        self.raw = self._connect()

    def _connect(self) -> psycopg.Connection:
        raw = psycopg.connect(self.url, autocommit=True, cursor_factory=psycopg.ClientCursor, connect_timeout=10,
                              options=f"-c lock_timeout={self._timeout} -c synchronous_commit="
                                      f"{'on' if self._synchronous == 'FULL' else 'off'}")
        raw.adapters.register_dumper(bool, BoolAsInt)
        return raw

    def _cursor(self):
        if self.raw.closed:
            self.raw = self._connect()
        return self.raw.cursor()

    @property
    def in_transaction(self) -> bool:
        return not self.raw.closed and self.raw.info.transaction_status != psycopg.pq.TransactionStatus.IDLE

    def execute(self, statement: str, params: Sequence | Mapping = ()) -> _Result:
        cursor = self._cursor()
        lastrowid = None
        for text, takes in self._translated(statement):
            cursor.execute(text, params if takes else None)
        if statement in sql_pg.RETURNING_ID:
            lastrowid = cursor.fetchone()[0]
        self.total_changes += max(cursor.rowcount, 0)
        return _Result(cursor, lastrowid)

    def executemany(self, statement: str, seq) -> None:
        rows = list(seq)
        if not rows:
            return
        cursor = self._cursor()
        *before, (text, _) = self._translated(statement)
        for pre, takes in before:
            cursor.execute(pre, rows[0] if takes else None)
        cursor.executemany(text, rows)
        self.total_changes += max(cursor.rowcount, 0)

    @staticmethod
    def _translated(statement: str) -> tuple[tuple[str, bool], ...]:
        found = _STATEMENTS.get(statement)
        if found is None:
            found = _STATEMENTS[statement] = translate(statement)
        return found

    def close(self) -> None:
        self.raw.close()


class BoolAsInt(Dumper):
    """Binds a Python bool as int8 0/1, as sqlite3 does (the store's flag columns are integers)."""

    oid = psycopg.adapters.types["int8"].oid

    def dump(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"

    def quote(self, obj: bool) -> bytes:
        return b"1" if obj else b"0"


# SQLSTATE (or its class, the first two characters) -> StoreError reason and advice.
_PG_REASONS: dict[str, tuple[str, str]] = {
    "55P03": ("LOCKED", "a lock held by another connection was not released within the busy timeout ({timeout} ms); "
                        "nothing was written: retry"),
    "40P01": ("LOCKED", "deadlock with another connection; nothing was written: retry"),
    "40001": ("LOCKED", "serialization failure with another connection; nothing was written: retry"),
    "57014": ("LOCKED", "the statement was cancelled (timeout); nothing was written: retry"),
    "53100": ("DISK_FULL", "no space left for the database on the server's disk; nothing was written: free space, "
                           "then retry"),
    "58030": ("IO", "I/O error on the database server; nothing was written: check its disk"),
    "XX001": ("CORRUPT", "the database is corrupt: restore it from a backup"),
    "XX002": ("CORRUPT", "an index of the database is corrupt: REINDEX it, or restore a backup"),
    "25006": ("READONLY", "the database is read-only (a standby, or default_transaction_read_only)"),
    "42501": ("READONLY", "the database user may not write there: GRANT it the rights"),
    "08": ("CANTOPEN", "cannot reach the database server; nothing was written: check --db and that the server runs"),
    "57P": ("CANTOPEN", "the database server is shutting down or restarting; nothing was written: retry"),
    "3D000": ("CANTOPEN", "no such database: create it (CREATE DATABASE) or check --db"),
    "28": ("CANTOPEN", "the server refused the login: check the user and password of --db"),
}


def pg_store_error(error: Exception, timeout_ms: int, url: str) -> StoreError:
    """The StoreError of a psycopg error on the database at ``url``: its reason by SQLSTATE
    (``_PG_REASONS``); an OperationalError without one (no connection) is CANTOPEN."""
    state = getattr(error, "sqlstate", None) or ""
    reason, text = (_PG_REASONS.get(state) or _PG_REASONS.get(state[:3]) or _PG_REASONS.get(state[:2])
                    or (_PG_REASONS["08"] if isinstance(error, psycopg.OperationalError) and not state
                        else ("DB", "database error")))
    first_line = str(error).strip().splitlines()[0] if str(error).strip() else type(error).__name__
    return StoreError(reason, f"{text.format(timeout=timeout_ms)} ({public_url(url)}; "
                              f"{state or type(error).__name__}: {first_line})")


class PgStore(Store):
    """``Store`` on a PostgreSQL database; open with ``Store.open(url)``."""

    _MIGRATIONS = sql_pg.MIGRATIONS
    _db_error = psycopg.Error
    _integrity_error = psycopg.IntegrityError

    def __init__(self, conn: PgConnection, url: str, busy_timeout_ms: int) -> None:
        super().__init__(conn, public_url(url), busy_timeout_ms)
        self._url = url

    @classmethod
    def open_url(cls, url: str, *, synchronous: Synchronous = "FULL",
                 busy_timeout_ms: int = DEFAULT_BUSY_TIMEOUT_MS) -> PgStore:
        """Connect to the database at libpq ``url`` and apply pending migrations (as
        ``Store.open``; ``synchronous`` NORMAL is ``synchronous_commit = off``)."""
        if synchronous not in ("FULL", "NORMAL"):
            raise ValueError(f"synchronous must be FULL or NORMAL, not {synchronous!r}")
        try:
            conn = PgConnection(url, synchronous=synchronous, busy_timeout_ms=busy_timeout_ms)
        except psycopg.Error as error:
            raise pg_store_error(error, busy_timeout_ms, url) from error
        store = cls(conn, url, busy_timeout_ms)
        try:
            conn.execute(sql_pg.MIGRATIONS_LOCK)
            try:
                store._migrate()
            finally:
                if not conn.raw.closed:
                    conn.execute(sql_pg.MIGRATIONS_UNLOCK)
        except psycopg.Error as error:
            conn.close()
            raise pg_store_error(error, busy_timeout_ms, url) from error
        except StoreError:
            conn.close()
            raise
        return store

    def _store_error(self, error: Exception) -> StoreError:
        return pg_store_error(error, self._timeout, self._url)

    def _mind_the_wal(self) -> None:
        """Nothing: the server manages its own WAL."""

    def _insert_readings(self, conn: PgConnection, batch: np.ndarray, ok: np.ndarray, reason: np.ndarray,
                         reading_ids: np.ndarray, meal: np.ndarray | None, battery: np.ndarray | None) -> None:
        """Insert the OK rows (sorted by dedup key, see ``sql_pg``); rows the store already
        held, or held earlier in the batch, get DUPLICATE or CONFLICT in ``reason``."""
        params = reading_params(batch[ok], meal, battery)
        floats = params[:, _FLOAT_COLUMNS]
        floats[np.isnan(floats.astype(np.float64))] = None
        params[:, _FLOAT_COLUMNS] = floats
        keys = params[:, _KEY_COLUMNS].astype(np.int64)
        order = np.lexsort(keys.T[::-1])
        cursor = conn._cursor()
        cursor.execute(sql_pg.NEXT_READING_IDS, (len(ok),))
        with_ids = np.column_stack([np.array([i for (i,) in cursor.fetchall()], dtype=object), params])
        inserted = INSERT_METHODS[self.insert_method](conn, with_ids[order])
        ids = {(d, g, k): i for i, d, g, k in inserted}
        key_rows = [tuple(row) for row in keys.tolist()]
        fingerprint = params[:, 11].astype(np.int64)
        new = np.zeros(len(ok), dtype=bool)
        found = np.full(len(ok), -1, dtype=np.int64)
        stored_fp = np.zeros(len(ok), dtype=np.int64)
        claimed: set[tuple] = set()
        for i, key in enumerate(key_rows):
            reading_id = ids.get(key)
            if reading_id is not None:
                found[i], stored_fp[i] = reading_id, fingerprint[i]
                new[i] = key not in claimed
                claimed.add(key)
        if len(inserted) < len(ok):
            self._held_keys(conn, keys, found, stored_fp, fingerprint, new, claimed, key_rows)
        same = stored_fp == fingerprint
        reason[ok[~new]] = np.where(same[~new], Reason.DUPLICATE, Reason.CONFLICT)
        reading_ids[ok] = np.where(new | same, found, -1)

    @staticmethod
    def _held_keys(conn: PgConnection, keys: np.ndarray, found: np.ndarray, stored_fp: np.ndarray,
                   fingerprint: np.ndarray, new: np.ndarray, claimed: set, key_rows: list[tuple]) -> None:
        """Fill ``found`` / ``stored_fp`` of the rows whose key the batch did not insert
        (stored before, by this or another gateway); a later row of a key this batch
        inserted keeps the first row's id and fingerprint."""
        first_fp: dict[tuple, int] = {}
        for i, key in enumerate(key_rows):
            if new[i]:
                first_fp[key] = fingerprint[i]
            elif key in claimed:
                stored_fp[i] = first_fp[key]
        missing = np.flatnonzero(found < 0)
        cursor = conn._cursor()
        cursor.execute(sql_pg.READINGS_BY_KEYS, [keys[missing, j].tolist() for j in range(3)])
        held = {(d, g, k): (i, fp) for d, g, k, i, fp in cursor.fetchall()}
        for i in missing.tolist():
            found[i], stored_fp[i] = held[key_rows[i]]

    @staticmethod
    def _add_day_sums(conn: PgConnection, sums: np.ndarray) -> None:
        """Add DAY_SUMS_DTYPE rows to the store's daily sums: one statement, in (patient,
        metric, day) order (two gateways' batches lock common rows in one order)."""
        sums = np.sort(sums, order=["patient", "metric", "day"])
        conn._cursor().execute(sql_pg.ADD_DAY_SUMS_UNNEST, [
            sums["patient"].tolist(), sums["metric"].tolist(), sums["day"].tolist(),
            *(column.tolist() for column in sums["acc"].T)])

    insert_method = "copy"  # a key of INSERT_METHODS (measured: see the module docstring)

    def registry_version(self) -> int:
        """A number that changes whenever the registry changes, from any connection (the
        counter itself, one primary-key lookup)."""
        row = self._read(sql.GET_KV, (sql.REGISTRY_VERSION_KEY,))
        self._registry_version = int(row[0][0]) if row else 0
        return self._registry_version

    def db_bytes(self) -> int:
        """Bytes of the database on the server (``pg_database_size``)."""
        return int(self._read(sql_pg.DB_BYTES)[0][0])

    def disk_free_bytes(self) -> int | None:
        """None: the database's disk is the server's, not visible from here."""
        return None


def _insert_values(conn: PgConnection, params: np.ndarray) -> list[tuple]:
    """Multi-row INSERT ... ON CONFLICT DO NOTHING RETURNING of ``params`` (rows of id and
    READING_COLUMNS, in key order), READINGS_CHUNK_ROWS a statement, server-side parameters
    (psycopg parses each 13,000-placeholder statement: the slowest of INSERT_METHODS)."""
    conn._cursor()  # connected again if the server was restarted
    cursor = psycopg.Cursor(conn.raw)
    out: list[tuple] = []
    for start in range(0, len(params), READINGS_CHUNK_ROWS):
        chunk = params[start:start + READINGS_CHUNK_ROWS]
        cursor.execute(_values_statement(len(chunk)), chunk.ravel().tolist())
        out += cursor.fetchall()
    return out


def _insert_unnest(conn: PgConnection, params: np.ndarray) -> list[tuple]:
    """INSERT ... SELECT FROM unnest(one array per column) ... ON CONFLICT DO NOTHING
    RETURNING of ``params`` (rows of id and READING_COLUMNS, in key order): one statement
    of 14 parameters whatever the batch's length."""
    cursor = conn._cursor()
    cursor.execute(sql_pg.INSERT_READINGS_UNNEST, [column.tolist() for column in params.T])
    return cursor.fetchall()


_VALUES_STATEMENTS: dict[int, str] = {}


def _values_statement(rows: int) -> str:
    found = _VALUES_STATEMENTS.get(rows)
    if found is None:
        found = _VALUES_STATEMENTS[rows] = sql_pg.insert_readings_returning(rows)
    return found


def _insert_copy(conn: PgConnection, params: np.ndarray) -> list[tuple]:
    """COPY ``params`` into a temporary table, then INSERT ... SELECT ... ON CONFLICT DO
    NOTHING RETURNING (COPY cannot skip a conflict itself)."""
    cursor = conn._cursor()
    cursor.execute(sql_pg.READINGS_STAGE)  # IF NOT EXISTS: a table created in a rolled-back transaction is gone
    with cursor.copy(sql_pg.COPY_READINGS_STAGE) as copy:
        for row in params.tolist():
            copy.write_row(row)
    cursor.execute(sql_pg.INSERT_READINGS_STAGED)
    return cursor.fetchall()  # the stage empties itself at COMMIT


INSERT_METHODS = {"unnest": _insert_unnest, "values": _insert_values, "copy": _insert_copy}

