"""``pmpgw``: the operators' command line.

Each command is added by the module that runs it (its ``register``), and only the module of
the command given is imported: ``run`` pulls in trio, paho and the numba core, which
``status`` or a listing must not wait for. When the first argument is not a command
(``pmpgw --help``, a typo), every module is imported, to list or name all commands.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from .store import StoreError

# Command -> the module that adds it; the modules in the order ``pmpgw --help`` lists them.
COMMANDS: dict[str, str] = {
    "run": "gateway.run_cli",
    "simulate": "gateway.simulate_cli",
    "bind": "gateway.registry_cli",
    "unbind": "gateway.registry_cli",
    "readings": "gateway.registry_cli",
    "patients": "gateway.registry_cli",
    "staff": "gateway.registry_cli",
    "devices": "gateway.registry_cli",
    "alerts": "gateway.alerts_cli",
    "quarantine": "gateway.quarantine_cli",
    "status": "gateway.status_cli",
    "gatt": "gateway.gatt_cli",
    "report": "gateway.report_cli",
    "broker-files": "gateway.broker_cli",
    "dashboards": "gateway.dashboards_cli",
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``pmpgw`` parser: with the commands of ``command``'s module, or with every command
    when ``command`` is None or not one."""
    parser = argparse.ArgumentParser(
        prog="pmpgw",
        description="pmp-gateway: telemetry gateway for home blood-pressure and glucose monitors.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    modules = [COMMANDS[command]] if command in COMMANDS else dict.fromkeys(COMMANDS.values())
    for module in modules:
        importlib.import_module(module).register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    parser = build_parser(argv[0] if argv else None)
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    try:
        return args.handler(args)
    except StoreError as error:  # a RegistryError (bad input) too; nothing of the command was written
        print(f"pmpgw: {error.reason}: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
