"""scale: readings/s committed by 1, 2 and 3 gateways sharing one PostgreSQL database (MQTT 5
shared subscription, ``pmpgw run --shared``), against one gateway on SQLite; and where the
CPU goes, to say where it stops scaling.

scale.gateways_N  readings/s committed by N ``pmpgw run --shared --db postgresql://...``
                  processes on one private Mosquitto and one private PostgreSQL cluster
                  (synchronous_commit on), from the first publish of a fixed backlog until
                  the store's ``stored`` counter (committed in each batch's transaction)
                  holds all of it; a new database and a new broker for each N.
baseline          the same backlog through one ``pmpgw run`` on SQLite (WAL, synchronous=FULL).

The backlog: ``bench.publishers`` processes (raw-socket MQTT 3.1.1, QoS 1) publish every
message of every device as fast as the broker acks them, msgpack arrays of 50 BP readings;
the broker queues what the gateways have not taken yet. Completion is read from the store,
not from the devices' acks (in shared mode acks lag: README "Not yet right with several
gateways"). Each run also samples ``/proc`` for the CPU seconds of the gateways, the
PostgreSQL server (postmaster and every backend), Mosquitto, the publishers and this
process, and the machine's busy time (``bench.cpu_meter``): CPU microseconds per reading of
each part is what sizes a deployment. The test is tests/bench/test_scale_gateways.py.
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import os
import pathlib
import sqlite3
import tempfile
import time

from bench._harness import Result
from bench.cpu_meter import CpuMeter, children
from bench.e2e_ingest import BATCH_READINGS, HOUR_MS, INFLIGHT, PROCESSES, _now_ms, _publisher_summary
from bench.faults import GatewayProcess, register
from bench.faults_shared_store import wait_online
from bench.pg_cluster import PrivateCluster, private_cluster
from bench.publishers import Publishers
from gateway.broker import PrivateBroker
from gateway.store import Store
from gateway.store.url import is_url

POLL_S = 0.05  # how often the stored counter is read
SAMPLE_S = 0.25  # how often /proc is sampled
START_TIMEOUT_S = 90.0  # N gateways loading their kernels at once on a loaded 2-core machine
STALL_S = 60.0  # no committed reading for this long: the run failed
WARM_MESSAGES = 4  # per gateway, untimed: every gateway has run a batch before the timing
GROUPS = ("gateways", "postgres", "mosquitto", "publishers", "bench")


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Per configuration: ``backlogs`` timed backlogs (the best counts) of ``devices`` devices
    x ``messages`` msgpack arrays of BATCH_READINGS readings, then one backlog of ``devices``
    x ``single_messages`` messages of one reading each; each backlog with its own devices."""

    devices: int
    messages: int
    backlogs: int
    single_messages: int
    gateways: tuple[int, ...] = (1, 2, 3)


QUICK = Sizes(devices=48, messages=25, backlogs=1, single_messages=60)  # 60,000 + 2,880 readings
FULL = Sizes(devices=64, messages=200, backlogs=2, single_messages=600)  # 2 x 640,000 + 38,400 readings


@dataclasses.dataclass
class Accounting:
    """What the store holds after a run against what was published (readings)."""

    published: int
    received: int  # the store's counters
    stored: int
    duplicate: int
    quarantined: dict
    rows: int  # COUNT(*) of readings
    db_bytes: int  # the database on disk (SQLite: file and WAL; PostgreSQL: pg_database_size)
    missing: int | None = None  # published (device, seq) not stored; None: not checked
    twice: int | None = None  # (device, seq) stored more than once; None: not checked

    @property
    def ok(self) -> bool:
        return (self.published == self.received == self.stored == self.rows and not self.duplicate
                and not self.quarantined and not self.missing and not self.twice)


@dataclasses.dataclass
class Backlog:
    readings: int
    seconds: float  # first publish -> all committed
    steady_rate: float  # readings/s between 10 % and 90 % committed
    publish_s: float  # first publish -> the broker's last PUBACK
    wal_bytes: int  # PostgreSQL write-ahead log written meanwhile (0 on SQLite)


@dataclasses.dataclass
class Phase:
    """The timed backlogs of one message size, and CPU seconds by group summed over them
    (``machine_s``: the whole machine busy, other processes too); ``sessions``: how many
    samples found a gateway's database session in each state (see ``session_states``)."""

    per_message: int
    backlogs: list[Backlog] = dataclasses.field(default_factory=list)
    cpu_s: dict[str, float] = dataclasses.field(default_factory=lambda: dict.fromkeys(GROUPS, 0.0))
    per_gateway_s: list[float] = dataclasses.field(default_factory=list)
    machine_s: float = 0.0
    sessions: collections.Counter = dataclasses.field(default_factory=collections.Counter)

    @property
    def rate(self) -> float:
        """Readings/s of the best backlog."""
        return max(b.readings / b.seconds for b in self.backlogs)

    @property
    def timed_s(self) -> float:
        return sum(b.seconds for b in self.backlogs)

    @property
    def readings(self) -> int:
        return sum(b.readings for b in self.backlogs)

    @property
    def wal_per_reading(self) -> float:
        """PostgreSQL write-ahead log bytes per committed reading (0 on SQLite)."""
        return sum(b.wal_bytes for b in self.backlogs) / self.readings

    def us_per_reading(self, group: str) -> float:
        """CPU microseconds per committed reading spent by ``group``."""
        return self.cpu_s[group] / self.readings * 1e6

    def add(self, backlog: Backlog, meter: CpuMeter, sessions: list[dict[int, str]]) -> None:
        self.backlogs.append(backlog)
        for group, seconds in meter.seconds().items():
            self.cpu_s[group] += seconds
        each = meter.per_process("gateways")
        self.per_gateway_s = [a + b for a, b in itertools.zip_longest(self.per_gateway_s, each, fillvalue=0.0)]
        self.machine_s += meter.machine_busy_s()
        writers = {pid for sample in sessions for pid, state in sample.items() if state != "idle"}
        self.sessions.update(state for sample in sessions for pid, state in sample.items() if pid in writers)


@dataclasses.dataclass
class Run:
    """One configuration: N gateways on one database."""

    gateways: int
    database: str  # "sqlite" or "postgresql"
    batched: Phase
    single: Phase
    accounting: Accounting


class StoredCounter:
    """Reads the store's persistent ``stored`` counter (committed with each batch) over one
    read-only connection kept open: an SQLite file or a PostgreSQL URL."""

    def __init__(self, db: str) -> None:
        if is_url(db):
            import psycopg

            self.conn = psycopg.connect(db, autocommit=True)
        else:
            self.conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)

    def __call__(self) -> int:
        row = self.conn.execute("SELECT value FROM kv WHERE key = 'stored'").fetchone()
        return int(row[0]) if row else 0

    def wal_bytes(self) -> int:
        """PostgreSQL: the write-ahead log's position, bytes (0 on SQLite)."""
        if isinstance(self.conn, sqlite3.Connection):
            return 0
        return int(self.conn.execute("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')").fetchone()[0])

    def close(self) -> None:
        self.conn.close()


PG_SESSIONS = """SELECT pid, state, wait_event_type, wait_event FROM pg_stat_activity
                 WHERE backend_type = 'client backend' AND pid <> pg_backend_pid()"""


def session_states(counter: StoredCounter) -> dict[int, str]:
    """What each other client session of the PostgreSQL database is doing now: "executing"
    (on CPU), "wait TYPE:EVENT" (pg_stat_activity's wait event, e.g. IO:WALSync, or
    Client:ClientRead while a COPY waits for the gateway's rows), "in transaction, gateway
    working" (idle in transaction: the gateway runs Python between statements), "idle"."""
    out = {}
    for pid, state, wait_type, wait in counter.conn.execute(PG_SESSIONS).fetchall():
        if state == "active":
            out[pid] = "executing" if wait_type is None else f"wait {wait_type}:{wait}"
        else:
            out[pid] = "in transaction, gateway working" if state and state.startswith("idle in") else "idle"
    return out


def postmaster_pid(cluster: PrivateCluster) -> int:
    return int((cluster.data / "postmaster.pid").read_text().split("\n", 1)[0])


def measure(n: int, db: str, tmp: pathlib.Path, sizes: Sizes, *, postmaster: int | None,
            timeout_s: float = 120.0, per_reading: bool = False) -> Run:
    """N gateways (``--shared`` on PostgreSQL) on a new private broker in ``tmp`` and the new,
    empty database ``db``; an untimed warm-up, the batched backlogs, the single-reading
    backlog; the gateways are then drained (SIGTERM) and the store accounted for
    (``per_reading``: also every (device, seq), slow for large backlogs)."""
    shared = is_url(db)
    plan = [(f"b{k}", sizes.messages, BATCH_READINGS) for k in range(sizes.backlogs)]
    plan.append(("s", sizes.single_messages, 1))
    names = {prefix: [f"{prefix}-{i:03d}" for i in range(sizes.devices)] for prefix, _, _ in plan}
    warm = [f"warm-{i}" for i in range(n)]
    register(db, [d for devices in names.values() for d in devices] + warm)
    ids = tuple(f"g{i + 1}" for i in range(n))
    broker = PrivateBroker.start(tmp / "broker")
    gateways = [GatewayProcess(broker.port, db, tmp / f"pmpgw-{gw}.log", gw_id=gw,
                               run_args=("--shared",) if shared else ()) for gw in ids]
    counter = StoredCounter(db)
    groups = {"gateways": lambda: [g.process.pid for g in gateways], "mosquitto": lambda: [broker.process.pid],
              "postgres": (lambda: [postmaster, *children(postmaster)]) if postmaster else list,
              "bench": lambda: [os.getpid()]}
    phases = {BATCH_READINGS: Phase(BATCH_READINGS), 1: Phase(1)}
    try:
        for gateway in gateways:
            gateway.start()
        if not wait_online(broker.port, ids, START_TIMEOUT_S):
            raise RuntimeError(f"bench: the gateways were not online within {START_TIMEOUT_S:.0f} s:\n"
                               + "\n".join(g.tail() for g in gateways))
        _backlog(broker.port, warm, WARM_MESSAGES, BATCH_READINGS, counter, gateways, None, timeout_s)
        for prefix, messages, per in plan:
            sessions: list[dict[int, str]] = []
            backlog, meter = _backlog(broker.port, names[prefix], messages, per, counter, gateways, groups,
                                      timeout_s, sessions if shared else None)
            phases[per].add(backlog, meter, sessions)
    finally:
        counter.close()
        exits = [g.stop() for g in gateways]
        broker.stop()
    if any(code != 0 for code in exits):
        raise RuntimeError(f"bench: gateway exits {exits}:\n" + "\n".join(g.tail() for g in gateways))
    published = {d: messages * per for prefix, messages, per in plan for d in names[prefix]}
    published.update({d: WARM_MESSAGES * BATCH_READINGS for d in warm})
    return Run(gateways=n, database="postgresql" if shared else "sqlite", batched=phases[BATCH_READINGS],
               single=phases[1], accounting=account(db, published, per_reading=per_reading))


def _backlog(port: int, devices: list[str], messages: int, per: int, counter: StoredCounter,
             gateways: list[GatewayProcess], groups: dict | None, timeout_s: float,
             sessions: list | None = None) -> tuple[Backlog, CpuMeter | None]:
    """Publish ``messages`` messages of ``per`` readings per device at once and wait until
    the store counts them all; with ``groups``, also the CPU seconds of each group and of
    the publishers; with ``sessions`` (PostgreSQL), append what the database sessions do
    every SAMPLE_S."""
    base, wal = counter(), counter.wal_bytes()
    total = len(devices) * messages * per
    with Publishers(port, devices, processes=min(PROCESSES, len(devices)), messages_per_device=messages,
                    per_message=per, t0_ms=_now_ms() - 12 * HOUR_MS, inflight=INFLIGHT,
                    timeout_s=timeout_s, name=f"scale-{devices[0]}") as pubs:
        meter = None if groups is None else CpuMeter({**groups, "publishers": lambda: [p.pid for p in pubs.procs]})
        if meter is not None:
            meter.sample()
        started = pubs.go()
        series = [(started, 0)]
        next_sample = progressed = started + SAMPLE_S
        while series[-1][1] < total:
            time.sleep(POLL_S)
            now = time.monotonic()
            done = counter() - base
            if done > series[-1][1]:
                progressed = now
            series.append((now, done))
            if meter is not None and now >= next_sample:
                meter.sample()
                if sessions is not None:
                    sessions.append(session_states(counter))
                next_sample = now + SAMPLE_S
            if now - progressed > STALL_S or not all(g.alive() for g in gateways):
                raise RuntimeError(f"bench: {done:,} of {total:,} readings committed, none for "
                                   f"{now - progressed:.0f} s:\n" + "\n".join(g.tail() for g in gateways))
        finished = series[-1][0]
        wal = counter.wal_bytes() - wal
        if meter is not None:
            meter.sample()
        summary = _publisher_summary(pubs.results(), started, len(devices) * messages)
    if series[-1][1] != total:
        raise RuntimeError(f"bench: {series[-1][1]:,} readings committed, {total:,} published")
    t10 = next(t for t, done in series if done >= 0.1 * total)
    t90 = next(t for t, done in series if done >= 0.9 * total)
    return Backlog(readings=total, seconds=finished - started, steady_rate=0.8 * total / max(t90 - t10, POLL_S),
                   publish_s=summary["seconds"], wal_bytes=wal), meter


def account(db: str, published: dict[str, int], *, per_reading: bool) -> Accounting:
    """The store's counters and rows against ``published`` (device -> readings, seqs from 0)."""
    with Store.open(db) as store:
        counters = store.counters()
        db_bytes = store.db_bytes()
        rows = store.readings(limit=10 ** 9) if per_reading else None
    count = StoredCounter(db)
    try:
        n_rows = int(count.conn.execute("SELECT COUNT(*) FROM readings").fetchone()[0])
    finally:
        count.close()
    out = Accounting(published=sum(published.values()), received=counters["received"], stored=counters["stored"],
                     duplicate=counters["duplicate"], quarantined=counters["quarantined"], rows=n_rows,
                     db_bytes=db_bytes)
    if rows is not None:
        seen: dict[tuple[str, int], int] = {}
        for row in rows:
            key = (row["device"], row["seq"])
            seen[key] = seen.get(key, 0) + 1
        expected = {(d, s) for d, n in published.items() for s in range(n)}
        out.missing = len(expected - set(seen))
        out.twice = sum(k > 1 for k in seen.values()) + len(set(seen) - expected)
    return out


def measure_all(sizes: Sizes, tmp: pathlib.Path, cluster: PrivateCluster, *, timeout_s: float = 120.0,
                per_reading: bool = False) -> list[Run]:
    """SQLite with one gateway, then each N of ``sizes.gateways`` on a new database of ``cluster``."""
    runs = []
    folder = tmp / "sqlite"
    folder.mkdir()
    runs.append(measure(1, str(folder / "pmp.db"), folder, sizes, postmaster=None, timeout_s=timeout_s,
                        per_reading=per_reading))
    for n in sizes.gateways:
        folder = tmp / f"pg{n}"
        folder.mkdir()
        runs.append(measure(n, cluster.create_database(f"scale_{n}_{time.time_ns()}"), folder, sizes,
                            postmaster=postmaster_pid(cluster), timeout_s=timeout_s, per_reading=per_reading))
    return runs


def breakdown(phase: Phase) -> str:
    """CPU per committed reading of each part, how busy the machine was, and what the
    gateways' database sessions did."""
    parts = ", ".join(f"{g} {phase.us_per_reading(g):.1f}" for g in GROUPS)
    whole = sum(phase.us_per_reading(g) for g in GROUPS)
    other = phase.machine_s - sum(phase.cpu_s.values())
    gateways = " + ".join(f"{s / phase.timed_s:.2f}" for s in phase.per_gateway_s)
    seen = sum(phase.sessions.values())
    waits = ""
    if seen:
        waits = f"; gateways' database sessions ({seen} samples): " + ", ".join(
            f"{state} {n / seen:.0%}" for state, n in phase.sessions.most_common(6))
    cores = os.cpu_count()
    return (f"CPU us/reading: {parts} (all {whole:.1f}: {cores} cores for these alone would commit at most "
            f"{cores * 1e6 / whole:,.0f}/s); cores busy {phase.machine_s / phase.timed_s:.2f} of {cores} (gateways "
            f"{gateways}, postgres {phase.cpu_s['postgres'] / phase.timed_s:.2f}, mosquitto "
            f"{phase.cpu_s['mosquitto'] / phase.timed_s:.2f}, processes not ours {other / phase.timed_s:.2f}){waits}")


def describe_phase(phase: Phase) -> str:
    backlogs = "; ".join(f"{b.readings:,} readings in {b.seconds:.2f} s (steady {b.steady_rate:,.0f}/s, published in "
                         f"{b.publish_s:.2f} s)" for b in phase.backlogs)
    wal = f"; WAL {phase.wal_per_reading:,.0f} bytes/reading" if phase.wal_per_reading else ""
    return f"{phase.per_message} reading(s) a message: {backlogs}; {breakdown(phase)}{wal}"


def describe(run: Run) -> str:
    a = run.accounting
    return (f"{run.gateways} gateway(s) on {run.database}: {describe_phase(run.batched)} | "
            f"{describe_phase(run.single)} | store: {a.stored:,} stored of {a.published:,} published, {a.rows:,} rows, "
            f"duplicate {a.duplicate}, quarantined {a.quarantined}; database {a.db_bytes / a.rows:,.0f} bytes/reading")


def results(sizes: Sizes, runs: list[Run]) -> list[Result]:
    """scale.gateways_N (arrays of 50) and scale.gateways_N_single (one reading a message),
    each against one gateway on SQLite with the same backlog."""
    base, first_pg = runs[0], runs[1]
    setup = (f"{sizes.devices} devices, each publishing at once {sizes.messages} msgpack arrays of {BATCH_READINGS} BP "
             f"readings (best of {sizes.backlogs} backlogs), then {sizes.single_messages} single readings, from "
             f"{PROCESSES} bench.publishers processes (QoS 1, as fast as the broker acks); first publish -> the "
             f"store's stored counter complete; a new database and broker per N; {os.cpu_count()} cores shared by "
             f"everything")
    out = []
    for name, phase_of in (("", lambda r: r.batched), ("_single", lambda r: r.single)):
        for run in runs[1:]:
            phase = phase_of(run)
            note = (f"x{phase.rate / phase_of(first_pg).rate:.2f} of 1 PostgreSQL gateway; {run.gateways} gateway(s) "
                    f"on postgresql: {describe_phase(phase)}; baseline: {describe_phase(phase_of(base))}; {setup}")
            out.append(Result(f"scale.gateways_{run.gateways}{name}", "readings/s", phase.rate, "1 gateway on SQLite",
                              phase_of(base).rate, note=note))
    return out


def run(quick: bool) -> list[Result]:
    sizes = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(prefix="pmp-scale-") as tmp, private_cluster() as cluster:
        runs = measure_all(sizes, pathlib.Path(tmp), cluster, timeout_s=60.0 if quick else 120.0)
    for one in runs:
        print(describe(one))
        if not one.accounting.ok:
            raise RuntimeError(f"bench: the store does not hold every published reading once: {one.accounting}")
    return results(sizes, runs)
