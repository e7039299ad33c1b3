"""``pmpgw status``: is the gateway healthy? A live terminal view, or the stats JSON.

    pmpgw status [--once] [--interval S]    the view, redrawn every S seconds until Ctrl-C
    pmpgw status --json                     the stats JSON of DESIGN.md, once
    pmpgw status --broker HOST:PORT ...     a gateway run with --broker: its live stats from there

Counters, open alerts, silent devices, the database size and the free bytes on its disk
come from the database (so status works with the gateway stopped, and costs no scan:
counters are ``kv`` rows, alerts come from their index); ingest rate, batch latency, queue
depth, the flooding publishers and the store's health (``store_error``, ``store_fault``:
why the store refuses writes, e.g. DISK_FULL) from the running gateways' retained stats on
the private broker (or ``--broker``), else the last stats each saved in the database. Those
cannot be saved while the disk is full: the retained stats can, and ``disk_free_bytes`` is
read here. Whether a gateway is up is its retained state topic (``online``, or ``offline``
from its Last Will when it died).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import pathlib
import sys
import time

from .alerts_cli import format_age
from .broker_accounts import MONITOR_USERNAME
from .cli_common import add_db_option, broker_address_file, monitor_password_file, parse_address, print_json
from .clock import format_ms, now_ms
from .store import Store
from .store.store import LOW_DISK_BYTES

# The stats JSON of DESIGN.md for a database no gateway has reported on yet.
NO_GATEWAY_STATS = {"gw": None, "state": "down", "up_s": 0.0, "rate_1m": 0.0, "batch": {"p50_ms": None, "p99_ms": None},
                    "queue_depth": 0, "flooding": []}
GATEWAY_TOPICS = "pmp/v1/gateway/+/+"  # .../{gw}/state (online|offline) and .../{gw}/stats, both retained
PROBE_TIMEOUT_S = 0.25  # longest wait for the private broker's retained messages (loopback: a few ms)
CLEAR_SCREEN = "\x1b[H\x1b[2J"


def register(commands: argparse._SubParsersAction) -> None:
    """Add ``status`` to ``pmpgw``."""
    status = commands.add_parser("status", help="gateway health: live view, or the stats JSON", description=(
        "Gateway up/down, ingest rate, batch latency, queue depth, rejects by reason, open alerts by severity "
        "with the age of the oldest, silent devices, flooding devices and database size, redrawn until Ctrl-C. Works with the "
        "gateway stopped (its last saved stats)."))
    status.add_argument("--once", action="store_true", help="print the view once and exit (default: redraw)")
    status.add_argument("--interval", type=float, default=2.0, metavar="S",
                        help="seconds between redraws (default 2)")
    status.add_argument("--broker", type=parse_address, metavar="HOST:PORT",
                        help="read the gateways' live stats from this broker (a gateway run with --broker; "
                             "default: the private broker of a gateway running on --db)")
    status.add_argument("--mqtt-password-file", type=pathlib.Path, default=None, metavar="FILE",
                        help="with --broker: the password of pmpgw-monitor on that broker (pmpgw broker-files writes "
                             "it; default: the private broker's, in the data directory)")
    status.add_argument("--json", action="store_true",
                        help="print the stats JSON once (DESIGN.md shape, plus gateways, alerts_oldest, "
                             "silent_devices, flooding) and exit")
    status.set_defaults(handler=_status)
    add_db_option(status)


def _status(args: argparse.Namespace) -> int:
    with Store.open(args.db) as store:
        if args.json or args.once:
            stats = collect(store, args.db, args.broker, args.mqtt_password_file)
            print_json(stats) if args.json else print(render(stats, args.db, now_ms()))
            return 0
        try:
            while True:
                view = render(collect(store, args.db, args.broker, args.mqtt_password_file), args.db, now_ms())
                sys.stdout.write(f"{CLEAR_SCREEN}{view}\n(every {args.interval:g} s; Ctrl-C to stop)\n")
                sys.stdout.flush()
                time.sleep(args.interval)
        except KeyboardInterrupt:
            return 0


def collect(store: Store, db: str, broker: tuple[str, int] | None = None,
            password_file: pathlib.Path | None = None) -> dict:
    """The stats JSON of DESIGN.md: readings, open alerts, silent devices, size and the free
    bytes on the database's disk (``disk_free_bytes``) from the database; the rest from the
    first gateway of ``gateways`` (each gateway's own stats: live from ``broker`` or the
    private broker, else as it saved them, with ``state`` up or down), up ones first.
    ``alerts_oldest``: severity -> raised (ms UTC) of the oldest not-resolved alert;
    ``flooding``: the first gateway's flooding publishers (none when it is down)."""
    saved = {stats["gw"]: stats for stats in store.gateway_stats()}
    live = live_gateways(db, expected=set(saved), address=broker, password_file=password_file)
    gateways = []
    for gw in list(live) + [gw for gw in saved if gw not in live]:
        state, live_stats = live.get(gw, (None, None))
        up = state == "online" if state is not None else (live_stats or {}).get("state") == "up"
        sources = (live_stats, saved.get(gw)) if up else (saved.get(gw), live_stats)
        stats = next((source for source in sources if source), {**NO_GATEWAY_STATS, "gw": gw})
        gateways.append({**stats, "state": "up"} if up else {**stats, "state": "down", "rate_1m": 0.0,
                                                               "queue_depth": 0, "flooding": []})
    gateways.sort(key=lambda g: g["state"] != "up")
    alerts = store.open_alerts_summary()
    from_store = {"readings": store.counters(), "alerts_open": {s: a["n"] for s, a in alerts.items()},
                  "alerts_oldest": {s: a["oldest"] for s, a in alerts.items()},
                  "silent_devices": store.silent_devices(), "db_bytes": store.db_bytes(),
                  "disk_free_bytes": store.disk_free_bytes()}
    return {**NO_GATEWAY_STATS, **(gateways[0] if gateways else {}), **from_store, "gateways": gateways}


def live_gateways(db: str, expected: set[str] = frozenset(), timeout_s: float = PROBE_TIMEOUT_S,
                  address: tuple[str, int] | None = None, password_file: pathlib.Path | None = None
                  ) -> dict[str, tuple[str | None, dict | None]]:
    """gw id -> (state topic text, stats JSON) retained on the broker at ``address``, by
    default the running private broker of ``db`` (empty when it is down).

    Subscribes and at once unsubscribes: the broker sends the retained messages right after
    the SUBACK and before the UNSUBACK, so the UNSUBACK says all have come. It is done
    sooner when both messages of every ``expected`` gateway came: Mosquitto (without
    ``set_tcp_nodelay``) holds the UNSUBACK back about 40 ms, for the delayed ACK of the
    client's TCP. ``timeout_s`` bounds the wait. paho is imported only when a broker address
    is given or on file: ``status`` on a stopped gateway's database does not wait for it.
    """
    try:
        host, port = address or parse_address(broker_address_file(db).read_text().strip())
    except (FileNotFoundError, argparse.ArgumentTypeError):
        return {}
    import paho.mqtt.client as paho

    got: dict[str, dict] = {}
    done = []
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=MONITOR_USERNAME, protocol=paho.MQTTv5)
    with contextlib.suppress(FileNotFoundError):  # no file: a broker that takes anonymous clients
        client.username_pw_set(MONITOR_USERNAME, (password_file or monitor_password_file(db)).read_text().strip())
    client.on_connect = lambda c, userdata, flags, code, properties: c.subscribe(GATEWAY_TOPICS, qos=0)
    client.on_subscribe = lambda c, userdata, mid, codes, properties: c.unsubscribe(GATEWAY_TOPICS)
    client.on_unsubscribe = lambda c, userdata, mid, codes, properties: done.append(True)
    client.on_message = lambda c, userdata, message: got.setdefault(message.topic.split("/")[3], {}).__setitem__(
        message.topic.split("/")[4], message.payload)
    try:
        client.connect(host, port)
    except OSError:
        return {}
    deadline = time.monotonic() + timeout_s
    while not done and time.monotonic() < deadline:
        client.loop(timeout=0.01)
        if expected and all(len(got.get(gw, ())) == 2 for gw in expected):
            break
    client.disconnect()
    return {gw: (parts["state"].decode() if "state" in parts else None,
                 json.loads(parts["stats"]) if "stats" in parts else None) for gw, parts in got.items()}


def render(stats: dict, db: str, now: int) -> str:
    """The status view of ``collect``'s stats at ``now`` (ms UTC), as lines of text."""
    readings = stats["readings"]
    rejects = {reason: n for reason, n in sorted(readings["quarantined"].items(), key=lambda kv: -kv[1]) if n}
    free = stats.get("disk_free_bytes")
    disk = "" if free is None else f"  disk free {_size(free)}" + ("  DISK FULL" if free < LOW_DISK_BYTES else "")
    lines = [f"pmp-gateway status  {format_ms(now)}  database {db}  {_size(stats['db_bytes'])}{disk}", ""]
    for gw in stats["gateways"] or [None]:
        lines.append(_gateway_line(gw, now))
    lines += [
        f"readings  received {readings['received']:,}  stored {readings['stored']:,}  "
        f"duplicate {readings['duplicate']:,}  quarantined {sum(rejects.values()):,}",
        "rejects   " + ("  ".join(f"{reason} {n:,}" for reason, n in rejects.items()) or "none"),
        "alerts    " + ("  ".join(f"{severity} {n:,} (oldest {format_age(now - stats['alerts_oldest'][severity])})"
                                  for severity, n in stats["alerts_open"].items()) or "none open"),
        f"devices   {stats['silent_devices']:,} silent",
        "flooding  " + ("  ".join(f"{f['device']} {f['msgs_per_s']:,} msg/s ({f['readings_per_s']:,} readings/s) "
                                  f"for {format_age(now - f['since'])}" for f in stats["flooding"]) or "none"),
    ]
    return "\n".join(lines)


def _gateway_line(gw: dict | None, now: int) -> str:
    if gw is None:
        return "gateway   none has run on this database"
    if gw["state"] != "up":
        saved = f", last stats saved {format_ms(gw['saved'])}" if gw.get("saved") else ""
        return f"gateway   {gw['gw']}  DOWN{saved}"
    batch = gw["batch"]
    latency = (f"batch p50 {batch['p50_ms']} ms  p99 {batch['p99_ms']} ms" if batch["p50_ms"] is not None
               else "no batch yet")
    error, fault = gw.get("store_error"), gw.get("store_fault")
    line = (f"gateway   {gw['gw']}  UP {format_age(int(gw['up_s'] * 1000))}  {gw['rate_1m']:,} readings/s "
            f"(last minute)  {latency}  queue {gw['queue_depth']:,}")
    if fault:
        return (f"{line}\n          STORE REFUSES WRITES for {format_age(int(fault['for_s'] * 1000))} "
                f"({fault['refusals']:,} refusals; {fault['held_messages']:,} messages held, not acked): "
                f"{fault['reason']}: {fault['message']}")
    return line + (f"  STORE ERROR {error}" if error else "")


def _size(n: int) -> str:
    """Bytes in B, kB, MB, GB (powers of 1,000)."""
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n} B"
