"""faults.flood: one device floods at 100 times its normal rate; do the other devices'
readings still reach the gateway's ack quickly, and is the offender (only it) reported?

faults.flood.p50, .p99   the other devices' readings: seconds from the device's publish to
                         the gateway's ack covering it (``pmp/v1/dev/{id}/ack``), p50 / p99
                         while one device floods; baseline: the same devices in the same run
                         before the flood (ratio 1 = the flood costs them nothing).
faults.flood.rate        the flooder's messages a second during the flood; baseline: one
                         normal device's rate (ratio: the multiplier achieved). The note
                         says whether the offender, and only it, was reported in the stats
                         JSON (``flooding``) and as a DEVICE task ``flood``, and that the
                         task was resolved after the flood.
faults.flood.max_rate.p99
                         the others' p99 in a second run where the flooder sends new
                         readings as fast as one client can (about the gateway's own
                         ingest ceiling on this machine); baseline: before that flood.
                         Where the total rate reaches the gateway's throughput, the bound
                         ends: this figure shows how far.

Every reading (the flooder's too) must be stored exactly once and acked (``bench.faults``
check): the run raises otherwise. The gateway is ``pmpgw run --broker`` as a process with
its default settings (flood limit 1 message/s over a minute, sweeps every minute), so the
full run floods until the DEVICE task is raised (one to two minutes) and waits for its
resolution; ``--quick`` floods 6 s (and 3 s at the top rate) and checks the stats only.

Machinery shared with tests/faults/test_flood.py (which runs the gateway in-process with a
short flood window): ``LatencyFleet`` (``bench.faults.DeviceFleet`` recording each
reading's publish -> ack latency, one device able to flood), ``InProcessGateway``,
``run_flood``.

What bounds the others' latency: the gateway takes messages in the broker's order (one
session, FIFO) in batches of at most 500 messages / 256 KiB, so while the total rate stays
below the gateway's throughput a reading waits for at most the batch being committed and
its own. Past the throughput nothing in Mosquitto 2.0 limits one client's publish rate, and
the session queue, FIFO, grows for everyone: see the README's Guarantees.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
import sys
import tempfile
import threading
import time

import numpy as np
import trio

from adapters.mqtt import LinkSettings, MqttLink
from bench._harness import Result
from bench.faults import CHUNK, HOST, PROJECT_DIR, Check, DeviceFleet, GatewayProcess, check_exactly_once, register
from gateway import status_cli
from gateway.cli_common import broker_address_file
from gateway.service import Gateway, ServiceSettings
from gateway.store import Store

FLOOD_MULTIPLIER = 100  # the flooder's rate, in normal devices' rates
POLL_S = 0.25  # how often the run looks at the stats and tasks


class LatencyFleet(DeviceFleet):
    """``DeviceFleet`` whose devices publish ``rate`` new messages a second each, and
    ``flooder`` ``multiplier`` times as many while ``flooding`` (with ``bulk``: instead,
    ``bulk`` new readings every tick, in messages of ``bench.faults.CHUNK``, and no re-sends
    while it floods: a flood of readings as fast as one client sends). Each device has its own
    connection (one client's queue never delays another's publish). Records, per reading,
    the time it was first published and the time the first ack covering it arrived
    (``samples``: (device, published, latency), monotonic seconds), and the messages each
    device published (``published``, re-sends and duplicates included)."""

    def __init__(self, port: int, devices: list[str], *, flooder: str, rate: float, tick_s: float = 0.05,
                 multiplier: int = FLOOD_MULTIPLIER, bulk: int = 0, seed: int = 1, **options) -> None:
        if not 0 < rate * tick_s <= 1:
            raise ValueError(f"rate {rate}/s needs 0 < rate * tick_s <= 1 (tick {tick_s} s)")
        self.flooder, self.multiplier, self.bulk, self.flooding = flooder, multiplier, bulk, False
        self.sent_at: dict[str, dict[int, float]] = {d: {} for d in devices}  # seq -> first publish, until acked
        self.samples: list[tuple[str, float, float]] = []
        self.published = dict.fromkeys(devices, 0)
        self.flood_messages = 0  # the flooder's messages while flooding
        self.flood_readings = 0  # ... and the new readings in them
        super().__init__(port, devices, seed=seed, connections=len(devices), tick_s=tick_s, p_new=rate * tick_s,
                         p_ack_missed=0.0, **options)

    def _tick(self, d, now: float, generating: bool) -> None:
        if not (self.flooding and d.id == self.flooder):
            super()._tick(d, now, generating)
        elif self.bulk:
            seqs = list(range(d.next_seq, d.next_seq + self.bulk))
            d.next_seq += self.bulk
            d.unacked.update(dict.fromkeys(seqs, now))
            self._send(d, seqs, "new")
        else:
            for _ in range(self.multiplier):
                super()._tick(d, now, generating)

    def reading(self, d, seq: int) -> dict:
        """As ``DeviceFleet.reading``; the flooder's readings 1 ms apart, so that no flood
        reaches into the future (FUTURE)."""
        out = super().reading(d, seq)
        if d.id == self.flooder:
            out["t"] = self.t0_ms + seq
        return out

    def _send(self, d, seqs: list[int], kind: str) -> None:
        published = time.monotonic()
        if kind in ("new", "inner_dup"):
            for s in seqs:
                self.sent_at[d.id].setdefault(s, published)
        before = self.counts[kind]
        super()._send(d, seqs, kind)
        sent = self.counts[kind] - before
        self.published[d.id] += sent
        if self.flooding and d.id == self.flooder:
            self.flood_messages += sent
            self.flood_readings += len(set(seqs)) if kind in ("new", "inner_dup") else 0

    def _on_ack(self, client, userdata, message) -> None:
        received = time.monotonic()
        device = message.topic.split("/")[3]
        seq = int(json.loads(message.payload)["seq"])
        with self.lock:
            pending = self.sent_at[device]
            for s in [s for s in pending if s <= seq]:
                self.samples.append((device, pending[s], received - pending.pop(s)))
        super()._on_ack(client, userdata, message)

    def set_flooding(self, on: bool) -> None:
        with self.lock:
            self.flooding = on

    def latencies(self, devices: set[str], since: float, until: float) -> np.ndarray:
        """Latencies (s) of the readings of ``devices`` first published in [since, until)."""
        with self.lock:
            return np.array([lat for d, at, lat in self.samples if d in devices and since <= at < until])


class InProcessGateway:
    """The gateway service in a thread of this process (its own ``trio.run``), with the
    ``ServiceSettings`` a test chooses (a short flood window, frequent sweeps); ``start``
    and ``stop`` (drain) as ``bench.faults.GatewayProcess``."""

    def __init__(self, port: int, db: pathlib.Path, settings: ServiceSettings) -> None:
        self.port, self.db, self.settings = port, db, settings
        self._thread: threading.Thread | None = None
        self._token: trio.lowlevel.TrioToken | None = None
        self._gateway: Gateway | None = None
        self._ready = threading.Event()
        self.error: BaseException | None = None

    def start(self) -> float:
        started = time.monotonic()
        self._thread = threading.Thread(target=self._main, name="gateway", daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise RuntimeError(f"the in-process gateway did not start: {self.error!r}")
        return started

    def _main(self) -> None:
        try:
            trio.run(self._serve)
        except BaseException as error:  # reported by stop() and start()
            self.error = error
            self._ready.set()

    async def _serve(self) -> None:
        self._token = trio.lowlevel.current_trio_token()
        with Store.open(self.db) as store:
            gw = self.settings.gw_id
            link = MqttLink(LinkSettings(host=HOST, port=self.port, client_id=f"pmpgw-{gw}",
                                         state_topic=f"pmp/v1/gateway/{gw}/state"))
            self._gateway = Gateway(store, link, self.settings)
            self._ready.set()
            await self._gateway.run()

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stop(self, timeout_s: float = 30.0) -> int | None:
        """Drain and wait; 0 when it drained, None if it failed or did not stop in time."""
        if self.alive():
            trio.from_thread.run_sync(self._gateway.drain, trio_token=self._token)
            self._thread.join(timeout_s)
        return None if self.alive() or self.error is not None else 0

    def tail(self) -> str:
        return repr(self.error)


@dataclasses.dataclass
class FloodRun:
    """What a flood run measured and found."""

    normal_devices: int
    baseline: np.ndarray  # others' latencies (s) before the flood
    flooded: np.ndarray  # ... during it
    baseline_s: float
    flood_s: float
    normal_rate: float  # one normal device's messages/s before the flood (mean)
    flood_rate: float  # the flooder's messages/s during the flood
    flood_readings: float  # the new readings/s in them
    stats_reported: list[str]  # devices the stats JSON listed as flooding during the flood
    stats_after_s: float | None  # flood start -> the first stats listing the flooder
    tasked: list[str]  # devices with the DEVICE problem "flood" in a task raised during the run
    task_after_s: float | None  # flood start -> the DEVICE task
    cleared_after_s: float | None  # flood end -> stats without it and its task resolved (None: not waited for)
    check: Check
    view: str  # ``pmpgw status`` as it showed the flood


FLOODER = "flood-dev"


def flood_reports(db: pathlib.Path) -> tuple[dict, list[str], str]:
    """(the stats JSON of ``pmpgw status --json``, devices listed with the DEVICE problem
    "flood" in a not-resolved task, the status view) of the database now."""
    with Store.open(db) as store:
        stats = status_cli.collect(store, str(db))
        tasks = store.alerts(severity="task", limit=100_000)
    flooding = sorted(device for a in tasks if a["rule"] == "DEVICE" and a["state"] != "resolved"
                      for device, problems in a["values"]["devices"].items() if "flood" in problems)
    return stats, flooding, status_cli.render(stats, str(db), int(time.time() * 1000))


def run_flood(port: int, tmp: pathlib.Path, *, normal: int, rate: float, baseline_s: float, flood_s: float,
              gateway_settings: ServiceSettings | None = None, wait_task_s: float = 0.0, wait_clear_s: float = 0.0,
              multiplier: int = FLOOD_MULTIPLIER, bulk: int = 0, resend_s: float = 1.5, seed: int = 1,
              settle_timeout_s: float = 120.0) -> FloodRun:
    """The whole experiment on the broker at ``port`` (store and log in ``tmp``): ``normal``
    devices at ``rate`` messages/s and one more (``FLOODER``) that floods at ``multiplier`` times that
    for ``flood_s`` seconds after ``baseline_s`` seconds without, then for up to
    ``wait_task_s`` more until its DEVICE task is raised; after the flood, up to
    ``wait_clear_s`` until the stats no longer list it and its task is resolved. ``bulk``,
    ``resend_s``: as ``LatencyFleet`` and ``DeviceFleet`` take them. The gateway is ``pmpgw
    run --broker`` as a process, or in-process with ``gateway_settings``."""
    db = tmp / "pmp.db"
    others = [f"norm-{i:03d}" for i in range(normal)]
    names = others + [FLOODER, "fault-warm"]
    register(db, names)
    address = broker_address_file(str(db))  # as `pmpgw run` with its private broker: status reads live stats there
    address.parent.mkdir(parents=True, exist_ok=True)
    address.write_text(f"{HOST}:{port}\n")
    if gateway_settings is None:
        gateway = GatewayProcess(port, db, tmp / "pmpgw.log")
    else:
        gateway = InProcessGateway(port, db, gateway_settings)
    fleet = LatencyFleet(port, names, flooder=FLOODER, rate=rate, multiplier=multiplier, bulk=bulk, seed=seed,
                         resend_s=resend_s)
    try:
        started = gateway.start()
        fleet.publish_one("fault-warm")
        if fleet.first_ack_after(started, 60.0) is None:
            raise RuntimeError(f"the gateway did not ack within 60 s:\n{gateway.tail()}")
        for name in names:  # every device heard from before the first sweep: none is "silent"
            fleet.publish_one(name)
        fleet.start_generating()
        time.sleep(min(1.0, baseline_s))
        b0, published0 = time.monotonic(), dict(fleet.published)
        time.sleep(baseline_s)
        b1, published1 = time.monotonic(), dict(fleet.published)
        fleet.set_flooding(True)
        reported, stats_after, tasked, task_after, view = set(), None, set(), None, ""
        while True:
            now = time.monotonic()
            if now - b1 >= flood_s and (task_after is not None or now - b1 >= flood_s + wait_task_s):
                break
            stats, flooding, shown = flood_reports(db)
            listed = {f["device"] for f in stats["flooding"]}
            if listed and stats_after is None:
                stats_after, view = time.monotonic() - b1, shown
            reported |= listed
            tasked |= set(flooding)
            if flooding and task_after is None:
                task_after = time.monotonic() - b1
            time.sleep(POLL_S)
        f1 = time.monotonic()
        fleet.set_flooding(False)
        flood_rate, flood_readings = fleet.flood_messages / (f1 - b1), fleet.flood_readings / (f1 - b1)
        cleared_after = None
        while wait_clear_s and time.monotonic() - f1 < wait_clear_s:
            stats, flooding, _ = flood_reports(db)
            if not stats["flooding"] and not flooding:
                cleared_after = time.monotonic() - f1
                break
            time.sleep(POLL_S)
        fleet.stop_generating()
        if not fleet.wait_all_acked(settle_timeout_s):
            raise RuntimeError(f"{fleet.not_acked()} readings not acked {settle_timeout_s} s after the flood:\n"
                               f"{gateway.tail()}")
        code = gateway.stop()
        if code != 0:
            raise RuntimeError(f"the gateway did not drain and exit 0 (exit {code}):\n{gateway.tail()}")
    finally:
        fleet.stop()
        if isinstance(gateway, GatewayProcess) and gateway.alive():
            gateway.process.kill()
            gateway.process.wait()
    normal_rate = sum(published1[d] - published0[d] for d in others) / len(others) / (b1 - b0)
    return FloodRun(normal_devices=normal, baseline=fleet.latencies(set(others), b0, b1),
                    flooded=fleet.latencies(set(others), b1, f1), baseline_s=b1 - b0, flood_s=f1 - b1,
                    normal_rate=normal_rate, flood_rate=flood_rate, flood_readings=flood_readings,
                    stats_reported=sorted(reported),
                    stats_after_s=stats_after, tasked=sorted(tasked), task_after_s=task_after,
                    cleared_after_s=cleared_after, check=check_exactly_once(db, fleet), view=view)


def percentiles(latencies: np.ndarray) -> str:
    """p50 / p99 / max in ms."""
    if not len(latencies):
        return "no readings"
    p50, p99, top = np.percentile(latencies, [50, 99, 100]) * 1000
    return f"p50 {p50:.1f} ms, p99 {p99:.1f} ms, max {top:.1f} ms over {len(latencies)} readings"


def summary(run: FloodRun) -> str:
    c = run.check
    timing = lambda s: "-" if s is None else f"{s:.1f} s"  # noqa: E731
    return (f"faults.flood: {run.normal_devices} devices at {run.normal_rate:.2f} msg/s, one at {run.flood_rate:.1f} "
            f"msg/s ({run.flood_rate / run.normal_rate:.0f}x; {run.flood_readings:,.0f} new readings/s) for "
            f"{run.flood_s:.0f} s; others' publish -> ack "
            f"latency without the flood ({run.baseline_s:.0f} s): {percentiles(run.baseline)}; with it: "
            f"{percentiles(run.flooded)}; reported in the stats {run.stats_reported} after "
            f"{timing(run.stats_after_s)}, DEVICE task flood {run.tasked} after {timing(run.task_after_s)}, cleared "
            f"{timing(run.cleared_after_s)} after the flood; stored {c.stored} of {c.generated} (lost {c.lost}, "
            f"duplicated {c.duplicated}), counters {c.counters}")


QUICK = {"normal": 16, "baseline_s": 6.0, "flood_s": 6.0}
FULL = {"normal": 32, "baseline_s": 30.0, "flood_s": 30.0, "wait_task_s": 240.0, "wait_clear_s": 240.0}
# The flood at one client's top speed: 10,000 new readings a 50 ms tick asked for, as many as
# the fleet's paho client packs and sends (about 140,000 a second here, beside the gateway on
# the same two cores: about the gateway's own ceiling, e2e.ingest_batched); no re-sends
# meanwhile (resend_s), so the figure is the queue the flood alone builds.
MAX_RATE = {"normal": 16, "bulk": 10_000, "resend_s": 60.0}
MAX_RATE_QUICK, MAX_RATE_FULL = {"baseline_s": 4.0, "flood_s": 3.0}, {"baseline_s": 10.0, "flood_s": 10.0}
NORMAL_RATE = 0.5  # messages/s of a normal device: 30 a minute, half the default flood limit
SEED = 1


def _on_private_broker(**options) -> FloodRun:
    """``run_flood`` on a private Mosquitto of its own, in a temporary folder; raises if any
    reading was lost, doubled or quarantined."""
    from gateway.broker import PrivateBroker

    with tempfile.TemporaryDirectory(dir=PROJECT_DIR, prefix=".bench-flood-") as tmp:
        broker = PrivateBroker.start(pathlib.Path(tmp) / "broker")
        try:
            fault = run_flood(broker.port, pathlib.Path(tmp), rate=NORMAL_RATE, seed=SEED, **options)
        finally:
            broker.stop()
    print(summary(fault), file=sys.stderr)
    c = fault.check
    if not c.ok or c.stored != c.generated:
        raise RuntimeError(f"bench: the flood broke exactly-once: {summary(fault)}; {c.examples}")
    return fault


def run(quick: bool) -> list[Result]:
    fault = _on_private_broker(**(QUICK if quick else FULL))
    top = _on_private_broker(**MAX_RATE, **(MAX_RATE_QUICK if quick else MAX_RATE_FULL))
    c = fault.check
    only = fault.stats_reported == [FLOODER] and fault.tasked == ([] if quick else [FLOODER])
    offender = ("the offender, and only it, reported" if only
                else f"REPORTED {fault.stats_reported} in the stats and {fault.tasked} as tasks")
    task = ("; stats only (--quick: the DEVICE task needs a flood longer than the one-minute window)" if quick else
            f"; DEVICE task flood after {fault.task_after_s:.0f} s, resolved "
            f"{'-' if fault.cleared_after_s is None else f'{fault.cleared_after_s:.0f}'} s after the flood")
    setting = (f"{fault.normal_devices} simulated tonometers at {fault.normal_rate:.2f} msg/s each (own paho "
               f"connection), one at {FLOOD_MULTIPLIER}x that for {fault.flood_s:.0f} s after {fault.baseline_s:.0f} s "
               f"without; `pmpgw run --broker` with default settings, private Mosquitto; {c.generated:,} readings, "
               f"each stored once; {offender} (stats after {fault.stats_after_s:.1f} s){task}")
    base, flood = (np.percentile(x, [50, 99]) for x in (fault.baseline, fault.flooded))
    top_base, top_flood = (np.percentile(x, [50, 99]) for x in (top.baseline, top.flooded))
    return [
        Result("faults.flood.p50", "s", float(flood[0]), "same devices before the flood", float(base[0]),
               note=f"others' publish -> ack latency p50 during the flood; {setting}"),
        Result("faults.flood.p99", "s", float(flood[1]), "same devices before the flood", float(base[1]),
               note=f"p99, max {fault.flooded.max() * 1000:.0f} ms (before: {fault.baseline.max() * 1000:.0f} ms); "
                    f"{setting}"),
        Result("faults.flood.rate", "msg/s", fault.flood_rate, "one normal device", fault.normal_rate,
               note=f"the flooder's messages a second during the flood; {setting}"),
        Result("faults.flood.max_rate.p99", "s", float(top_flood[1]), "same devices before the flood",
               float(top_base[1]),
               note=f"others' p99 while one device sends new readings as fast as one client can: "
                    f"{top.flood_readings:,.0f} readings/s ({top.flood_rate:,.0f} msg/s of {CHUNK}) for "
                    f"{top.flood_s:.0f} s, about the gateway's ingest ceiling on this machine; at or past it the "
                    f"broker's queue, FIFO, grows for everyone, and only the headroom bounds the others (p50 "
                    f"{top_flood[0]:.2f} s, max {top.flooded.max():.2f} s; before: p99 {top_base[1] * 1000:.0f} ms); "
                    f"{top.normal_devices} devices at {top.normal_rate:.2f} msg/s; {top.check.generated:,} readings, "
                    f"each stored once"),
    ]
