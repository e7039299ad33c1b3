"""``pmpgw gatt decode``: show what one GATT characteristic value says, before validation.

Prints one JSON object on stdout: ``{"ok": true, "readings": [...]}`` (exit 0), or
``{"ok": false, "reason": CODE, "detail": "..."}`` (exit 2) where CODE is a reason code of
DESIGN.md (DECODE, SCHEMA). Readings are in canonical units; see ``core.gatt_view``.
"""

from __future__ import annotations

import argparse
import json
import string

import core
from core import gatt, gatt_view
from core.codes import GATT_ERRORS, UUID_KIND, GattError, Reason
from core.reference import gatt as reference_gatt

INT16 = (-(2**15), 2**15 - 1)
INT64 = (-(2**63), 2**63 - 1)
HEX_SEPARATORS = " :-"

EPILOG = """\
characteristics: 0x2A35 blood pressure measurement, 0x2A18 glucose measurement,
0x2A34 glucose measurement context, 0x2AA7 CGM measurement (one or more records).

example:
  pmpgw gatt decode --uuid 0x2A35 --hex 1e790050005d00e407030f081e00480002010000 --tz 180

exit status: 0 decoded, 2 not decoded (the JSON says why).
"""


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``gatt decode`` to the ``pmpgw`` sub-commands."""
    gatt_parser = commands.add_parser(
        "gatt",
        help="Bluetooth GATT characteristic tools",
        description="Tools for the GATT records hubs publish on pmp/v1/hub/{hub_id}/gatt.",
    )
    gatt_commands = gatt_parser.add_subparsers(dest="gatt_command", metavar="GATT_COMMAND", required=True)
    decode = gatt_commands.add_parser(
        "decode",
        help="decode one characteristic value to JSON",
        description="Decode one GATT characteristic value as the gateway would and print it as\n"
        "JSON (values in mmHg, mmol/L, beats/min, ms UTC; absent values are null).",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    decode.add_argument("--uuid", required=True, metavar="UUID",
                        help="16-bit characteristic UUID in hex, e.g. 0x2A35 or 2A35")
    decode.add_argument("--hex", required=True, metavar="HEX",
                        help="the characteristic value as received, in hex (spaces, ':' and '-' allowed)")
    decode.add_argument("--tz", type=int, default=0, metavar="MIN",
                        help="the meter's local clock minus UTC, in minutes (default 0)")
    decode.add_argument("--cgm-start", type=int, default=None, metavar="MS",
                        help="CGM session start, ms since epoch UTC (0x2AA7 times count from it)")
    decode.set_defaults(handler=decode_command)


def parse_uuid(text: str) -> int:
    """``0x2A35`` or ``2A35`` (always hex, as Bluetooth writes them) -> 0x2A35; ValueError
    unless 0..0xFFFF."""
    digits = text.strip().lower().removeprefix("0x")
    if not digits or any(ch not in string.hexdigits for ch in digits):
        raise ValueError(text)
    uuid = int(digits, 16)
    if uuid > 0xFFFF:
        raise ValueError(text)
    return uuid


def parse_hex(text: str) -> bytes:
    """Hex digits, optionally separated by spaces, ':' or '-'; ValueError otherwise."""
    digits = "".join(ch for ch in text if ch not in HEX_SEPARATORS)
    if len(digits) % 2 or any(ch not in string.hexdigits for ch in digits):
        raise ValueError(text)
    return bytes.fromhex(digits)


def _fail(reason: Reason, detail: str) -> int:
    print(json.dumps({"ok": False, "reason": reason.name, "detail": detail}))
    return 2


def decode_command(args: argparse.Namespace) -> int:
    try:
        uuid = parse_uuid(args.uuid)
    except ValueError:
        return _fail(Reason.SCHEMA, f"--uuid is not a 16-bit characteristic UUID: {args.uuid!r}")
    try:
        value = parse_hex(args.hex)
    except ValueError:
        return _fail(Reason.DECODE, f"--hex is not a whole number of hex octets: {args.hex!r}")
    if not INT16[0] <= args.tz <= INT16[1]:
        return _fail(Reason.SCHEMA, f"--tz must fit int16 minutes: {args.tz}")
    if args.cgm_start is not None and not INT64[0] <= args.cgm_start <= INT64[1]:
        return _fail(Reason.SCHEMA, f"--cgm-start must fit int64 ms: {args.cgm_start}")
    decoder = reference_gatt if core.PUREPYTHON else gatt
    records, error = decoder.decode(uuid, value, tz_min=args.tz, cgm_start=args.cgm_start)
    if error != GattError.OK:
        reason, text = GATT_ERRORS[error]
        what = "characteristic" if uuid not in UUID_KIND else "value"
        return _fail(reason, f"{text}: uuid 0x{uuid:04X}, {what} {value.hex()!r}")
    print(json.dumps({"ok": True, "readings": [gatt_view.record_to_dict(r) for r in records]}))
    return 0
