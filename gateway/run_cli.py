"""``pmpgw run``: the gateway service, with its private Mosquitto unless given a broker."""

from __future__ import annotations

import argparse
import functools
import logging
import pathlib
import signal
import sys

import trio

from adapters.mqtt import LinkSettings, MqttLink
from adapters.topics import SUBSCRIPTIONS, shared
from core.dedup_keys import MAX_CAPACITY, check_max_capacity

from . import broker_accounts
from .broker import PrivateBroker, TlsListener
from .cli_common import (add_db_option, broker_address_file, data_dir, monitor_password_file, parse_address,
                         print_json, write_private)
from .replay import GATEWAY_HOLDER, writer_lock
from .service import Gateway, ServiceSettings
from .store import Store, StoreError

log = logging.getLogger("pmpgw")

ACCOUNTS_POLL_S = 0.2  # how soon an account issued or revoked reaches the private broker (a kv row read)


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``run`` to ``pmpgw``."""
    run = commands.add_parser("run", help="run the gateway", description=(
        "Run the gateway: subscribe to devices' readings and hubs' GATT records, store each reading once, "
        "ack after commit, publish alerts. Without --broker it starts its own Mosquitto on 127.0.0.1 "
        "(address written to DATA_DIR/broker/address) that admits only accounts: each device and hub its "
        "own (pmpgw devices add / devices credentials), the gateway its own (a new password every start); "
        "accounts issued or revoked (pmpgw devices retire) reach it within a second. On an SQLite database "
        "it holds the writer lock while it runs (DB.writer.lock in DATA_DIR: one gateway per file; it "
        "runs the quarantine replays asked for meanwhile); a PostgreSQL database has no such lock. Ctrl-C or SIGTERM drains and exits 0."))
    run.add_argument("--broker", type=parse_address, help="external broker HOST:PORT (default: a private one)")
    run.add_argument("--gw-id", default="gw1",
                     help="gateway id: its MQTT user name and client id are pmpgw-ID (default gw1)")
    run.add_argument("--mqtt-password-file", type=pathlib.Path, default=None,
                     help="with --broker: a file holding the gateway's broker password (user name pmpgw-ID; "
                          "pmpgw broker-files writes it); without it the gateway connects anonymously")
    run.add_argument("--tls", nargs=2, metavar=("CERT", "KEY"), type=pathlib.Path, default=None,
                     help="the private broker also listens with TLS, with this PEM certificate (chain) and key")
    run.add_argument("--tls-listen", type=parse_address, default=("0.0.0.0", 8883),
                     help="HOST:PORT of the TLS listener (default 0.0.0.0:8883)")
    run.add_argument("--shared", action="store_true",
                     help="one of several gateways on one broker and one PostgreSQL store: subscribe as a member of "
                          "the shared subscription group $share/pmpgw/ (MQTT 5), each message to one gateway; give "
                          "each its own --gw-id. The window rules then add up each patient's daily sums in the "
                          "store (gateway.shared_windows)")
    run.add_argument("--for", dest="for_s", type=float, default=None, help="drain and stop after this many seconds")
    run.add_argument("--dedup-slots", type=_slots, default=MAX_CAPACITY, metavar="N",
                     help=f"bound of the dedup table in memory, slots of 32 bytes, a power of two (default "
                          f"{MAX_CAPACITY:,} = 256 MiB): past it the oldest keys are evicted and looked up in the "
                          "database when needed")
    add_db_option(run)
    run.set_defaults(handler=_run)


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
    if args.broker is not None and args.tls is not None:
        print("pmpgw: INVALID: --tls sets up the private broker's listener; with --broker, set up TLS in "
              "that broker's configuration", file=sys.stderr)
        return 2
    username = broker_accounts.gateway_username(args.gw_id)
    with Store.open(args.db) as store:
        if args.broker is None:
            account, password = broker_accounts.new_account(username, "gateway")
            monitor, monitor_password = broker_accounts.new_account(broker_accounts.MONITOR_USERNAME, "monitor")
            own = [account, monitor]
            tls = None if args.tls is None else TlsListener(*args.tls_listen, *args.tls)
            devices = store.broker_accounts()
            broker = PrivateBroker.start(data_dir(args.db) / "broker", accounts=[*own, *devices], tls=tls)
            write_private(monitor_password_file(args.db), monitor_password + "\n")
            broker_address_file(args.db).write_text(f"127.0.0.1:{broker.port}\n")
            host, port = broker.address
            tls_note = "" if tls is None else f", TLS on {tls.host}:{tls.port}"
            print(f"pmpgw: private broker 127.0.0.1:{port}{tls_note}, {len(devices)} device and hub accounts",
                  file=sys.stderr, flush=True)
        else:
            broker, own = None, []
            (host, port), password = args.broker, _password_of(args.mqtt_password_file)
        print(f"pmpgw: broker {host}:{port}, database {args.db}, gateway {args.gw_id}", file=sys.stderr, flush=True)
        try:
            link = MqttLink(LinkSettings(host=host, port=port, client_id=username,
                                         state_topic=f"pmp/v1/gateway/{args.gw_id}/state",
                                         subscriptions=shared(SUBSCRIPTIONS) if args.shared else SUBSCRIPTIONS,
                                         username=username if password is not None else None, password=password))
            gateway = Gateway(store, link, ServiceSettings(gw_id=args.gw_id, dedup_max_capacity=args.dedup_slots,
                                                            shared=args.shared))
            keep_accounts = None if broker is None else functools.partial(_keep_accounts, args.db, broker, own)
            trio.run(_serve, gateway, args.for_s, keep_accounts)
            print_json(gateway.stats("down"))
        finally:
            if broker is not None:
                broker.stop()
                broker_address_file(args.db).unlink(missing_ok=True)
                monitor_password_file(args.db).unlink(missing_ok=True)
    return 0


def _password_of(path: pathlib.Path | None) -> str | None:
    """The password in ``path`` (first line), or None for no file."""
    return None if path is None else path.read_text().splitlines()[0].strip()


async def _keep_accounts(db: str, broker: PrivateBroker, own: list[broker_accounts.Account]) -> None:
    """Give the private broker every account issued or revoked in the registry, within
    ACCOUNTS_POLL_S; its own read connection, so the writer is never held up. A store that
    refuses (locked, full) is asked again at the next poll."""
    with Store.open(db) as store:
        version = store.broker_accounts_version()
        while True:
            await trio.sleep(ACCOUNTS_POLL_S)
            try:
                current = await trio.to_thread.run_sync(store.broker_accounts_version)
                if current == version:
                    continue
                accounts = await trio.to_thread.run_sync(store.broker_accounts)
            except StoreError as error:
                log.error("broker accounts not refreshed: %s", error)
                continue
            await trio.to_thread.run_sync(broker.set_accounts, [*own, *accounts])
            version = current
            log.info("broker accounts reloaded: %d devices and hubs", len(accounts))


async def _serve(gateway: Gateway, for_s: float | None, keep_accounts) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_drain_on_signal, gateway)
        if for_s is not None:
            nursery.start_soon(_drain_after, gateway, for_s)
        if keep_accounts is not None:
            nursery.start_soon(keep_accounts)
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
