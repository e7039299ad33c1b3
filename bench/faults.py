"""Fault injection shared by ``tests/faults`` and ``bench/faults_kill_restart.py``: devices
that re-send until acked, a SIGKILL/restart loop around ``pmpgw run --broker``, and the
exactly-once check of what the gateway stored.

DESIGN.md "End-to-end delivery": a device keeps every reading until the gateway's ack
(``pmp/v1/dev/{id}/ack``, ``{"seq": N}``: everything <= N stored) confirms it, and re-sends
the un-acked ones after a reconnect or a timeout; dedup makes re-sends harmless. Here the
devices also publish plain duplicates (the same message twice, a map repeated inside an
array) and re-send dumps of their recent memory, acked or not, while the gateway is killed
with SIGKILL at random (seeded) moments and restarted. At the end every device must be
acked up to its last reading and the store must hold each generated reading exactly once,
with its values, and each crisis reading (BP_CRISIS) linked to exactly one alert.

    fleet = DeviceFleet(port, device_ids, seed=1)        # paho clients, a driver thread
    outcome = kill_restart(fleet, GatewayProcess(...), cycles=5, rng=random.Random(1))
    check = check_exactly_once(db, fleet)                 # lost, duplicated, alerts, ...
"""

from __future__ import annotations

import collections
import dataclasses
import json
import os
import pathlib
import random
import signal
import sqlite3
import subprocess
import sys
import threading
import time

import msgpack
import numpy as np
import paho.mqtt.client as paho

from gateway.store import Store
from gateway.store.url import is_url

PROJECT_DIR = pathlib.Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
STEP_MS = 200  # measurement interval of consecutive readings of one device
CRISIS_EVERY = 37  # about one reading in CRISIS_EVERY is a hypertensive crisis (sys >= 180)
CHUNK = 200  # readings per message of a re-send (the contract allows up to 1,000)


def is_crisis(index: int, seq: int) -> bool:
    """Whether reading ``seq`` of the ``index``-th device is a crisis (deterministic)."""
    return (index * 7919 + seq * 104_729) % CRISIS_EVERY == 0


def values(index: int, seq: int) -> tuple[int, int, int]:
    """(sys, dia, pul) of a reading: a normal home reading (no rule fires) or a crisis."""
    if is_crisis(index, seq):
        return 182 + (seq + index) % 20, 96 + seq % 10, 70 + seq % 15
    return 112 + (seq + index) % 23, 68 + seq % 12, 60 + (seq * 7 + index) % 25


def register(db: pathlib.Path, devices: list[str]) -> None:
    """One AH patient per device ("P" + id), bound for all time."""
    with Store.open(db, synchronous="NORMAL") as store:
        for device in devices:
            store.add_patient("P" + device, programmes=("AH",))
            store.add_device(device, "bp")
            store.bind(device, "P" + device, 0)


@dataclasses.dataclass
class Device:
    """What one device remembers: readings not acked yet (seq -> last send, monotonic s)."""

    id: str
    index: int
    connection: int
    next_seq: int = 0
    acked: int = -1
    unacked: dict[int, float] = dataclasses.field(default_factory=dict)
    resend_all: bool = False  # set on (re)connect: re-send every un-acked reading


class DeviceFleet:
    """Simulated re-sending tonometers over ``connections`` paho clients (clean sessions,
    MQTT 3.1.1), driven by one thread every ``tick_s``. Each device publishes a new message
    of 1-5 readings with probability ``p_new`` a tick while generating; some messages go
    twice, some arrays repeat a map, now and then a device re-sends a dump of its last 30
    readings; un-acked readings are re-sent after ``resend_s`` and after a reconnect. A
    device misses an ack with probability ``p_ack_missed`` (as if it was offline when the
    ack went out): only a later ack, e.g. one answering its re-send, lets it purge."""

    def __init__(self, port: int, devices: list[str], *, seed: int = 1, connections: int = 4,
                 t0_ms: int | None = None, tick_s: float = 0.05, p_new: float = 0.5, resend_s: float = 1.5,
                 p_dup: float = 0.05, p_inner_dup: float = 0.03, p_dump: float = 0.003,
                 p_ack_missed: float = 0.2) -> None:
        self.port = port
        self.t0_ms = time.time_ns() // 1_000_000 - 3 * 3_600_000 if t0_ms is None else t0_ms
        self.devices = {d: Device(d, i, i % connections) for i, d in enumerate(devices)}
        self.tick_s, self.p_new, self.resend_s = tick_s, p_new, resend_s
        self.p_dup, self.p_inner_dup, self.p_dump = p_dup, p_inner_dup, p_dump
        self.p_ack_missed = p_ack_missed
        self.rng = random.Random(seed)
        self.ack_rng = random.Random(seed + 1)  # used in the paho threads, under the lock
        self.lock = threading.Lock()
        self.changed = threading.Condition(self.lock)
        self.ack_times: list[float] = []  # monotonic receipt time of every ack
        self.violations: list[str] = []  # acks of readings never sent
        self.counts = collections.Counter()  # messages by kind: new, dup, inner_dup, dump, resend, reconnect
        self.generating = False
        self._running = True
        self.clients: list[paho.Client | None] = [None] * connections
        for c in range(connections):
            self._connect(c)
        self._driver = threading.Thread(target=self._drive, name="fault-devices", daemon=True)
        self._driver.start()

    # -- connections -----------------------------------------------------------------

    def _connect(self, c: int) -> None:
        client_id = f"fault-dev-{os.getpid()}-{c}-{time.time_ns()}"
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=paho.MQTTv311,
                             clean_session=True)
        client.max_inflight_messages_set(1000)
        client.max_queued_messages_set(0)
        mine = [d for d in self.devices.values() if d.connection == c]

        def on_connect(client, userdata, flags, reason, properties):
            if not reason.is_failure:
                client.subscribe([(f"pmp/v1/dev/{d.id}/ack", 1) for d in mine])
                with self.lock:
                    for d in mine:
                        d.resend_all = True

        client.on_connect = on_connect
        client.on_message = self._on_ack
        client.connect(HOST, self.port, keepalive=30)
        client.loop_start()
        self.clients[c] = client

    def reconnect(self, c: int) -> None:
        """Drop connection ``c`` and open a new one (its devices re-send all un-acked)."""
        old = self.clients[c]
        self.clients[c] = None
        old.disconnect()
        old.loop_stop()
        self.counts["reconnect"] += 1
        self._connect(c)

    def _on_ack(self, client, userdata, message) -> None:
        received = time.monotonic()
        device = message.topic.split("/")[3]
        seq = int(json.loads(message.payload)["seq"])
        with self.changed:
            self.ack_times.append(received)  # the gateway acked: recovery counts it, missed or not
            self.changed.notify_all()
            if self.ack_rng.random() < self.p_ack_missed:
                self.counts["ack_missed"] += 1
                return
            d = self.devices[device]
            if seq >= d.next_seq:
                self.violations.append(f"{device}: ack {seq} but only seq < {d.next_seq} were sent")
            if seq > d.acked:
                d.acked = seq
                for s in [s for s in d.unacked if s <= seq]:
                    del d.unacked[s]
            self.changed.notify_all()

    # -- publishing ------------------------------------------------------------------

    def reading(self, d: Device, seq: int) -> dict:
        sys_, dia, pul = values(d.index, seq)
        return {"seq": seq, "t": self.t0_ms + seq * STEP_MS, "type": "bp", "sys": sys_, "dia": dia, "pul": pul}

    def _send(self, d: Device, seqs: list[int], kind: str) -> None:
        client = self.clients[d.connection]
        if client is None:
            return
        for start in range(0, len(seqs), CHUNK):
            maps = [self.reading(d, s) for s in seqs[start:start + CHUNK]]
            payload = msgpack.packb(maps if len(maps) > 1 else maps[0])
            client.publish(f"pmp/v1/dev/{d.id}/m", payload, qos=1)
            self.counts[kind] += 1

    def _drive(self) -> None:
        while self._running:
            now = time.monotonic()
            with self.lock:
                generating = self.generating
                for d in self.devices.values():
                    self._tick(d, now, generating)
            time.sleep(self.tick_s)

    def _tick(self, d: Device, now: float, generating: bool) -> None:
        rng = self.rng
        if generating and rng.random() < self.p_new:
            n = rng.choice((1, 1, 1, 2, 3, 5))
            seqs = list(range(d.next_seq, d.next_seq + n))
            d.next_seq += n
            for s in seqs:
                d.unacked[s] = now
            if n > 1 and rng.random() < self.p_inner_dup:  # a map repeated inside the array
                self._send(d, seqs + [seqs[0]], "inner_dup")
            else:
                self._send(d, seqs, "new")
            if rng.random() < self.p_dup:  # the same message again
                self._send(d, seqs, "dup")
        if d.resend_all:
            d.resend_all = False
            due = sorted(d.unacked)
        else:
            due = [s for s, sent in d.unacked.items() if now - sent >= self.resend_s]
        if due:
            for s in due:
                d.unacked[s] = now
            self._send(d, due, "resend")
        if d.next_seq and rng.random() < self.p_dump:  # the device's recent memory, acked or not
            self._send(d, list(range(max(0, d.next_seq - 30), d.next_seq)), "dump")

    # -- control ---------------------------------------------------------------------

    def start_generating(self) -> None:
        with self.lock:
            self.generating = True

    def stop_generating(self) -> None:
        with self.lock:
            self.generating = False

    def publish_one(self, device: str) -> None:
        """One new reading of ``device`` (a warm-up before the fleet generates)."""
        with self.lock:
            d = self.devices[device]
            d.unacked[d.next_seq] = time.monotonic()
            d.next_seq += 1
            self._send(d, [d.next_seq - 1], "new")

    def first_ack_after(self, started: float, timeout_s: float) -> float | None:
        """Monotonic time of the first ack received after ``started`` (None within ``timeout_s``)."""
        def found():
            return next((t for t in reversed(self.ack_times) if t > started), None) is not None
        with self.changed:
            if not self.changed.wait_for(found, timeout_s):
                return None
            return min(t for t in self.ack_times if t > started)

    def wait_all_acked(self, timeout_s: float) -> bool:
        """Whether every device was acked up to its last reading within ``timeout_s``."""
        with self.changed:
            return self.changed.wait_for(
                lambda: all(d.acked == d.next_seq - 1 and not d.unacked for d in self.devices.values()), timeout_s)

    def not_acked(self) -> int:
        with self.lock:
            return sum(len(d.unacked) for d in self.devices.values())

    def generated(self) -> dict[tuple[str, int], tuple[int, int, int]]:
        """Every reading the devices generated: (device, seq) -> (sys, dia, pul)."""
        with self.lock:
            return {(d.id, s): values(d.index, s) for d in self.devices.values() for s in range(d.next_seq)}

    def stop(self) -> None:
        self._running = False
        self._driver.join(5)
        for c, client in enumerate(self.clients):
            if client is not None:
                client.disconnect()
                client.loop_stop()
                self.clients[c] = None


class GatewayProcess:
    """``pmpgw run --broker 127.0.0.1:PORT --db DB`` as a process, restartable: ``start``,
    ``kill`` (SIGKILL) and ``stop`` (SIGTERM, drain; SIGKILL after ``timeout_s``), by PID."""

    def __init__(self, port: int, db: pathlib.Path, log: pathlib.Path, gw_id: str = "faults",
                 run_args: tuple[str, ...] = ()) -> None:
        self.port, self.db, self.log, self.gw_id = port, db, log, gw_id
        self.run_args = run_args  # more ``pmpgw run`` options
        self.process: subprocess.Popen | None = None
        self.starts = 0
        self.command = [sys.executable, "-m", "gateway.cli"]  # this checkout's (a pmpgw script may import another)

    def start(self) -> float:
        """Start it; return the monotonic time just before."""
        with self.log.open("ab") as out:
            out.write(f"--- start {self.starts}\n".encode())
            out.flush()
            started = time.monotonic()
            self.process = subprocess.Popen(
                self.command + ["run", "--broker", f"{HOST}:{self.port}", "--db", str(self.db), "--gw-id", self.gw_id,
                                *self.run_args],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=PROJECT_DIR)
        self.starts += 1
        return started

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def kill(self) -> None:
        """SIGKILL; RuntimeError if it had exited by itself before."""
        if self.process.poll() is not None:
            raise RuntimeError(f"pmpgw run exited by itself with {self.process.returncode}:\n{self.tail()}")
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(30)

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """SIGTERM (drain) and wait; the exit code (None if it had to be killed)."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                return self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
                return None
        return self.process.returncode

    def tail(self) -> str:
        return self.log.read_text(errors="replace")[-3000:]


@dataclasses.dataclass
class LoopOutcome:
    cycles: int  # SIGKILLs done
    startup_kills: int  # of them, before the restarted gateway's first ack
    first_start_s: float  # fresh store: start to first ack
    recovery_s: list[float]  # each restart that acked: start to first ack (the final restart included)
    final_settle_s: float  # final restart: from its first ack until every device was acked
    seconds: float


def kill_restart(fleet: DeviceFleet, gateway: GatewayProcess, *, cycles: int, rng: random.Random,
                 warm_device: str, max_run_s: float = 1.5, startup_kill_share: float = 0.2,
                 max_down_s: float = 0.5, reconnect_share: float = 0.3, budget_s: float = 120.0,
                 ack_timeout_s: float = 60.0, settle_timeout_s: float = 60.0) -> LoopOutcome:
    """Start the gateway (its persistent session exists once it acked ``warm_device``), let
    the fleet generate, then ``cycles`` times: SIGKILL the gateway at a random moment (before
    its first ack with ``startup_kill_share``, else up to ``max_run_s`` after it), leave it
    down up to ``max_down_s`` (sometimes reconnecting a device connection), restart it.
    Stops early once ``budget_s`` passed. Finally: restart, stop generating, wait until every
    device is acked, stop the gateway with SIGTERM."""
    began = time.monotonic()
    started = gateway.start()
    fleet.publish_one(warm_device)
    first = fleet.first_ack_after(started, ack_timeout_s)
    if first is None:
        raise RuntimeError(f"pmpgw run did not ack within {ack_timeout_s} s:\n{gateway.tail()}")
    first_start_s = first - started
    fleet.start_generating()
    recovery: list[float] = []
    done = startup_kills = 0
    time.sleep(rng.uniform(0, max_run_s))
    while True:
        gateway.kill()
        done += 1
        if rng.random() < reconnect_share:
            fleet.reconnect(rng.randrange(len(fleet.clients)))
        time.sleep(rng.uniform(0, max_down_s))
        started = gateway.start()
        if done >= cycles or time.monotonic() - began > budget_s:
            break
        if rng.random() < startup_kill_share:
            time.sleep(rng.uniform(0.05, 2.0))
            acked = fleet.first_ack_after(started, 0)
            if acked is None:
                startup_kills += 1
            else:
                recovery.append(acked - started)
            continue
        acked = fleet.first_ack_after(started, ack_timeout_s)
        if acked is None:
            raise RuntimeError(f"restart {done}: no ack within {ack_timeout_s} s:\n{gateway.tail()}")
        recovery.append(acked - started)
        time.sleep(rng.uniform(0, max_run_s))
    acked = fleet.first_ack_after(started, ack_timeout_s)
    if acked is None:
        raise RuntimeError(f"final restart: no ack within {ack_timeout_s} s:\n{gateway.tail()}")
    recovery.append(acked - started)
    fleet.stop_generating()
    if not fleet.wait_all_acked(settle_timeout_s):
        raise RuntimeError(f"{fleet.not_acked()} readings not acked {settle_timeout_s} s after the final restart"
                           f":\n{gateway.tail()}")
    settled = time.monotonic() - acked
    code = gateway.stop()
    if code != 0:
        raise RuntimeError(f"pmpgw run did not drain and exit 0 (exit {code}):\n{gateway.tail()}")
    return LoopOutcome(cycles=done, startup_kills=startup_kills, first_start_s=first_start_s, recovery_s=recovery,
                       final_settle_s=settled, seconds=time.monotonic() - began)


@dataclasses.dataclass
class Check:
    """The exactly-once verdict: counts of readings and crisis alerts against what was generated."""

    generated: int
    stored: int
    lost: int  # generated, not stored
    duplicated: int  # stored more than once (same device and seq) or never generated
    wrong_values: int  # stored with other values than generated
    crisis_readings: int
    crisis_not_alerted: int  # crisis readings linked to no BP_CRISIS alert
    crisis_alerted_twice: int  # linked to more than one, or to the same one twice
    alerted_not_crisis: int  # other readings linked to a BP_CRISIS alert
    crisis_alert_rows_extra: int  # BP_CRISIS alert rows beyond one per patient (none is resolved here)
    occurrences_mismatch: int  # patients whose BP_CRISIS occurrences differ from their crisis readings
    quarantined: dict
    counters: dict
    violations: list[str]
    examples: dict

    @property
    def ok(self) -> bool:
        return not (self.lost or self.duplicated or self.wrong_values or self.crisis_not_alerted
                    or self.crisis_alerted_twice or self.alerted_not_crisis or self.crisis_alert_rows_extra
                    or self.occurrences_mismatch or self.quarantined or self.violations)


def check_exactly_once(db: pathlib.Path, fleet: DeviceFleet) -> Check:
    """Compare the store (gateway stopped) with what ``fleet`` generated."""
    expected = fleet.generated()
    index = {d.id: d.index for d in fleet.devices.values()}
    with Store.open(db) as store:
        rows = store.readings(limit=10 ** 9)
        counters = store.counters()
    links = read_only_rows(db, "SELECT ar.alert, ar.reading FROM alert_readings ar JOIN alerts a ON a.id = ar.alert "
                               "WHERE a.rule = 'BP_CRISIS'")
    alert_rows = read_only_rows(db, "SELECT p.id, COUNT(*), SUM(a.occurrences) FROM alerts a "
                                    "JOIN patients p ON p.idx = a.patient WHERE a.rule = 'BP_CRISIS' GROUP BY p.id")
    seen = collections.Counter((r["device"], r["seq"]) for r in rows)
    key_of = {r["id"]: (r["device"], r["seq"]) for r in rows}
    lost = sorted(set(expected) - set(seen))
    extra = sorted(k for k in seen if k not in expected)
    twice = sorted(k for k, n in seen.items() if n > 1)
    wrong = sorted({(r["device"], r["seq"]) for r in rows if (r["device"], r["seq"]) in expected
                    and (r["sys"], r["dia"], r["pul"]) != expected[(r["device"], r["seq"])]})
    crisis = {k for k in expected if is_crisis(index[k[0]], k[1])}
    linked = collections.Counter(key_of.get(reading, ("?", reading)) for _, reading in links)
    not_alerted = sorted(k for k in crisis if k in seen and linked[k] == 0)
    alerted_twice = sorted(k for k in crisis if linked[k] > 1)
    alerted_other = sorted(k for k in linked if k not in crisis)
    per_patient = collections.Counter("P" + k[0] for k in crisis if k in seen)
    rows_extra = sum(n - 1 for _, n, _ in alert_rows if n > 1)
    occurrences = {patient: occ for patient, _, occ in alert_rows}
    occ_mismatch = sorted(p for p in set(per_patient) | set(occurrences) if occurrences.get(p, 0) != per_patient[p])
    return Check(
        generated=len(expected), stored=len(rows), lost=len(lost), duplicated=sum(n - 1 for n in seen.values()) +
        len(extra), wrong_values=len(wrong), crisis_readings=len(crisis), crisis_not_alerted=len(not_alerted),
        crisis_alerted_twice=len(alerted_twice), alerted_not_crisis=len(alerted_other),
        crisis_alert_rows_extra=rows_extra, occurrences_mismatch=len(occ_mismatch),
        quarantined=counters["quarantined"], counters=counters, violations=list(fleet.violations),
        examples={"lost": lost[:10], "duplicated": (twice + extra)[:10], "wrong_values": wrong[:10],
                  "crisis_not_alerted": not_alerted[:10], "crisis_alerted_twice": alerted_twice[:10],
                  "alerted_not_crisis": alerted_other[:10],
                  "occurrences_mismatch": [(p, occurrences.get(p, 0), per_patient[p]) for p in occ_mismatch[:10]]})


@dataclasses.dataclass
class FaultRun:
    outcome: LoopOutcome
    check: Check
    messages: dict


def run_kill_restart(port: int, tmp: pathlib.Path, *, devices: int, cycles: int, seed: int = 1,
                     connections: int = 4, budget_s: float = 120.0, **loop) -> FaultRun:
    """The whole experiment on the broker at ``port``, with its store and logs in ``tmp``."""
    db = tmp / "pmp.db"
    names = [f"fault-{i:04d}" for i in range(devices)] + ["fault-warm"]
    register(db, names)
    fleet = DeviceFleet(port, names, seed=seed, connections=connections)
    gateway = GatewayProcess(port, db, tmp / "pmpgw.log")
    try:
        outcome = kill_restart(fleet, gateway, cycles=cycles, rng=random.Random(seed), warm_device="fault-warm",
                               budget_s=budget_s, **loop)
    finally:
        fleet.stop()
        if gateway.alive():
            gateway.process.kill()
            gateway.process.wait()
    return FaultRun(outcome=outcome, check=check_exactly_once(db, fleet), messages=dict(fleet.counts))


def summary(run: FaultRun) -> str:
    """One line of figures: lost, duplicated, cycles, recovery p50/max."""
    c, o = run.check, run.outcome
    rec = np.array(o.recovery_s) if o.recovery_s else np.array([float("nan")])
    return (f"faults.kill_restart: lost {c.lost}, duplicated {c.duplicated}, wrong values {c.wrong_values} of "
            f"{c.generated} readings ({c.stored} stored); crisis {c.crisis_readings}: not alerted "
            f"{c.crisis_not_alerted}, alerted twice {c.crisis_alerted_twice}, occurrences mismatch "
            f"{c.occurrences_mismatch}; cycles {o.cycles} ({o.startup_kills} before the first ack); recovery "
            f"p50 {np.median(rec):.2f} s max {rec.max():.2f} s over {len(o.recovery_s)} restarts (first start "
            f"{o.first_start_s:.2f} s); final settle {o.final_settle_s:.2f} s; {o.seconds:.1f} s; counters "
            f"{c.counters}; messages {run.messages}")


def read_only_rows(db: pathlib.Path | str, query: str) -> list[tuple]:
    """The rows of ``query`` on ``db`` (an SQLite file, opened read-only; or a PostgreSQL URL)."""
    if is_url(str(db)):
        import psycopg

        with psycopg.connect(str(db)) as conn:
            return [tuple(row) for row in conn.execute(query).fetchall()]
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(query).fetchall()
    finally:
        conn.close()
