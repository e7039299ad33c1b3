"""Quarantine replay: quarantined readings re-ingested through the live path, on request.

A reading is quarantined with its raw payload (one ``quarantine_payloads`` row per message)
and the element it was in that message. A replay re-decodes the payload
(``Ingest.decode``, i.e. ``adapters.inbound.decode_messages``), keeps the rows of the
quarantined elements only, and commits them through ``Ingest.commit``: the core's
validate, bind, dedup, windows and rules, then ONE transaction per chunk. So dedup holds:
a reading stored meanwhile (a device's re-send after its binding) is DUPLICATE, and
replaying twice stores nothing twice.

Per quarantine row, the outcome (``Store.commit_batch(replayed=...)``):

    stored or already stored   ``replayed`` = now; it is never taken again
    anything else              stays, with the reason and detail this replay found; no
                               second quarantine row

A replayed reading counts as arriving now: measured more than 24 h before the replay, it
is LATE (its alerts are raised late and never page anyone as an emergency).

``shift_ms`` is a time correction a device administrator states for a meter whose clock
was reset (STALE or FUTURE readings): it is added to the measurement time of the rows
before the core sees them (rows that took their time from arrival are not shifted); stored
payloads are never modified. Dedup keys stay those of the readings as the meter sent them (a
reading without seq is keyed by the fingerprint of its unshifted time), so a re-send of the
same memory with the clock still wrong is a DUPLICATE of the shifted reading. Every replay is one ``audit`` row (action
``quarantine.replay``): actor, filters, shift, and the counts when it ends.

Single writer. The running gateway is the only writer of the core's state (dedup table,
windows), so ``pmpgw run`` holds the database's writer lock (``writer_lock``) while it
runs. ``pmpgw quarantine replay`` takes the lock and replays itself when it is free (alerts
of replayed readings are then stored, not published: no gateway is connected to publish
them); when a gateway holds it, the command queues a ``replay_requests`` row, which the
gateway's writer runs (``next_requested`` polled every POLL_S, a chunk per writer turn so
live batches go between) and publishes the alerts.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import pathlib
import re
from collections.abc import Callable, Iterator

import numpy as np

from adapters.inbound import Decoded, Inbound
from core.codes import Flag, Reason
from core.validate import LATE_AGE_MS

from .cli_common import data_dir
from .store.url import is_url
from .ingest import Ingest, alert_publications
from .store import Store
from .store.store import CLI_ACTOR

AUDIT_ACTION = "quarantine.replay"
# A chunk (one transaction, one turn of a gateway's writer) is at most CHUNK_ROWS quarantine
# rows, and stops at the payload that brings its raw payloads to CHUNK_BYTES: like a live batch
# (ServiceSettings.batch_max_bytes), so live batches wait no longer behind it.
CHUNK_ROWS = 2_000
CHUNK_BYTES = 256 * 1024
POLL_S = 1.0  # how often a running gateway looks for replay requests
# Who holds the writer lock, as ``writer_lock`` writes it into the lock file.
GATEWAY_HOLDER, REPLAY_HOLDER = "pmpgw run", "pmpgw quarantine replay"

# Duration units of a --shift: suffix -> ms (no suffix: ms).
SHIFT_UNITS: dict[str, int] = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000}
_SHIFT = re.compile(r"([+-]?)(\d+)(ms|s|m|h|d)?")


def parse_shift(text: str) -> int:
    """A time correction -> ms: ``+3d``, ``-2h``, ``90m``, ``30s``, ``1500`` or ``1500ms``.
    ValueError when it is none of these."""
    match = _SHIFT.fullmatch(text.strip())
    if match is None:
        raise ValueError(f"{text!r} is not a duration: a signed integer with an optional unit "
                         f"({', '.join(SHIFT_UNITS)}; none = ms), e.g. +3d or -2h")
    sign, number, unit = match.groups()
    return (-1 if sign == "-" else 1) * int(number) * SHIFT_UNITS[unit or "ms"]


@dataclasses.dataclass(frozen=True)
class ReplaySpec:
    """What to replay: quarantine rows of ``device`` (a device id; None = every device) with
    ``reason`` (a Reason name; None = every reason), times moved by ``shift_ms``; ``actor``
    (a staff id, or 'cli') is named in the audit trail."""

    device: str | None = None
    reason: str | None = None
    shift_ms: int = 0
    actor: str = CLI_ACTOR

    def filters(self) -> dict:
        return {"device": self.device, "reason": self.reason, "shift_ms": self.shift_ms}


class Replay:
    """One replay run, a chunk of quarantine rows per ``step``; ``done`` once none is left,
    with ``result``: {"rows", "stored", "duplicate", "still": {reason: n}, "unmatched",
    "alerts", "audit"} ("unmatched": rows whose element the payload no longer decodes to;
    "alerts": alerts raised or re-notified, published by a running gateway)."""

    def __init__(self, store: Store, spec: ReplaySpec, now_ms: int, *, request_id: int | None = None) -> None:
        """Record the replay in the audit trail (RegistryError UNKNOWN for an unregistered
        actor or device, before anything is written); ``request_id``: the
        ``replay_requests`` row it runs, finished with it."""
        if spec.device is not None:
            store.device(spec.device)
        self.store, self.spec, self.request_id = store, spec, request_id
        detail = {**spec.filters(), "request": request_id, "state": "running"}
        self.audit_id = store.start_audit(spec.actor, AUDIT_ACTION, spec.device, detail, at_ms=now_ms)
        self.after_id = 0
        self.done = False
        self.result: dict = {"rows": 0, "stored": 0, "duplicate": 0, "still": {}, "unmatched": 0, "alerts": 0,
                             "audit": self.audit_id}

    def step(self, ingest: Ingest, now_ms: int) -> list[tuple[str, bytes]]:
        """Replay the next chunk at gateway time ``now_ms`` (one commit); return the
        publications of the alerts it raised. At the end, finish the audit row and request."""
        spec = self.spec
        rows = self.store.replay_candidates(device=spec.device, reason=spec.reason, after_id=self.after_id,
                                            limit=CHUNK_ROWS)
        if not rows:
            self.done = True
            self.store.finish_audit(self.audit_id, {**spec.filters(), "request": self.request_id, "state": "done",
                                                    **self.result})
            if self.request_id is not None:
                self.store.finish_replay_request(self.request_id, self.result, now_ms=now_ms)
            return []
        rows, messages, message_of = self._payloads(rows)
        self.after_id = rows[-1]["id"]
        decoded = ingest.decode(messages)
        keep, quarantine_ids = match_rows(decoded, rows, message_of)
        replayed = subset(decoded, keep)
        prepare(replayed.batch, self.spec.shift_ms, now_ms)
        result = ingest.commit(replayed, messages, now_ms, replayed=quarantine_ids)
        counts = self.result
        counts["rows"] += len(rows)
        counts["stored"] += result.stored
        counts["duplicate"] += result.duplicate
        counts["unmatched"] += len(rows) - len(keep)
        counts["alerts"] += len(result.alerts)
        for name, n in result.quarantined.items():
            counts["still"][name] = counts["still"].get(name, 0) + n
        return alert_publications(result.alerts)

    def _payloads(self, rows: list[dict]) -> tuple[list[dict], list[Inbound], dict[int, int]]:
        """The first of ``rows`` whose payloads stay within CHUNK_BYTES (at least one), their
        payloads as they arrived, and payload id -> index in those messages."""
        messages: list[Inbound] = []
        message_of: dict[int, int] = {}
        size = 0
        for end, row in enumerate(rows):
            if row["payload"] in message_of:
                continue
            if size >= CHUNK_BYTES:
                return rows[:end], messages, message_of
            topic, rx, data = self.store.quarantine_payload(row["payload"])
            message_of[row["payload"]] = len(messages)
            messages.append(Inbound(topic or "", data, rx))
            size += len(data)
        return rows, messages, message_of


def run(store: Store, ingest: Ingest, spec: ReplaySpec, clock: Callable[[], int],
        progress: Callable[[dict], None] | None = None) -> dict:
    """Replay everything ``spec`` selects in this process (it must hold the writer lock);
    ``clock()`` gives gateway time in ms; ``progress(result)`` is called after each chunk.
    Alerts are stored, not published. Returns the result (see ``Replay``)."""
    job = Replay(store, spec, clock())
    while not job.done:
        job.step(ingest, clock())
        if progress is not None:
            progress(job.result)
    return job.result


def next_requested(ingest: Ingest, now_ms: int) -> Replay | None:
    """The oldest pending replay request (its actor and device were checked when it was
    queued) as a ``Replay`` to step, or None. Polled by a running gateway's writer."""
    request = ingest.store.pending_replay_request()
    if request is None:
        return None
    spec = ReplaySpec(device=request["device"], reason=request["reason"], shift_ms=request["shift_ms"],
                      actor=request["actor"])
    return Replay(ingest.store, spec, now_ms, request_id=request["id"])


def match_rows(decoded: Decoded, rows: list[dict], message_of: dict[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The decoded rows of quarantine ``rows`` (dicts with id, payload, element, t, seq):
    (row indexes in ``decoded``, ascending; the quarantine id of each).

    ``message_of`` maps a payload id to its message index in ``decoded``. An element is one
    row, except a CGM value of several records: those are told apart by the time and seq
    the quarantine row kept (its measurement time, or its arrival time when it had none).
    A quarantine row whose element is not found stays out (the caller counts it).
    """
    batch = decoded.batch
    keys = (decoded.message.astype(np.int64) << 32) | decoded.element.astype(np.int64)  # sorted: rows are in order
    has_time = (batch["flags"] & Flag.HAS_TIME) != 0
    has_seq = (batch["flags"] & Flag.HAS_SEQ) != 0
    taken: dict[int, int] = {}  # decoded row -> quarantine id
    for row in rows:
        key = (message_of[row["payload"]] << 32) | row["element"]
        lo, hi = np.searchsorted(keys, key, "left"), np.searchsorted(keys, key, "right")
        candidates = [i for i in range(lo, hi) if i not in taken]
        if hi - lo > 1:
            candidates = [i for i in candidates
                          if int(batch["t"][i] if has_time[i] else batch["rx"][i]) == row["t"]
                          and (int(batch["seq"][i]) if has_seq[i] else None) == row["seq"]]
        if candidates:
            taken[candidates[0]] = row["id"]
    keep = np.array(sorted(taken), dtype=np.intp)
    return keep, np.array([taken[i] for i in keep.tolist()], dtype=np.int64)


def subset(decoded: Decoded, rows: np.ndarray) -> Decoded:
    """The ``rows`` of ``decoded`` (message and element indexes kept, so details still apply)."""
    return Decoded(decoded.batch[rows], decoded.message[rows], decoded.element[rows], decoded.battery[rows],
                   decoded.meal[rows], decoded.hseq[rows], decoded.details)


def prepare(batch: np.ndarray, shift_ms: int, now_ms: int) -> None:
    """Before the core: move measurement times by ``shift_ms`` (rows with a time of their
    own), and flag LATE the rows measured more than 24 h before ``now_ms`` (the replay is
    their arrival)."""
    has_time = (batch["flags"] & Flag.HAS_TIME) != 0
    batch["t"][has_time] += shift_ms
    measured = np.where(has_time, batch["t"], batch["rx"])
    late = (measured < now_ms - LATE_AGE_MS) & (batch["reason"] == Reason.OK)
    batch["flags"][late] |= np.uint16(Flag.LATE)


def lock_path(db: str) -> pathlib.Path:
    """The writer lock file of database ``db``: beside it, in the data directory."""
    return data_dir(db) / f"{pathlib.Path(db).name}.writer.lock"


@contextlib.contextmanager
def writer_lock(db: str, holder: str) -> Iterator[str | None]:
    """Try to take the writer lock of ``db`` (``fcntl.flock``, never waits). Yields None
    when this process holds it (``holder``, e.g. "pmpgw run", is written into the lock
    file), else the holder the file names; released on exit, or when the process ends.

    A PostgreSQL database (``--db postgresql://...``) has no lock file: several gateways
    may write it at once (its constraints keep each reading and open alert once), so this
    yields None at once."""
    if is_url(db):
        yield None
        return
    with open(lock_path(db), "a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            yield lock.read().strip() or "another process"
            return
        try:
            lock.seek(0)
            lock.truncate()
            lock.write(f"{holder} (pid {os.getpid()})\n")
            lock.flush()
            yield None
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)

