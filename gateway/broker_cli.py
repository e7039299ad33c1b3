"""``pmpgw broker-files``: the accounts and settings for an external Mosquitto.

The private broker of ``pmpgw run`` gets them by itself. An operator running Mosquitto
elsewhere writes them with this command into a folder that broker reads, after each
registry change that issues or revokes accounts (``devices add``, ``devices credentials``,
``devices retire``), then signals it to reload (``kill -HUP``).
"""

from __future__ import annotations

import argparse
import pathlib

from . import broker_accounts
from .broker import external_config_text, write_account_files
from .cli_common import add_db_option, write_private
from .store import Store


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``broker-files`` to ``pmpgw``."""
    files = commands.add_parser(
        "broker-files", help="write the password file, ACL and settings for an external Mosquitto",
        description="Write into DIR: passwd (every device and hub account in service, the gateways' and the "
                    "status monitor's, hashed as mosquitto_passwd does), acl (each account its own topics), "
                    "mosquitto.conf (the sized settings and the lines that use the two files: include it, and "
                    "put use_username_as_clientid true under every listener), and the passwords of the gateways "
                    "(pmpgw-ID.password, made once and kept; give it to pmpgw run --mqtt-password-file) and of "
                    "pmpgw-monitor. Run it again after accounts are issued or revoked, then make Mosquitto reload "
                    "(kill -HUP).")
    files.add_argument("dir", type=pathlib.Path, help="the folder the broker reads (created if missing)")
    files.add_argument("--gw-id", action="append", default=None,
                       help="a gateway that connects to the broker (repeat for several; default gw1)")
    add_db_option(files)
    files.set_defaults(handler=_broker_files)


def _broker_files(args: argparse.Namespace) -> int:
    folder = args.dir.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    own = [(broker_accounts.gateway_username(gw), "gateway") for gw in args.gw_id or ["gw1"]]
    own.append((broker_accounts.MONITOR_USERNAME, "monitor"))
    accounts = [broker_accounts.Account(name, role, broker_accounts.hash_password(_kept_password(folder, name)))
                for name, role in own]
    with Store.open(args.db) as store:
        devices = store.broker_accounts()
    write_account_files(folder, [*accounts, *devices])
    (folder / "mosquitto.conf").write_text(external_config_text(folder))
    print(f"wrote {folder}: passwd and acl ({len(devices)} device and hub accounts, "
          f"{', '.join(name for name, _ in own)}), mosquitto.conf; then: kill -HUP <mosquitto pid>")
    return 0


def _kept_password(folder: pathlib.Path, username: str) -> str:
    """The password in ``folder/username.password``, made (random) the first time."""
    path = folder / f"{username}.password"
    if not path.exists():
        write_private(path, broker_accounts.new_password() + "\n")
    return path.read_text().strip()
