"""faults.shared_store: two gateways on one PostgreSQL database, first both subscribed to
every device (no shared subscription: each message reaches both), then in the shared
subscription group (``--shared``: each message to one) with the second SIGKILLed halfway and
restarted, while re-sending devices publish (bench.faults.DeviceFleet); a new broker and
database for each run. What must hold is what the database enforces, not either gateway's
memory: every generated reading stored exactly once with its values, each crisis reading
linked to one BP_CRISIS alert, one alert per patient (never two open), every device acked.
``faults.shared_store.ack_settle``: seconds from the end of generation until every device
was acked up to its last reading, shared run against the run where both get every message
(with ``--shared`` each device's ack is advanced by the store over what both gateways
committed, ``Store.commit_batch``'s ``ack_seqs``).

``python -m bench --only faults_shared_store``: the figures of one run (PostgreSQL private
cluster, Mosquitto private brokers). The test is tests/faults/test_shared_store.py.
"""
from __future__ import annotations

import dataclasses
import pathlib
import tempfile
import threading
import time

import paho.mqtt.client as paho

from adapters.mqtt import STATE_ONLINE
from bench._harness import Result
from bench.faults import HOST, Check, DeviceFleet, GatewayProcess, check_exactly_once, register
from bench.pg_cluster import private_cluster
from gateway.broker import PrivateBroker

GATEWAYS = ("a", "b")
START_TIMEOUT_S = 30.0


@dataclasses.dataclass
class SharedRun:
    check: Check
    acked: bool  # every device acked up to its last reading
    seconds: float  # generating
    settle_s: float  # from the end of generation until every device was acked
    exits: list[int | None]  # the gateways' exit codes after SIGTERM (0: drained)
    messages: dict
    shared: bool = False  # in the shared-subscription group
    killed: bool = False  # the second gateway SIGKILLed and restarted halfway


def run_shared_store(port: int, db: str, tmp: pathlib.Path, *, devices: int, generate_s: float,
                     seed: int = 1, shared: bool = False, kill_one: bool = False) -> SharedRun:
    """The experiment on the broker at ``port`` and the (new, empty) PostgreSQL database ``db``;
    ``shared``: the gateways in the shared-subscription group (``--shared``: each message to
    one of them) instead of both receiving every message; ``kill_one``: the second gateway
    is SIGKILLed halfway through and restarted a second later."""
    names = [f"shared-{i:04d}" for i in range(devices)]
    register(db, names)
    fleet = DeviceFleet(port, names, seed=seed)
    gateways = [GatewayProcess(port, db, tmp / f"pmpgw-{gw}.log", gw_id=gw, run_args=("--shared",) if shared else ())
                for gw in GATEWAYS]
    exits: list[int | None] = []
    try:
        for gateway in gateways:
            gateway.start()
        if not wait_online(port, GATEWAYS, START_TIMEOUT_S):  # both subscribed before the fleet starts
            raise RuntimeError(f"the gateways were not online within {START_TIMEOUT_S} s:\n"
                               + "\n".join(gateway.tail() for gateway in gateways))
        fleet.start_generating()
        if kill_one:
            time.sleep(generate_s / 2)
            gateways[1].kill()
            time.sleep(1.0)
            gateways[1].start()
            time.sleep(max(0.0, generate_s / 2 - 1.0))
        else:
            time.sleep(generate_s)
        fleet.stop_generating()
        stopped = time.monotonic()
        acked = fleet.wait_all_acked(120.0 if kill_one else 60.0)  # a killed gateway's queued share waits for it
        settle_s = time.monotonic() - stopped
    finally:
        fleet.stop()
        exits = [gateway.stop() for gateway in gateways]
    return SharedRun(check=check_exactly_once(db, fleet), acked=acked, seconds=generate_s, settle_s=settle_s,
                     exits=exits, messages=dict(fleet.counts), shared=shared, killed=kill_one)


def wait_online(port: int, gw_ids: tuple[str, ...], timeout_s: float) -> bool:
    """Whether every gateway of ``gw_ids`` published its retained ``online`` state (it is
    connected and subscribed) within ``timeout_s``."""
    online: set[str] = set()
    done = threading.Event()

    def on_message(client, userdata, message):
        if message.payload == STATE_ONLINE:
            online.add(message.topic.split("/")[3])
        if online >= set(gw_ids):
            done.set()

    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"shared-watch-{time.time_ns()}")
    client.on_message = on_message
    client.on_connect = lambda client, *_: client.subscribe("pmp/v1/gateway/+/state", qos=1)
    client.connect(HOST, port)
    client.loop_start()
    try:
        return done.wait(timeout_s)
    finally:
        client.disconnect()
        client.loop_stop()


def summary(run: SharedRun) -> str:
    c = run.check
    return (f"faults.shared_store (2 gateways, 1 PostgreSQL{', --shared' if run.shared else ''}"
            f"{', one SIGKILLed' if run.killed else ''}): lost {c.lost}, duplicated {c.duplicated}, wrong "
            f"values {c.wrong_values} of {c.generated} readings ({c.stored} stored); crisis {c.crisis_readings}: "
            f"not alerted {c.crisis_not_alerted}, alerted twice {c.crisis_alerted_twice}, extra alert rows "
            f"{c.crisis_alert_rows_extra}; every device acked {run.acked} ({run.settle_s:.2f} s after the end); "
            f"exits {run.exits}; counters {c.counters}; messages {run.messages}")


def run(quick: bool) -> list[Result]:
    devices, generate_s = (24, 5.0) if quick else (96, 20.0)
    runs = []
    with tempfile.TemporaryDirectory(prefix="pmp-shared-") as tmp, private_cluster() as cluster:
        for shared in (False, True):
            folder = pathlib.Path(tmp) / ("shared" if shared else "both")
            folder.mkdir()
            # A broker of its own: the gateways' persistent sessions (same client ids) of the
            # first run would keep their subscriptions to every device into the second.
            broker = PrivateBroker.start(folder / "broker")
            try:
                runs.append(run_shared_store(broker.port, cluster.create_database(folder.name), folder,
                                             devices=devices, generate_s=generate_s, shared=shared, kill_one=shared))
            finally:
                broker.stop()
    both, shared = runs
    for one in runs:
        print(summary(one))
    c = both.check
    note = (f"{c.generated:,} readings generated by re-sending devices, each message to both gateways; "
            f"duplicated {c.duplicated}, lost {c.lost}; every device acked {both.acked}")
    s = shared.check
    shared_note = (f"--shared, the second gateway SIGKILLed halfway: {s.generated:,} readings, duplicated "
                   f"{s.duplicated}, lost {s.lost}, crisis alerted twice {s.crisis_alerted_twice}; each device's ack "
                   f"advanced by the store over what both gateways committed; {shared.messages.get('resend', 0):,} "
                   f"re-sends vs {both.messages.get('resend', 0):,} (a device misses 20 % of acks and re-sends after "
                   f"1.5 s: the settle time is in steps of that)")
    return [Result("faults.shared_store", "readings stored once", c.stored - c.duplicated, "readings generated",
                   c.generated, note=note),
            Result("faults.shared_store.ack_settle", "s", shared.settle_s, "both gateways get every message",
                   both.settle_s, note=shared_note)]
