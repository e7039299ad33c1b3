"""``pmpgw quarantine``: readings not stored as clinical data, with their reason; replay them.

    pmpgw quarantine [--reason R] [--device D] [--pending] [--json] [--limit N]
    pmpgw quarantine replay [--device D] [--reason R] [--shift DURATION] [--by STAFF] [--wait S] [--json]
    pmpgw quarantine replays [--json] [--limit N]

``replay`` re-ingests quarantined readings through the gateway's own path (``gateway.replay``):
itself when no gateway runs on the database, else by a request the running gateway's writer
executes (the command waits for its result). ``replays`` lists past replays from the audit
trail. Errors print ``pmpgw: REASON: message`` and exit 2.

The replay machinery (``gateway.replay``: the core's kernels, adapters, trio) is imported by
the handlers that use it, so that listing the quarantine does not wait for it.
"""

from __future__ import annotations

import argparse
import sys
import time
from typing import TYPE_CHECKING

from .cli_common import DEFAULT_DB, add_query_parser, print_json, print_table
from .clock import format_ms, now_ms
from .store import Store
from .store.store import CLI_ACTOR, REASON_DETAILS

if TYPE_CHECKING:
    from .replay import ReplaySpec

REASONS = tuple(reason.name for reason in REASON_DETAILS)
LIST_COLUMNS = ["id", "device", "reason", "type", "seq", "measured", "received", "replayed", "detail"]
REPLAYS_COLUMNS = ["at", "actor", "device", "reason", "shift_ms", "state", "rows", "stored", "duplicate", "still"]
WAIT_POLL_S = 0.2  # how often the command looks whether the gateway ran its request


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``quarantine``, ``quarantine replay`` and ``quarantine replays`` to ``pmpgw``."""
    quarantine = add_query_parser(commands, "quarantine", _list, "readings not stored, with their reason; replay them")
    quarantine.add_argument("--reason", choices=REASONS, help="only rows of this reason (default: every reason)")
    quarantine.add_argument("--device", help="only this device's rows (default: every device)")
    quarantine.add_argument("--pending", action="store_true",
                            help="only rows not replayed yet (default: every row; a replayed one shows when)")
    actions = quarantine.add_subparsers(dest="action", metavar="ACTION")

    run = actions.add_parser("replay", help="re-ingest quarantined readings (e.g. UNBOUND ones after `bind`)",
                             description=(
        "Re-ingest quarantined readings through the gateway's own path (validate, bind, dedup, windows, "
        "rules; one commit per chunk): a reading already stored (a re-send) is not stored again, and "
        "replaying twice stores nothing twice. A replayed reading that is stored is marked replayed; one "
        "that still cannot be stored stays in quarantine with the reason found now. Readings measured more "
        "than 24 h before the replay are late. If a gateway runs on the database, it runs the replay (and "
        "publishes the alerts it raises) while this command waits; otherwise this command runs it and the "
        "alerts are stored, not published. Every replay is recorded in the audit trail."))
    # Options given before the action (``pmpgw quarantine --device D replay``) count too.
    run.add_argument("--device", default=argparse.SUPPRESS, help="only this device's rows (default: every device)")
    run.add_argument("--reason", choices=REASONS, default=argparse.SUPPRESS,
                     help="only rows of this reason, e.g. UNBOUND (default: every reason)")
    run.add_argument("--shift", type=_shift, default=0, metavar="DURATION",
                     help="time correction added to the rows' measurement times, for a meter whose clock was "
                          "reset: +3d, 90m, 30s or ms, a negative one as --shift=-2h (default 0); needs "
                          "--device and --reason")
    run.add_argument("--by", default=CLI_ACTOR, metavar="STAFF",
                     help=f"who asks for it, a registered staff id, named in the audit trail (default {CLI_ACTOR})")
    run.add_argument("--wait", type=float, default=60.0, metavar="S",
                     help="when a gateway runs the replay: how long to wait for its result, seconds (default 60)")
    run.set_defaults(handler=_replay)

    history = actions.add_parser("replays", help="past replays, newest first (from the audit trail)")
    history.add_argument("--limit", type=int, default=100, help="at most this many replays (default 100)")
    history.set_defaults(handler=_replays)
    for action in (run, history):
        action.add_argument("--json", action="store_true", default=argparse.SUPPRESS,
                            help="one JSON document instead of text")
        action.add_argument("--db", default=argparse.SUPPRESS, help=f"SQLite database (default: $PMP_DB, else "
                                                                    f"{DEFAULT_DB}); its folder is the data directory")


def _shift(text: str) -> int:
    from .replay import parse_shift

    try:
        return parse_shift(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def _list(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        rows = store.quarantine(device=args.device, reason=args.reason, pending=args.pending, limit=args.limit)
    if args.json:
        print_json([{k: r[k] for k in ("id", "device", "reason", "detail", "type", "seq", "t", "rx", "element",
                                       "replayed", "topic")} for r in rows])
    else:
        print_table([{**r, "measured": _time(r["t"]), "received": _time(r["rx"]), "replayed": _time(r["replayed"])}
                     for r in rows], LIST_COLUMNS)
    return 0


def _time(ms: int | None) -> str | None:
    return None if ms is None else format_ms(ms)


def _replay(args: argparse.Namespace) -> int:
    from . import replay
    from .ingest import Ingest

    spec = replay.ReplaySpec(device=args.device, reason=args.reason, shift_ms=args.shift, actor=args.by)
    if spec.shift_ms and (spec.device is None or spec.reason is None):
        print("pmpgw: INVALID: --shift corrects one meter's clock: give --device and --reason (e.g. STALE) too",
              file=sys.stderr)
        return 2
    with replay.writer_lock(args.db, replay.REPLAY_HOLDER) as holder, Store.open(args.db) as store:
        if holder is None:
            ingest = Ingest(store, shared=store.window_sums_seeded())  # a database gateways shared: its sums too
            result = {**replay.run(store, ingest, spec, now_ms, _progress), "run_by": "cli"}
            print(file=sys.stderr)
        elif not holder.startswith(replay.GATEWAY_HOLDER):
            print(f"pmpgw: LOCKED: {holder} writes to this database; try again when it has ended", file=sys.stderr)
            return 2
        else:
            result = _by_gateway(store, spec, holder, args.wait)
            if result is None:
                return 2
    if args.json:
        print_json(result)
        return 0
    by_gateway = result["run_by"] == "gateway"
    still = ", ".join(f"{name} {n:,}" for name, n in result["still"].items()) or "none"
    print(f"replayed {result['rows']:,} quarantined rows{' (by the running gateway)' if by_gateway else ''}: "
          f"stored {result['stored']:,}, already stored {result['duplicate']:,}, still quarantined: {still}; "
          f"element not found: {result['unmatched']:,}")
    published = "published" if by_gateway else "stored, not published: no gateway runs"
    print(f"alerts raised: {result['alerts']:,} ({published}); audit entry {result['audit']}")
    return 0


def _progress(result: dict) -> None:
    print(f"\rpmpgw quarantine replay: {result['rows']:,} rows, {result['stored']:,} stored", end="",
          file=sys.stderr, flush=True)


def _by_gateway(store: Store, spec: ReplaySpec, holder: str, wait_s: float) -> dict | None:
    """Queue the replay for the running gateway and wait up to ``wait_s`` for its result
    (None, with the reason on stderr, if it does not come)."""
    request = store.request_replay(actor=spec.actor, device=spec.device, reason=spec.reason, shift_ms=spec.shift_ms,
                                   now_ms=now_ms())
    started = time.monotonic()
    while (elapsed := time.monotonic() - started) < wait_s:
        done = store.replay_request(request)
        if done["result"] is not None:
            print(file=sys.stderr)
            return {**done["result"], "run_by": "gateway", "request": request}
        print(f"\rpmpgw: {holder} writes to this database: replay request {request} queued for it, waiting "
              f"{elapsed:.0f} of {wait_s:.0f} s", end="", file=sys.stderr, flush=True)
        time.sleep(WAIT_POLL_S)
    print(f"\npmpgw: TIMEOUT: the gateway has not finished replay request {request} within {wait_s:.0f} s; it "
          "stays queued and runs when the gateway gets to it (see `pmpgw quarantine replays`)", file=sys.stderr)
    return None


def _replays(args: argparse.Namespace) -> int:
    from .replay import AUDIT_ACTION

    with Store.open(args.db) as store:
        rows = store.audit(action=AUDIT_ACTION, limit=args.limit)
    if args.json:
        print_json(rows)
        return 0
    print_table([{**row["detail"], "at": format_ms(row["at"]), "actor": row["actor"],
                  "still": ", ".join(f"{k} {n}" for k, n in row["detail"].get("still", {}).items()) or None}
                 for row in rows], REPLAYS_COLUMNS)
    return 0
