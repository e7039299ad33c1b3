"""Broker restarts under ingest (issue 6, 1b), shared by tests/faults/test_broker_restart.py
and ``bench/faults_broker_restart.py``.

The private Mosquitto (persistence on, saved every second) is stopped with SIGTERM (it saves
its persistence) or SIGKILL (it loses what it took in since its last save) while the
re-sending devices of ``bench.faults`` publish, and is restarted on the same port and data
directory. One ``pmpgw run --broker`` process runs throughout, is never restarted, and must
reconnect by itself. An outage is one stop and restart, or, "requeued", two in a row:

- the gateway's ``online`` (its state topic, read by ``StateWatcher``) times its reconnection;
- "frozen" outages stop the gateway (SIGSTOP) before the broker goes and continue it
  (SIGCONT) once the broker is back; meanwhile a probe device publishes readings once, never
  re-sent, so they can only reach the gateway through its persistent session (subscriptions
  kept across the restart). A requeued outage restarts the broker a second time, with
  SIGTERM, while those readings wait in the session's queue: the queue survives too;
- at the end every device is acked, every reading stored exactly once with its values and
  every crisis reading alerted once (``bench.faults.check_exactly_once``), and the gateway's
  ``mqtt.connections`` grew by one per outage (one connection per outage it saw).

    run = run_broker_restart(tmp, devices=24, outages=5, seed=1)
    print(summary(run))
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import random
import signal
import threading
import time
from collections.abc import Iterable, Iterator

import msgpack
import numpy as np
import paho.mqtt.client as paho
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.subscribeoptions import SubscribeOptions

from adapters.mqtt import STATE_ONLINE
from bench.faults import HOST, Check, DeviceFleet, GatewayProcess, check_exactly_once, register
from gateway.broker import PrivateBroker
from gateway.store import Store

GW_ID = "faults-broker"
WARM_DEVICE, PROBE_DEVICE = "fault-warm", "fault-probe"
# The broker settings the experiment is about, as they must read in its mosquitto.conf.
PERSISTENCE = ("persistence true", "autosave_interval 1")
# Outage kinds (signal, frozen, requeued) every run covers first, in a seeded order.
COVERED = (("term", True, True), ("kill", False, False), ("term", False, False), ("kill", True, False))


class RestartableBroker:
    """A ``PrivateBroker`` stopped and started again on the same port and data directory;
    refuses to run without persistence saved every second (``PERSISTENCE``)."""

    def __init__(self, data_dir: pathlib.Path) -> None:
        self.data_dir = pathlib.Path(data_dir)
        self.current = PrivateBroker.start(self.data_dir)
        self.port = self.current.port
        conf = (self.current.data_dir / "mosquitto.conf").read_text().splitlines()
        missing = [line for line in PERSISTENCE if line not in conf]
        if missing:
            self.current.stop()
            raise RuntimeError(f"the private broker's config lacks {missing}: broker restarts test persistence")

    def stop(self, kill: bool) -> None:
        """SIGKILL (``kill``) or SIGTERM, and wait until it has exited."""
        self.current.stop(kill=kill)

    def start(self) -> float:
        """Start it again; the monotonic time once it accepts connections."""
        self.current = PrivateBroker.start(self.data_dir, port=self.port)
        return time.monotonic()

    def close(self) -> None:
        self.current.stop()


def publish_once(port: int, topic: str, payloads: list[bytes], timeout_s: float = 10.0) -> None:
    """Publish ``payloads`` at QoS 1 from a client of its own and return once the broker has
    acknowledged every one (RuntimeError otherwise): they are with the broker, and nothing
    will send them again."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"fault-once-{os.getpid()}-{time.time_ns()}",
                         protocol=paho.MQTTv311, clean_session=True)
    client.connect(HOST, port, keepalive=30)
    client.loop_start()
    try:
        infos = [client.publish(topic, payload, qos=1) for payload in payloads]
        deadline = time.monotonic() + timeout_s
        for info in infos:
            info.wait_for_publish(max(0.0, deadline - time.monotonic()))
        if not all(info.is_published() for info in infos):
            raise RuntimeError(f"the broker did not acknowledge {topic} within {timeout_s} s")
    finally:
        client.disconnect()
        client.loop_stop()


SESSION_WAIT_S = 10.0  # how long probe readings may take through the gateway's restored session


class ProbeFleet(DeviceFleet):
    """``DeviceFleet`` plus probe devices, which generate nothing by themselves: ``send_once``
    publishes a probe's new readings once, over a connection of its own, and seals the probe
    (it sends nothing, not even a re-send or a dump) until ``release`` hands the readings to
    the usual re-send logic. The fleet's own connections reconnect by themselves (paho's
    loop thread, 1 s backoff doubling) and, on every connect, re-subscribe and re-send every
    un-acked reading (``DeviceFleet``)."""

    def __init__(self, port: int, devices: list[str], *, probes: Iterable[str], **fleet) -> None:
        self.probes = frozenset(probes)
        self.sealed: set[str] = set()
        super().__init__(port, list(devices) + sorted(self.probes), **fleet)

    def _tick(self, d, now: float, generating: bool) -> None:
        if d.id not in self.sealed:
            super()._tick(d, now, generating and d.id not in self.probes)

    def send_once(self, device: str, n: int) -> list[int]:
        """Publish ``n`` new readings of probe ``device`` once; return their seqs."""
        with self.lock:
            d = self.devices[device]
            self.sealed.add(device)
            seqs = list(range(d.next_seq, d.next_seq + n))
            d.next_seq += n
            payloads = [msgpack.packb(self.reading(d, s)) for s in seqs]
            self.counts["probe"] += n
        publish_once(self.port, f"pmp/v1/dev/{device}/m", payloads)
        return seqs

    def release(self, device: str, seqs: list[int]) -> None:
        """Let probe ``device`` re-send those of ``seqs`` it has no ack for (a missed ack)."""
        with self.lock:
            d = self.devices[device]
            now = time.monotonic()
            d.unacked.update({s: now for s in seqs if s > d.acked})
            self.sealed.discard(device)

    def wait_connections(self, up: bool, timeout_s: float) -> bool:
        """Whether, within ``timeout_s``, every device connection is up (``up``) or none is."""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if all((c is not None and c.is_connected()) == up for c in self.clients):
                return True
            time.sleep(0.01)
        return False


class StateWatcher:
    """When the gateway (re)connects: the monotonic receipt times of the ``online`` it
    publishes on its state topic once subscribed (retained copies ignored), over a
    persistent MQTT 5 session of the watcher's own. Call ``connect`` again after each broker
    restart: the session resumes, so an ``online`` published while the watcher was not back
    yet was queued for it and arrives as it connects: a reconnect time is then the watcher's
    own (a few ms), an upper bound of the gateway's."""

    def __init__(self, port: int, topic: str, timeout_s: float = 10.0) -> None:
        self.port, self.topic, self.timeout_s = port, topic, timeout_s
        self.client_id = f"fault-watch-{os.getpid()}-{time.time_ns()}"
        self.online: list[float] = []
        self.sessions_lost = 0
        self.take_retained = False
        self.changed = threading.Condition()
        self.client: paho.Client | None = None
        self.connect(first=True)

    def connect(self, first: bool = False) -> None:
        """(Re)connect with ``clean_start=False``; RuntimeError if the broker lost the session."""
        self.stop()
        ready, resumed = threading.Event(), []
        client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=self.client_id, protocol=paho.MQTTv5,
                             reconnect_on_failure=False)

        def on_connect(client, userdata, flags, reason, properties):
            if reason.is_failure:
                return
            resumed.append(flags.session_present)
            if flags.session_present:
                ready.set()
            else:  # first: no retained copy, only a live ``online`` is a (re)connection; after a
                # lost session, the retained one (the gateway may have said it meanwhile)
                self.take_retained = not first
                client.subscribe(self.topic, options=SubscribeOptions(qos=1, retainHandling=2 if first else 0))

        client.on_connect = on_connect
        client.on_subscribe = lambda *_: ready.set()
        client.on_message = self._on_message
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = 3600
        client.connect(HOST, self.port, keepalive=30, clean_start=False, properties=properties)
        client.loop_start()
        self.client = client
        if not ready.wait(self.timeout_s):
            raise RuntimeError(f"state watcher: no connection to 127.0.0.1:{self.port} within {self.timeout_s} s")
        if not first and resumed != [True]:
            # Seen now and then right after a restart (the watcher is an instrument: the
            # gateway's own session is what the probe readings test). It subscribed again and
            # takes the retained ``online``: that outage's reconnect time is an upper bound.
            self.sessions_lost += 1

    def _on_message(self, client, userdata, message) -> None:
        retained_ok, self.take_retained = self.take_retained, False
        if message.payload == STATE_ONLINE and (retained_ok or not message.retain):
            with self.changed:
                self.online.append(time.monotonic())
                self.changed.notify_all()

    def online_after(self, started: float, timeout_s: float) -> float | None:
        """Monotonic receipt time of the first ``online`` after ``started`` (None within ``timeout_s``)."""
        with self.changed:
            if not self.changed.wait_for(lambda: any(t > started for t in self.online), timeout_s):
                return None
            return min(t for t in self.online if t > started)

    def stop(self) -> None:
        if self.client is not None:
            self.client.disconnect()
            self.client.loop_stop()
            self.client = None


class FreezableGateway(GatewayProcess):
    """``GatewayProcess`` that ``freeze`` can stop (SIGSTOP) and continue (SIGCONT) without
    ending it."""

    @contextlib.contextmanager
    def freeze(self) -> Iterator[None]:
        self.process.send_signal(signal.SIGSTOP)
        try:
            yield
        finally:
            self.process.send_signal(signal.SIGCONT)


def stored_seqs(db: pathlib.Path, device: str) -> set[int]:
    """Seqs of ``device``'s stored readings, read beside the running gateway (WAL)."""
    with Store.open(db) as store:
        return {r["seq"] for r in store.readings(device=device, limit=10 ** 9)}


def wait_stored(db: pathlib.Path, device: str, seqs: list[int], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not set(seqs) <= stored_seqs(db, device):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


@dataclasses.dataclass
class Outage:
    """One outage of the broker as the gateway saw it. Times in seconds."""

    signal: str  # how the broker was stopped: "term" (it saves) or "kill" (it loses the last second)
    frozen: bool  # the gateway was stopped (SIGSTOP) until the broker was back
    requeued: bool  # frozen, and the broker was restarted a second time (SIGTERM) meanwhile
    down_s: float  # broker stopped -> accepting connections again (the last restart)
    gateway_s: float  # broker back (frozen: gateway continued) -> the gateway's ``online``
    devices_s: float  # broker back -> every device connection up again
    probe: int  # readings published once while the gateway was away (frozen)
    session_kept: bool = True  # frozen: those readings reached the gateway through its session

    @property
    def restarts(self) -> int:
        return 2 if self.requeued else 1


@dataclasses.dataclass
class RestartOutcome:
    outages: list[Outage]
    first_start_s: float  # gateway start to its first device ack
    final_settle_s: float  # last outage's ``online`` until every device was acked
    gateway_starts: int  # processes started: 1, the gateway was never restarted
    stats: dict  # the gateway's last stats (saved at its drain)
    seconds: float
    watcher_sessions_lost: int = 0  # restarts after which the measuring client's own session was gone

    @property
    def restarts(self) -> dict[str, int]:
        """Broker restarts by signal (a requeued outage's second stop is a SIGTERM)."""
        out = {"term": 0, "kill": 0}
        for o in self.outages:
            out[o.signal] += 1
            out["term"] += o.requeued
        return out


def _plan(rng: random.Random, outages: int, frozen_share: float, requeue_share: float) -> list[tuple[str, bool, bool]]:
    """Kinds of ``outages`` outages: those of COVERED first (seeded order), then seeded draws."""
    plan = list(COVERED)
    rng.shuffle(plan)
    while len(plan) < outages:
        frozen = rng.random() < frozen_share
        plan.append((rng.choice(("term", "kill")), frozen, frozen and rng.random() < requeue_share))
    return plan[:outages]


def broker_restart(broker: RestartableBroker, fleet: ProbeFleet, gateway: FreezableGateway, watcher: StateWatcher,
                   db: pathlib.Path, *, outages: int, rng: random.Random, max_run_s: float = 1.5,
                   max_down_s: float = 0.5, frozen_share: float = 0.4, requeue_share: float = 0.5,
                   probe_readings: int = 3, budget_s: float = 120.0, timeout_s: float = 60.0) -> RestartOutcome:
    """Start the gateway, let the fleet generate, then ``outages`` times (fewer once
    ``budget_s`` passed): ingest for up to ``max_run_s``, stop the broker, leave it down up to
    ``max_down_s``, start it again, and wait until the gateway is back (``online``), every
    device connection is up and, after a frozen outage, the probe's readings are stored.
    Finally stop generating, wait until every device is acked and stop the gateway (SIGTERM).
    RuntimeError when the gateway exits, does not reconnect or loses its session."""
    began = time.monotonic()
    started = gateway.start()
    fleet.publish_one(WARM_DEVICE)
    first = fleet.first_ack_after(started, timeout_s)
    if first is None or watcher.online_after(started, timeout_s) is None:
        raise RuntimeError(f"pmpgw run did not connect and ack within {timeout_s} s:\n{gateway.tail()}")
    fleet.start_generating()
    done: list[Outage] = []
    for signal_name, frozen, requeued in _plan(rng, outages, frozen_share, requeue_share):
        if time.monotonic() - began > budget_s:
            break
        time.sleep(rng.uniform(0.2, max_run_s))
        with gateway.freeze() if frozen else contextlib.nullcontext():
            stopped = time.monotonic()
            broker.stop(kill=signal_name == "kill")
            if not fleet.wait_connections(up=False, timeout_s=timeout_s):
                raise RuntimeError(f"device connections still up {timeout_s} s after the broker stopped")
            time.sleep(rng.uniform(0.05, max_down_s))
            back = broker.start()
            watcher.connect()
            probe = fleet.send_once(PROBE_DEVICE, probe_readings) if frozen else []
            if requeued:  # the probe's readings wait in the gateway's session queue: SIGTERM saves them
                time.sleep(rng.uniform(0.05, max_down_s))
                stopped = time.monotonic()
                broker.stop(kill=False)
                time.sleep(rng.uniform(0.05, max_down_s))
                back = broker.start()
                watcher.connect()
            down_s = back - stopped
            if frozen:
                back = time.monotonic()  # the gateway continues as the block ends
        online = watcher.online_after(back, timeout_s)
        if online is None:
            raise RuntimeError(f"outage {len(done) + 1}: the gateway did not reconnect within {timeout_s} s:\n"
                               f"{gateway.tail()}")
        if not fleet.wait_connections(up=True, timeout_s=timeout_s):
            raise RuntimeError(f"outage {len(done) + 1}: device connections not back within {timeout_s} s")
        devices_up = time.monotonic()
        session_kept = True
        if probe:
            # Published while the gateway was away: its persistent session should deliver
            # them. Mosquitto 2.0.11 now and then loses a session it restored before the
            # client comes back (this gateway's and the measuring client's both seen, more
            # often across two restarts): then the device's re-send, released here, delivers
            # them, and the outage records it.
            session_kept = wait_stored(db, PROBE_DEVICE, probe, SESSION_WAIT_S)
            fleet.release(PROBE_DEVICE, probe)
        if not gateway.alive():
            raise RuntimeError(f"pmpgw run exited (exit {gateway.process.returncode}):\n{gateway.tail()}")
        done.append(Outage(signal_name, frozen, requeued, down_s=down_s, gateway_s=online - back,
                           devices_s=devices_up - back, probe=len(probe), session_kept=session_kept))
    last_online = watcher.online[-1]
    fleet.stop_generating()
    if not fleet.wait_all_acked(timeout_s):
        raise RuntimeError(f"{fleet.not_acked()} readings not acked {timeout_s} s after the last outage:\n"
                           f"{gateway.tail()}")
    settled = time.monotonic() - last_online
    code = gateway.stop()
    if code != 0:
        raise RuntimeError(f"pmpgw run did not drain and exit 0 (exit {code}):\n{gateway.tail()}")
    with Store.open(db) as store:
        stats = next((s for s in store.gateway_stats() if s["gw"] == gateway.gw_id), {})
    return RestartOutcome(outages=done, first_start_s=first - started, final_settle_s=settled,
                          gateway_starts=gateway.starts, stats=stats, seconds=time.monotonic() - began,
                          watcher_sessions_lost=watcher.sessions_lost)


@dataclasses.dataclass
class BrokerFaultRun:
    outcome: RestartOutcome
    check: Check
    messages: dict


def _end(gateway: GatewayProcess) -> None:
    """SIGKILL the gateway if the run left it running (it failed)."""
    if gateway.alive():
        gateway.process.kill()
        gateway.process.wait()


def run_broker_restart(tmp: pathlib.Path, *, devices: int, outages: int, seed: int = 1, connections: int = 4,
                       budget_s: float = 120.0, **loop) -> BrokerFaultRun:
    """The whole experiment: its own restartable broker, store and logs in ``tmp``."""
    db = tmp / "pmp.db"
    names = [f"fault-{i:04d}" for i in range(devices)] + [WARM_DEVICE]
    register(db, names + [PROBE_DEVICE])
    with contextlib.ExitStack() as cleanup:  # undone in reverse: gateway, fleet, watcher, broker
        broker = RestartableBroker(tmp / "broker")
        cleanup.callback(broker.close)
        watcher = StateWatcher(broker.port, f"pmp/v1/gateway/{GW_ID}/state")
        cleanup.callback(watcher.stop)
        fleet = ProbeFleet(broker.port, names, probes=[PROBE_DEVICE], seed=seed, connections=connections)
        cleanup.callback(fleet.stop)
        gateway = FreezableGateway(broker.port, db, tmp / "pmpgw.log", gw_id=GW_ID)
        cleanup.callback(_end, gateway)
        outcome = broker_restart(broker, fleet, gateway, watcher, db, outages=outages, rng=random.Random(seed),
                                 budget_s=budget_s, **loop)
    return BrokerFaultRun(outcome=outcome, check=check_exactly_once(db, fleet), messages=dict(fleet.counts))


def _p50_max(values: list[float]) -> str:
    if not values:
        return "none"
    return f"p50 {np.median(values):.2f} s max {max(values):.2f} s"


def summary(run: BrokerFaultRun) -> str:
    """One line of figures: lost, duplicated, restarts by kind, reconnect times, probes, connections."""
    c, o = run.check, run.outcome
    mqtt = o.stats.get("mqtt", {})
    frozen = [x for x in o.outages if x.frozen]
    return (f"faults.broker_restart: lost {c.lost}, duplicated {c.duplicated}, wrong values {c.wrong_values} of "
            f"{c.generated} readings ({c.stored} stored); crisis {c.crisis_readings}: not alerted "
            f"{c.crisis_not_alerted}, alerted twice {c.crisis_alerted_twice}; broker restarts {o.restarts} in "
            f"{len(o.outages)} outages ({len(frozen)} with the gateway frozen, "
            f"{sum(x.requeued for x in o.outages)} requeued); gateway reconnect after each outage "
            f"{[round(x.gateway_s, 2) for x in o.outages]} s ({_p50_max([x.gateway_s for x in o.outages])}), "
            f"devices {_p50_max([x.devices_s for x in o.outages])}; broker down "
            f"{_p50_max([x.down_s for x in o.outages])}; probe readings delivered by the gateway's session "
            f"{sum(x.probe for x in frozen if x.session_kept)}, by the device's re-send after the broker lost "
            f"the session {sum(x.probe for x in frozen if not x.session_kept)}; gateway processes {o.gateway_starts}, mqtt.connections "
            f"{mqtt.get('connections')}, stale acks {mqtt.get('stale_acks')}; first start {o.first_start_s:.2f} s, "
            f"final settle {o.final_settle_s:.2f} s; {o.seconds:.1f} s; watcher sessions lost "
            f"{o.watcher_sessions_lost}; messages {run.messages}")
