"""``pmpgw run``: the gateway service; ``pmpgw simulate``: a simulated fleet publishing to it."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import time

import paho.mqtt.client as paho
import trio

from adapters.mqtt import LinkSettings, MqttLink
from core.dedup_keys import MAX_CAPACITY, check_max_capacity

from .broker import PrivateBroker
from .cli_common import add_db_option, broker_address_file, data_dir, parse_address, print_json
from .replay import GATEWAY_HOLDER, writer_lock
from .service import Gateway, ServiceSettings
from .simfleet import DAY_MS, SimulatedFleet
from .store import RegistryError, Store


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``run`` and ``simulate`` to ``pmpgw``."""
    run = commands.add_parser("run", help="run the gateway", description=(
        "Run the gateway: subscribe to devices' readings and hubs' GATT records, store each reading once, "
        "ack after commit, publish alerts. Without --broker it starts its own Mosquitto on 127.0.0.1 "
        "(address written to DATA_DIR/broker/address). It holds the database's writer lock while it runs "
        "(DB.writer.lock in DATA_DIR: one gateway per database; it runs the quarantine replays asked for "
        "meanwhile). Ctrl-C or SIGTERM drains and exits 0."))
    run.add_argument("--broker", type=parse_address, help="external broker HOST:PORT (default: a private one)")
    run.add_argument("--gw-id", default="gw1", help="gateway id: its MQTT client id is pmpgw-ID (default gw1)")
    run.add_argument("--for", dest="for_s", type=float, default=None, help="drain and stop after this many seconds")
    run.add_argument("--dedup-slots", type=_slots, default=MAX_CAPACITY, metavar="N",
                     help=f"bound of the dedup table in memory, slots of 32 bytes, a power of two (default "
                          f"{MAX_CAPACITY:,} = 256 MiB): past it the oldest keys are evicted and looked up in the "
                          "database when needed")
    add_db_option(run)
    run.set_defaults(handler=_run)

    sim = commands.add_parser("simulate", help="publish a simulated fleet's readings", description=(
        "Register a simulated fleet (patients, tonometers, glucometers, hubs with BLE meters) in the "
        "database and publish its readings of the last DAYS days as fast as the broker takes them."))
    sim.add_argument("--broker", type=parse_address, help="broker HOST:PORT (default: the running gateway's private one)")
    sim.add_argument("--patients", type=int, default=200, help="patients in the fleet (default 200)")
    sim.add_argument("--days", type=float, default=1.0, help="days of history to publish (default 1)")
    sim.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    sim.add_argument("--rate", type=float, default=None,
                     help="messages per second (default: as fast as the broker takes them)")
    add_db_option(sim)
    sim.set_defaults(handler=_simulate)


def _slots(text: str) -> int:
    """``--dedup-slots``: a power of two (``core.dedup_keys.check_max_capacity``)."""
    try:
        return check_max_capacity(int(text))
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from error


def _run(args: argparse.Namespace) -> int:
    """Serve while holding the database's writer lock: the gateway is the single writer of
    the core's state, and ``pmpgw quarantine replay`` hands its work to it."""
    with writer_lock(args.db, GATEWAY_HOLDER) as holder:
        if holder is not None:
            print(f"pmpgw: LOCKED: {args.db} is being written by {holder}; one gateway (or quarantine replay) "
                  "at a time writes to a database: stop it, or give this one its own --db", file=sys.stderr)
            return 2
        return _run_gateway(args)


def _run_gateway(args: argparse.Namespace) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    broker = None
    if args.broker is None:
        broker = PrivateBroker.start(data_dir(args.db) / "broker")
        broker_address_file(args.db).write_text(f"127.0.0.1:{broker.port}\n")
    host, port = args.broker or broker.address
    print(f"pmpgw: broker {host}:{port}, database {args.db}, gateway {args.gw_id}", file=sys.stderr, flush=True)
    try:
        with Store.open(args.db) as store:
            link = MqttLink(LinkSettings(host=host, port=port, client_id=f"pmpgw-{args.gw_id}",
                                         state_topic=f"pmp/v1/gateway/{args.gw_id}/state"))
            gateway = Gateway(store, link, ServiceSettings(gw_id=args.gw_id, dedup_max_capacity=args.dedup_slots))
            trio.run(_serve, gateway, args.for_s)
            print_json(gateway.stats("down"))
    finally:
        if broker is not None:
            broker.stop()
            broker_address_file(args.db).unlink(missing_ok=True)
    return 0


async def _serve(gateway: Gateway, for_s: float | None) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_drain_on_signal, gateway)
        if for_s is not None:
            nursery.start_soon(_drain_after, gateway, for_s)
        await gateway.run()
        nursery.cancel_scope.cancel()


async def _drain_on_signal(gateway: Gateway) -> None:
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async for _ in signals:
            print("pmpgw: draining", file=sys.stderr, flush=True)
            gateway.drain()
            return


async def _drain_after(gateway: Gateway, seconds: float) -> None:
    await trio.sleep(seconds)
    gateway.drain()


def _simulate(args: argparse.Namespace) -> int:
    address = args.broker
    if address is None:
        try:
            address = parse_address(broker_address_file(args.db).read_text().strip())
        except FileNotFoundError:
            print("pmpgw: no --broker and no running gateway's private broker (start `pmpgw run` first)",
                  file=sys.stderr)
            return 2
    now = int(time.time() * 1000)
    fleet = SimulatedFleet(args.patients, start_ms=now - int(args.days * DAY_MS), days=args.days, seed=args.seed)
    with Store.open(args.db) as store:
        _register_fleet(store, fleet)
    sent = _publish(address, fleet, rate=args.rate)
    print_json({"published": sent, "fleet": vars(fleet.counts), "patients": args.patients, "days": args.days})
    return 0


def _register_fleet(store: Store, fleet: SimulatedFleet) -> None:
    """Add the fleet's patients, devices and bindings that the registry does not have yet."""
    patients, devices, bindings = fleet.registry()
    known_patients, known_devices = store.patient_index(), store.device_index()
    for patient, programmes in patients:
        if patient not in known_patients:
            store.add_patient(patient, programmes=programmes, tz="Europe/Moscow")
    for device, kind in devices:
        if device not in known_devices:
            store.add_device(device, kind)
    for device, patient in bindings:
        try:
            store.bind(device, patient, 0)
        except RegistryError as error:
            if error.reason != "OVERLAP":
                raise


def _publish(address: tuple[str, int], fleet: SimulatedFleet, *, rate: float | None = None,
             timeout_s: float = 60.0) -> int:
    """Publish every message of the fleet at QoS 1 (at most 1,000 in flight), at ``rate``
    messages/s or as fast as possible, with a progress line; return how many the broker
    acknowledged."""
    acked = [0]
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"pmp-sim-{time.time_ns()}", protocol=paho.MQTTv5)
    client.on_publish = lambda *_: acked.__setitem__(0, acked[0] + 1)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(10_000)
    client.connect(*address)
    client.loop_start()
    sent, started = 0, time.monotonic()
    try:
        for topic, payload in fleet.messages():
            if rate:
                time.sleep(max(0.0, started + sent / rate - time.monotonic()))
            while client.publish(topic, payload, qos=1).rc == paho.MQTT_ERR_QUEUE_SIZE:
                time.sleep(0.001)
            sent += 1
            if sent % 500 == 0:
                print(f"\rpmpgw simulate: {sent:,} messages published", end="", file=sys.stderr, flush=True)
        deadline = time.monotonic() + timeout_s
        while acked[0] < sent and time.monotonic() < deadline:
            time.sleep(0.02)
    finally:
        client.loop_stop()
        client.disconnect()
    print(f"\rpmpgw simulate: {sent:,} messages published, {acked[0]:,} acknowledged by the broker", file=sys.stderr)
    return acked[0]
