"""``pmpgw simulate``: a simulated fleet, registered and publishing to the gateway's broker.

The fleet's devices and hubs get broker accounts like any (``Store.issue_credentials``);
their passwords, shown once by the registry, are kept for the next run in
DATA_DIR/simulator/credentials.json (owner-only).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys
import time

from . import broker_accounts
from .cli_common import add_db_option, broker_address_file, data_dir, parse_address, print_json, write_private
from .sim_devices import own_topic, publish_fleet
from .simfleet import DAY_MS, SimulatedFleet
from .store import RegistryError, Store


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``simulate`` to ``pmpgw``."""
    sim = commands.add_parser("simulate", help="publish a simulated fleet's readings", description=(
        "Register a simulated fleet (patients, tonometers, glucometers, hubs with BLE meters) in the "
        "database, give its devices and hubs broker accounts, and publish its readings of the last DAYS days "
        "as fast as the broker takes them: each device and hub on its own MQTT 5 connection, as itself, "
        "waiting for the gateway's ack of what it sent. Prints what the broker and the gateway said (JSON)."))
    sim.add_argument("--broker", type=parse_address,
                     help="broker HOST:PORT (default: the running gateway's private one)")
    sim.add_argument("--patients", type=int, default=200, help="patients in the fleet (default 200)")
    sim.add_argument("--days", type=float, default=1.0, help="days of history to publish (default 1)")
    sim.add_argument("--seed", type=int, default=1, help="random seed (default 1)")
    sim.add_argument("--rate", type=float, default=None,
                     help="messages per second (default: as fast as the broker takes them)")
    sim.add_argument("--connections", type=int, default=8, help="devices connected at a time (default 8)")
    add_db_option(sim)
    sim.set_defaults(handler=_simulate)


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
        passwords = _credentials(store, fleet, data_dir(args.db) / "simulator" / "credentials.json")

    def progress(sent: int) -> None:
        if sent % 500 == 0:
            print(f"\rpmpgw simulate: {sent:,} messages published", end="", file=sys.stderr, flush=True)

    outcome = publish_fleet(address, own_topic(fleet.messages()), passwords, rate=args.rate, workers=args.connections,
                            progress=progress)
    print(f"\rpmpgw simulate: {outcome.published:,} messages accepted by the broker, {outcome.denied:,} refused "
          f"(not authorized); {outcome.gateway_acked:,} devices and hubs acked by the gateway", file=sys.stderr)
    print_json({"published": outcome.published, "denied": outcome.denied, "failed": outcome.failed,
                "refused_connections": outcome.refused, "gateway_acked": outcome.gateway_acked,
                "ack_pending": outcome.ack_pending, "no_ack_expected": outcome.no_ack_expected,
                "fleet": vars(fleet.counts), "patients": args.patients, "days": args.days})
    return 0 if not outcome.refused else 1


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


def _credentials(store: Store, fleet: SimulatedFleet, path: pathlib.Path) -> dict[str, str]:
    """Passwords of the fleet's devices and hubs: kept from an earlier run, or issued now
    (and kept) for those without."""
    known = json.loads(path.read_text()) if path.exists() else {}
    issued = store.issue_credentials([device for device, kind in fleet.registry()[1]
                                      if broker_accounts.connects(device, kind) and device not in known],
                                     actor="simulate")
    if issued:
        write_private(path, json.dumps({**known, **issued}))
    return {**known, **issued}
