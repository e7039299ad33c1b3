"""e2e: how fast does a whole gateway commit what devices publish, against the broker's own
ceiling for the same stream, and how fast does an emergency reach a subscriber under load?

e2e.ingest_batched  readings/s committed (durable: WAL, synchronous=FULL, the store's
                    default) by ``pmpgw run`` on a private Mosquitto, devices sending msgpack
                    arrays of 50 BP reading maps at QoS 1, from the first publish until every
                    device's ack (``pmp/v1/dev/{id}/ack``, sent after commit) reached its last
                    seq; baseline: the same stream through the same broker into
                    ``mosquitto_sub -q 1 -V mqttv5`` (C), first publish to last receipt.
                    Best of RAW_REPEAT / GATEWAY_REPEAT timed runs (the machine is shared).
e2e.ingest_single   the same with one reading per message.
e2e.alert_latency.p50 / .p99
                    ms from publish of a crisis reading (sys 185, one patient each) to receipt
                    of its alert on ``pmp/v1/alert/{patient}``, while a paced background stream
                    keeps the gateway busy at half the batched rate measured before; baseline:
                    ms from publish of the same crisis messages to their receipt by a plain
                    subscriber of their topic (the same client, the same clock).

Everything runs on 127.0.0.1 and shares the machine's cores: publisher processes
(``bench.publishers``), the broker, the gateway process and this process. The baselines run
first, before the gateway's persistent session exists (so none of their messages queue for
it); then one gateway serves the three gateway phases, each with its own devices.
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import signal
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable

import msgpack
import numpy as np
import paho.mqtt.client as paho

from bench._harness import Result
from bench.publishers import HOST, Publishers
from gateway.broker import PrivateBroker
from gateway.store import Store

PROJECT_DIR = pathlib.Path(__file__).resolve().parent.parent
BATCH_READINGS = 50  # readings per message of the batched stream
PROCESSES = 3  # publisher processes per stream
INFLIGHT = 500  # un-acked QoS 1 messages per publisher connection
RAW_REPEAT, GATEWAY_REPEAT = 3, 2  # timed runs per figure (the best counts), each with its own devices
HOUR_MS = 3_600_000
CRISIS = {"seq": 0, "type": "bp", "sys": 185, "dia": 95, "pul": 80}  # BP_CRISIS: sys >= 180


@dataclasses.dataclass(frozen=True)
class Sizes:
    """Devices and messages of each phase; ``samples`` crisis readings for the latency."""

    devices: int
    batched_messages: int  # per device and timed run of the gateway
    single_messages: int  # per device and timed run of the gateway
    samples: int
    ceiling_batched_messages: int  # per device and run into mosquitto_sub: long enough
    ceiling_single_messages: int  # (about a second) that start and exit do not count


QUICK = Sizes(devices=48, batched_messages=60, single_messages=250, samples=100, ceiling_batched_messages=300,
              ceiling_single_messages=800)
FULL = Sizes(devices=64, batched_messages=300, single_messages=1_250, samples=300, ceiling_batched_messages=800,
             ceiling_single_messages=1_250)


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def register(db: pathlib.Path, devices: list[str]) -> None:
    """One patient per device, bound for all time (readings take the stored path). The
    registry is written with synchronous=NORMAL (untimed setup); the gateway opens FULL."""
    with Store.open(db, synchronous="NORMAL") as store:
        for device in devices:
            patient = "P" + device
            store.add_patient(patient, programmes=("AH",))
            store.add_device(device, "bp")
            store.bind(device, patient, 0)


def committed_counters(db: pathlib.Path) -> dict:
    """The store's persistent counters through a separate read-only connection."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return dict(conn.execute("SELECT key, value FROM kv").fetchall())
    finally:
        conn.close()


class Observer:
    """One paho client (its own loop thread) that publishes the crisis readings and records,
    on the monotonic clock, device acks, alerts and the raw crisis messages it receives."""

    def __init__(self, port: int, crisis_devices: list[str]) -> None:
        self.acks: dict[str, tuple[int, float]] = {}  # device -> (highest acked seq, receipt time)
        self.alerts: dict[str, float] = {}  # patient -> receipt time of its first BP_CRISIS alert
        self.raw: dict[str, float] = {}  # crisis device -> receipt time of its reading
        self.changed = threading.Condition()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"bench-observer-{os.getpid()}",
                                  protocol=paho.MQTTv311)
        self.client.on_message = self._on_message
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_: subscribed.set()
        self.client.connect(HOST, port)
        self.client.loop_start()
        topics = ["pmp/v1/dev/+/ack", "pmp/v1/alert/+"] + [f"pmp/v1/dev/{d}/m" for d in crisis_devices]
        self.client.subscribe([(topic, 1) for topic in topics])
        if not subscribed.wait(10):
            self.stop()
            raise RuntimeError("bench observer: no SUBACK within 10 s")

    def _on_message(self, client, userdata, message) -> None:
        received = time.monotonic()
        kind, _, name = message.topic.removeprefix("pmp/v1/").partition("/")
        with self.changed:
            if message.topic.endswith("/ack"):
                device = name.split("/")[0]
                seq = json.loads(message.payload)["seq"]
                if seq > self.acks.get(device, (-1, 0.0))[0]:
                    self.acks[device] = (seq, received)
            elif kind == "alert":
                if json.loads(message.payload)["rule"] == "BP_CRISIS":
                    self.alerts.setdefault(name, received)
            else:
                self.raw.setdefault(name.split("/")[0], received)
            self.changed.notify_all()

    def wait_for(self, done, timeout_s: float) -> bool:
        """Wait until ``done()`` (called under the lock) holds; False after ``timeout_s``."""
        with self.changed:
            return self.changed.wait_for(done, timeout_s)

    def all_acked(self, last_seq: dict[str, int], timeout_s: float) -> float:
        """Monotonic time at which the last of ``last_seq``'s devices was acked up to its seq."""
        if not self.wait_for(lambda: all(self.acks.get(d, (-1,))[0] >= s for d, s in last_seq.items()), timeout_s):
            missing = sum(self.acks.get(d, (-1,))[0] < s for d, s in last_seq.items())
            raise RuntimeError(f"bench: {missing} of {len(last_seq)} devices not acked within {timeout_s:.0f} s")
        with self.changed:
            return max(self.acks[d][1] for d in last_seq)

    def publish(self, topic: str, payload: bytes) -> float:
        """Publish at QoS 1; return the monotonic time just before."""
        sent = time.monotonic()
        self.client.publish(topic, payload, qos=1)
        return sent

    def stop(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class GatewayProcess:
    """``pmpgw run`` on the private broker, as its own process; ``stop`` drains it (SIGTERM),
    then kills it by PID if it has not exited in time."""

    def __init__(self, port: int, db: pathlib.Path, log: pathlib.Path) -> None:
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "gateway.cli", "run", "--broker", f"{HOST}:{port}", "--db", str(db),
                 "--gw-id", "bench"], stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT)

    def memory_mib(self, field: str) -> float:
        """``VmRSS`` (now) or ``VmHWM`` (peak) of the running gateway, MiB (NaN once it exited)."""
        try:
            status = pathlib.Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return float("nan")
        kib = next((int(line.split()[1]) for line in status.splitlines() if line.startswith(f"{field}:")), None)
        return float("nan") if kib is None else kib / 1024

    def stop(self, timeout_s: float = 30.0) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def tail(self) -> str:
        """The end of its log, for error messages."""
        return self.log.read_text(errors="replace")[-2000:]


def ceiling(port: int, devices: list[str], messages: int, per: int, timeout_s: float) -> tuple[float, dict]:
    """Readings/s of the stream into ``mosquitto_sub`` (first publish to last receipt), and
    the publishers' own figures. The subscriber's Receive Maximum is the gateway's (1,000)."""
    total = len(devices) * messages
    command = ["mosquitto_sub", "-h", HOST, "-p", str(port), "-t", "pmp/v1/dev/+/m", "-t", "pmp/v1/bench/ready",
               "-q", "1", "-V", "mqttv5", "-D", "connect", "receive-maximum", "1000", "-C", str(total + 1),
               "-F", "%t"]
    with tempfile.NamedTemporaryFile("w+") as out, \
            Publishers(port, devices, processes=PROCESSES, messages_per_device=messages, per_message=per,
                       t0_ms=_now_ms() - 12 * HOUR_MS, inflight=INFLIGHT, timeout_s=timeout_s, name="ceil") as pubs:
        subscriber = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.DEVNULL)
        try:
            _wait_subscribed(port, pathlib.Path(out.name), timeout_s=10)
            started = pubs.go()
            subscriber.wait(timeout_s)
            finished = time.monotonic()
            summary = _publisher_summary(pubs.results(), started, total)
        finally:
            if subscriber.poll() is None:
                subscriber.kill()
                subscriber.wait()
    return total * per / (finished - started), summary


def _wait_subscribed(port: int, output: pathlib.Path, timeout_s: float) -> None:
    """A retained probe reaches ``mosquitto_sub`` right after its SUBACK: wait until it printed it."""
    probe = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"bench-probe-{os.getpid()}")
    probe.connect(HOST, port)
    probe.loop_start()
    try:
        probe.publish("pmp/v1/bench/ready", b"1", qos=1, retain=True).wait_for_publish(5)
        deadline = time.monotonic() + timeout_s
        while "pmp/v1/bench/ready" not in output.read_text():
            if time.monotonic() > deadline:
                raise RuntimeError(f"mosquitto_sub did not subscribe within {timeout_s} s")
            time.sleep(0.01)
        probe.publish("pmp/v1/bench/ready", b"", qos=1, retain=True).wait_for_publish(5)  # clear the retained probe
    finally:
        probe.disconnect()
        probe.loop_stop()


def _publisher_summary(results: list[dict], started: float, total: int | None = None) -> dict:
    """Messages acked by the broker (all ``total`` of them, if given), seconds from ``started``
    to the last PUBACK, messages/s, and each device's last seq sent."""
    errors = [r["error"] for r in results if r["error"]]
    sent, acked = sum(r["sent"] for r in results), sum(r["acked"] for r in results)
    if errors or acked != sent or (total is not None and acked != total):
        raise RuntimeError(f"bench publishers: {acked} of {total or sent} acked by the broker; {errors}")
    seconds = max(r["last_ack_s"] for r in results) - started
    last_seq = {device: seq for r in results for device, seq in r["last_seq"].items()}
    return {"messages": acked, "seconds": seconds, "rate": acked / seconds, "last_seq": last_seq}


def best_of(attempts: list[Callable[[], tuple[float, dict]]]) -> tuple[float, dict]:
    """The highest rate of several timed runs, with that run's publisher summary."""
    return max((attempt() for attempt in attempts), key=lambda outcome: outcome[0])


def ingest(observer: Observer, port: int, devices: list[str], messages: int, per: int,
           timeout_s: float) -> tuple[float, dict]:
    """Readings/s committed by the gateway (first publish to the ack completing every device)."""
    total = len(devices) * messages
    last_seq = {d: messages * per - 1 for d in devices}
    with Publishers(port, devices, processes=PROCESSES, messages_per_device=messages, per_message=per,
                    t0_ms=_now_ms() - 12 * HOUR_MS, inflight=INFLIGHT, timeout_s=timeout_s, name="gw") as pubs:
        started = pubs.go()
        summary = _publisher_summary(pubs.results(), started, total)
        finished = observer.all_acked(last_seq, timeout_s)
    return total * per / (finished - started), summary


def warm_up(observer: Observer, gateway: GatewayProcess, device: str, timeout_s: float) -> float:
    """Publish one reading until the gateway acks it (it subscribed, loaded its kernels);
    return the seconds that took."""
    started = time.monotonic()
    payload = msgpack.packb({"seq": 0, "t": _now_ms() - HOUR_MS, "type": "bp", "sys": 120, "dia": 80})
    while time.monotonic() - started < timeout_s:
        if gateway.process.poll() is not None:
            raise RuntimeError(f"pmpgw run exited with {gateway.process.returncode}:\n{gateway.tail()}")
        observer.publish(f"pmp/v1/dev/{device}/m", payload)
        if observer.wait_for(lambda: device in observer.acks, 0.5):
            return time.monotonic() - started
    raise RuntimeError(f"pmpgw run did not ack within {timeout_s} s:\n{gateway.tail()}")


def alert_latency(observer: Observer, port: int, crisis_devices: list[str], background: list[str], rate: float,
                  gap_s: float) -> tuple[np.ndarray, np.ndarray, dict]:
    """Publish->alert and publish->raw receipt (ms) of one crisis reading per device, one at a
    time ``gap_s`` apart, while ``background`` devices publish batched readings at ``rate``
    messages/s from before the first to after the last crisis reading; returns both
    latencies and the background's publisher figures."""
    limit_s = len(crisis_devices) * (gap_s + 0.5) + 10  # the background's bound if the loop stalls
    alert_ms, raw_ms = [], []
    most = int(rate * limit_s / len(background)) + 1
    with Publishers(port, background, processes=PROCESSES, messages_per_device=most, per_message=BATCH_READINGS,
                    t0_ms=_now_ms() - 12 * HOUR_MS, rate=rate, inflight=INFLIGHT, timeout_s=limit_s,
                    name="bg") as pubs:
        started = pubs.go()
        time.sleep(0.5)
        for device in crisis_devices:
            patient = "P" + device
            sent = observer.publish(f"pmp/v1/dev/{device}/m", msgpack.packb({**CRISIS, "t": _now_ms() - 60_000}))
            if not observer.wait_for(lambda: patient in observer.alerts and device in observer.raw, 10):
                raise RuntimeError(f"bench: no alert for {patient} within 10 s")
            with observer.changed:
                alert_ms.append((observer.alerts[patient] - sent) * 1000)
                raw_ms.append((observer.raw[device] - sent) * 1000)
            time.sleep(gap_s)
        pubs.stop_sending()
        summary = _publisher_summary(pubs.results(), started)
        observer.all_acked(summary["last_seq"], 60)
    return np.array(alert_ms), np.array(raw_ms), summary


@dataclasses.dataclass(frozen=True)
class Measured:
    """One run's figures: rates in readings/s, latencies in ms, publisher summaries
    (``messages``, ``seconds``, ``rate`` in messages/s acked by the broker), memory in MiB."""

    raw_batched: float
    raw_single: float
    batched: float
    single: float
    alert_ms: np.ndarray
    raw_ms: np.ndarray
    publishers: dict[str, dict]  # phase -> summary
    startup_s: float
    rss_mib: dict[str, float]  # VmRSS after "warm-up", "batched", "single", "latency"; "peak" VmHWM
    stored: int
    expected: int


def run(quick: bool) -> list[Result]:
    sizes = QUICK if quick else FULL
    with tempfile.TemporaryDirectory(dir=PROJECT_DIR, prefix=".bench-e2e-") as tmp:
        measured = measure(sizes, pathlib.Path(tmp), timeout_s=60.0 if quick else 120.0)
    if measured.stored != measured.expected:
        raise RuntimeError(f"bench: the gateway stored {measured.stored:,} of {measured.expected:,} readings")
    return results(sizes, measured)


def measure(sizes: Sizes, tmp: pathlib.Path, timeout_s: float) -> Measured:
    """Baselines into mosquitto_sub, then one gateway through warm-up, batched, single and
    latency phases (each with its own devices), all on one private broker in ``tmp``."""
    phases = [f"cb{r}" for r in range(RAW_REPEAT)] + [f"cs{r}" for r in range(RAW_REPEAT)]
    phases += [f"gb{r}" for r in range(GATEWAY_REPEAT)] + [f"gs{r}" for r in range(GATEWAY_REPEAT)] + ["bg"]
    names = {phase: [f"{phase}-{i}" for i in range(sizes.devices)] for phase in phases}
    crisis = [f"crisis-{i}" for i in range(sizes.samples)]
    gateway_devices = [d for phase in phases if phase.startswith(("g", "bg")) for d in names[phase]]
    db = tmp / "pmp.db"
    register(db, gateway_devices + crisis + ["warm-0"])
    pubs: dict[str, dict] = {}
    rss: dict[str, float] = {}
    broker = PrivateBroker.start(tmp / "broker")
    port = broker.port
    try:
        raw_batched, pubs["cb"] = best_of([lambda r=r: ceiling(port, names[f"cb{r}"], sizes.ceiling_batched_messages,
                                                               BATCH_READINGS, timeout_s) for r in range(RAW_REPEAT)])
        raw_single, pubs["cs"] = best_of([lambda r=r: ceiling(port, names[f"cs{r}"], sizes.ceiling_single_messages, 1,
                                                              timeout_s) for r in range(RAW_REPEAT)])
        observer = Observer(port, crisis)
        gateway = GatewayProcess(port, db, tmp / "pmpgw.log")
        try:
            startup_s = warm_up(observer, gateway, "warm-0", timeout_s)
            rss["warm-up"] = gateway.memory_mib("VmRSS")
            batched, pubs["gb"] = best_of([lambda r=r: ingest(observer, port, names[f"gb{r}"], sizes.batched_messages,
                                                              BATCH_READINGS, timeout_s)
                                           for r in range(GATEWAY_REPEAT)])
            rss["batched"] = gateway.memory_mib("VmRSS")
            single, pubs["gs"] = best_of([lambda r=r: ingest(observer, port, names[f"gs{r}"], sizes.single_messages, 1,
                                                             timeout_s) for r in range(GATEWAY_REPEAT)])
            rss["single"] = gateway.memory_mib("VmRSS")
            alert_ms, raw_ms, pubs["bg"] = alert_latency(observer, port, crisis, names["bg"],
                                                         rate=batched / BATCH_READINGS / 2, gap_s=0.02)
            rss["latency"] = gateway.memory_mib("VmRSS")
            rss["peak"] = gateway.memory_mib("VmHWM")
        finally:
            gateway.stop()
            observer.stop()
    finally:
        broker.stop()
    expected = GATEWAY_REPEAT * sizes.devices * (sizes.batched_messages * BATCH_READINGS + sizes.single_messages)
    expected += pubs["bg"]["messages"] * BATCH_READINGS + len(crisis) + 1
    counters = committed_counters(db)
    return Measured(raw_batched=raw_batched, raw_single=raw_single, batched=batched, single=single,
                    alert_ms=alert_ms, raw_ms=raw_ms, publishers=pubs, startup_s=startup_s, rss_mib=rss,
                    stored=min(counters.get("stored", 0), counters.get("received", 0)), expected=expected)


def results(sizes: Sizes, m: Measured) -> list[Result]:
    """The four figures, with notes saying what was measured and by which publishers."""
    memory = ", ".join(f"{phase} {mib:.0f}" for phase, mib in m.rss_mib.items())
    setting = (f"{os.cpu_count()} cores shared by publishers, broker, gateway and this process; gateway = "
               f"`pmpgw run` in its own process (ready in {m.startup_s:.1f} s; RSS MiB after {memory}), WAL "
               f"synchronous=FULL on the project disk; {m.stored:,} of {m.expected:,} published readings stored")
    pubs = (f"{PROCESSES} bench.publishers processes (raw-socket MQTT 3.1.1, prebuilt PUBLISH packets, "
            f"<= {INFLIGHT} un-acked QoS 1 each)")

    def stream(per: int, gw: str, raw: str) -> str:
        p = m.publishers
        return (f"{sizes.devices} devices x {p[gw]['messages'] // sizes.devices:,} messages of {per} reading(s) "
                f"(mosquitto_sub runs: x {p[raw]['messages'] // sizes.devices:,}) from {pubs}; the broker acked "
                f"them at {p[gw]['rate'] * per:,.0f} readings/s in the gateway run, "
                f"{p[raw]['rate'] * per:,.0f} in the mosquitto_sub run; best of {GATEWAY_REPEAT} gateway / "
                f"{RAW_REPEAT} mosquitto_sub runs; {setting}")

    p50, p99 = np.percentile(m.alert_ms, [50, 99])
    b50, b99 = np.percentile(m.raw_ms, [50, 99])
    load = (f"{len(m.alert_ms)} crisis readings (sys 185), one patient each, published one at a time 20 ms apart "
            f"by a paho client that also subscribes to them and to the alerts; meanwhile "
            f"{m.publishers['bg']['rate'] * BATCH_READINGS:,.0f} readings/s in batches of {BATCH_READINGS} (half the "
            f"batched rate) from {pubs}; alert max {m.alert_ms.max():.0f} ms; {setting}")
    return [
        Result("e2e.ingest_batched", "readings/s", m.batched, "mosquitto_sub, same stream", m.raw_batched,
               note=stream(BATCH_READINGS, "gb", "cb")),
        Result("e2e.ingest_single", "readings/s", m.single, "mosquitto_sub, same stream", m.raw_single,
               note=stream(1, "gs", "cs")),
        Result("e2e.alert_latency.p50", "ms", p50, "broker publish->subscriber p50", b50, note=load),
        Result("e2e.alert_latency.p99", "ms", p99, "broker publish->subscriber p99", b99, note=load),
    ]
