"""``pmpgw``: the operators' command line."""

from __future__ import annotations

import argparse
import sys

from . import alerts_cli, gatt_cli, quarantine_cli, registry_cli, run_cli, status_cli
from . import report_cli
from .store import StoreError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="pmpgw",
        description="pmp-gateway: telemetry gateway for home blood-pressure and glucose monitors.",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    run_cli.register(commands)
    registry_cli.register(commands)
    alerts_cli.register(commands)
    quarantine_cli.register(commands)
    status_cli.register(commands)
    gatt_cli.register(commands)
    report_cli.register(commands)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
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
