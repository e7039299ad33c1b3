"""The gateway service: MQTT in, one commit per batch, then acks, alerts and stats out.

    link.receive_batch  (size or a few ms)  ->  Ingest.process in the writer thread
        (decode, core, ONE SQLite transaction)  ->  PUBACK the batch's messages
        ->  publish alerts, device and hub acks  ->  next batch

Nothing is acknowledged before it is committed. If the store refuses a batch (disk full,
database locked), the batch is kept, not acked, retried after ``retry_s`` (doubling up to
MAX_RETRY_S; at once when a full disk gains space), and the reason is in the stats
(``store_error``, ``store_fault``) and logged once per episode (``gateway.store_health``);
the broker holds back further messages once Receive Maximum un-acked messages are
outstanding. A refused write of any other job (stats, window save, day close, sweeps,
escalation, replay) is retried at its next turn and never stops the gateway. ``drain()``
(SIGINT / SIGTERM) takes no new batch, commits and acks what it holds, publishes
``offline`` and returns.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import gc
import json
import logging
import time

import trio

from adapters.mqtt import MqttLink, Received
from core.dedup_keys import MAX_CAPACITY

from . import replay
from .clock import now_ms
from .flood import FloodSettings
from .ingest import Ingest, alert_publications
from .store import Store, StoreError
from .store_health import StoreHealth

log = logging.getLogger("pmpgw")

MAX_RETRY_S = 30.0  # longest wait between attempts to commit a batch the store refused

# CPython's cyclic collector. Decoding a batch builds ~10 tuples and floats per reading, all
# alive until the batch is committed; at the default gen-0 threshold (700 allocations) the
# collector runs hundreds of times a batch and re-traverses those survivors: 1.5 of 4.1 us a
# reading of decode_messages (500 msgpack messages of 50 maps, measured with gc on and
# off). The gateway's garbage is acyclic and freed by reference counting, so gen 0 is
# collected every million net allocations, and what exists after start-up (modules,
# registry, core state) is frozen out of every collection.
GC_THRESHOLDS = (1_000_000, 10, 10)


def tune_gc() -> None:
    """Freeze what exists now and set GC_THRESHOLDS (see there); called once the state is loaded."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*GC_THRESHOLDS)


@dataclasses.dataclass(frozen=True)
class ServiceSettings:
    """Batching and reporting. ``batch_max`` messages or ``batch_wait_s`` seconds make a
    batch; keep batch_max at half the link's Receive Maximum, so the broker can deliver the
    next batch while this one commits (a batch of the whole window would leave the broker
    nothing to send until its acks go out). Stats go out every ``stats_interval_s`` seconds.
    ``flood``: when a publisher counts as flooding (``gateway.flood``; reported, never refused).
    ``dedup_max_capacity``: the core's dedup table's bound, slots of 32 bytes (``Ingest``).
    ``shared``: in a shared subscription group with other gateways on one database
    (``pmpgw run --shared``): acks advanced by the store over what every gateway committed (``Ingest``)."""

    gw_id: str = "gw1"
    batch_max: int = 500
    batch_max_bytes: int = 256 * 1024  # about 5,000 readings: bounds how long an alert waits behind a batch
    batch_wait_s: float = 0.005
    stats_interval_s: float = 5.0
    retry_s: float = 1.0
    day_close_interval_s: float = 60.0
    windows_save_interval_s: float = 300.0
    escalation_interval_s: float = 30.0  # how often open emergencies are checked for escalation (gateway.escalation)
    sweep_interval_s: float = 60.0  # how often the MISSED and DEVICE sweeps run (gateway.sweeps)
    flood: FloodSettings = FloodSettings()
    dedup_max_capacity: int = MAX_CAPACITY
    shared: bool = False  # gateways share the store (run --shared): window sums and sweep activity in it (Ingest)


class Gateway:
    """One gateway: a link, a store and the writer thread between them."""

    def __init__(self, store: Store, link: MqttLink, settings: ServiceSettings) -> None:
        self.store = store
        self.link = link
        self.settings = settings
        self.started_s = time.monotonic()
        self.batch_ms: collections.deque[float] = collections.deque(maxlen=1000)
        self.committed: collections.deque[tuple[float, int]] = collections.deque()
        self.health = StoreHealth(store)
        self.held = 0  # messages of the batch the store refuses (received, not acked)
        self._store_view = {"readings": None, "alerts_open": None}  # the last the store could be read
        self._writer = trio.CapacityLimiter(1)
        self._draining = False
        self._receiving = trio.CancelScope()
        self._ingest: Ingest | None = None  # the writer's state, once ``run`` restored it

    @property
    def last_error(self) -> str:
        """``"REASON: message"`` while the store refuses writes, else ""."""
        return self.health.last_error

    def drain(self) -> None:
        """Stop taking batches; ``run`` commits and acks what it holds, then returns."""
        self._draining = True
        self._receiving.cancel()

    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """Restore state from the store, connect, and serve until ``drain``."""
        ingest = await trio.to_thread.run_sync(
            functools.partial(Ingest, self.store, flood=self.settings.flood,
                              dedup_max_capacity=self.settings.dedup_max_capacity,
                              shared=self.settings.shared), limiter=self._writer)
        self._ingest = ingest
        tune_gc()
        async with trio.open_nursery() as nursery:
            await nursery.start(self.link.run)
            # The timers stop (their writer work in progress done) before the drain's last
            # window save and stats report, so no periodic report saved after it says "up".
            async with trio.open_nursery() as timers:
                timers.start_soon(self._stats_loop)
                timers.start_soon(self._every, "day_close", self.settings.day_close_interval_s, self._close_days,
                                  ingest)
                timers.start_soon(self._every, "windows", self.settings.windows_save_interval_s, ingest.save_windows)
                timers.start_soon(self._every, "escalation", self.settings.escalation_interval_s, self._escalate)
                timers.start_soon(self._every, "sweep", self.settings.sweep_interval_s, self._sweep, ingest)
                timers.start_soon(self._replays, ingest)
                task_status.started()
                while not self._draining:
                    self._receiving = trio.CancelScope()
                    with self._receiving:
                        messages = await self.link.receive_batch(self.settings.batch_max, self.settings.batch_wait_s,
                                                                 self.settings.batch_max_bytes)
                    if self._receiving.cancelled_caught:
                        break
                    await self._commit(ingest, messages)
                timers.cancel_scope.cancel()
            try:
                await trio.to_thread.run_sync(ingest.save_windows, limiter=self._writer)
            except StoreError as error:  # the next start replays the readings stored since the last save
                self.health.refused("windows", error)
                log.error("window state not saved at drain: %s", error)
            await self._report_stats(state="down")
            await self.link.close()
            nursery.cancel_scope.cancel()

    async def _commit(self, ingest: Ingest, messages: list[Received]) -> None:
        """Commit ``messages`` (retrying with backoff while the store refuses), then ack and
        publish. Draining while the store refuses leaves them un-acked: the broker keeps them
        for the next start."""
        delay = self.settings.retry_s
        while True:
            started = time.perf_counter()
            try:
                outcome = await trio.to_thread.run_sync(ingest.process, messages, now_ms(), limiter=self._writer)
                break
            except StoreError as error:
                self.health.refused("batch", error)
                self.held = len(messages)
                if self._draining:
                    return
                with trio.move_on_after(delay):
                    while not self._draining and not self.health.space_returned():
                        await trio.sleep(0.1)
                delay = min(2 * delay, MAX_RETRY_S)
        self.held = 0
        self.health.ok("batch")
        self.link.ack(messages)
        self._publish(outcome.publications)
        self.batch_ms.append((time.perf_counter() - started) * 1000)
        self.committed.append((time.monotonic(), len(outcome.result.reason)))

    async def _every(self, job: str, interval_s: float, work, *args) -> None:
        """Run ``work(*args)`` in the writer thread every ``interval_s`` seconds (a refused
        write is told by ``health`` as ``job`` and retried at the next turn)."""
        while True:
            await trio.sleep(interval_s)
            try:
                await trio.to_thread.run_sync(work, *args, limiter=self._writer)
            except StoreError as error:
                self.health.refused(job, error)
            else:
                self.health.ok(job)

    def _close_days(self, ingest: Ingest) -> None:
        outcome = ingest.close_days(now_ms())
        trio.from_thread.run_sync(self._publish, outcome.publications)

    def _sweep(self, ingest: Ingest) -> None:
        """Raise, re-notify and resolve MISSED and DEVICE tasks; publish the raised ones."""
        publications = ingest.sweep(now_ms())
        trio.from_thread.run_sync(self._publish, publications)

    def _escalate(self) -> None:
        """Escalate the open emergencies due now and publish each again (``escalated``: n)."""
        alerts = self.store.escalate_alerts(now_ms())
        trio.from_thread.run_sync(self._publish, alert_publications(alerts))

    async def _replays(self, ingest: Ingest) -> None:
        """Run the quarantine replays ``pmpgw quarantine replay`` queues (``gateway.replay``),
        looked for every ``replay.POLL_S``; one chunk per writer turn, so live batches go
        between, and the alerts they raise published."""
        while True:
            await trio.sleep(replay.POLL_S)
            try:
                job = await trio.to_thread.run_sync(replay.next_requested, ingest, now_ms(), limiter=self._writer)
                while job is not None and not job.done:
                    self._publish(await trio.to_thread.run_sync(job.step, ingest, now_ms(), limiter=self._writer))
            except StoreError as error:  # the request stays queued; run again, it takes the rows left
                self.health.refused("replay", error)
            else:
                self.health.ok("replay")

    def _publish(self, publications: list[tuple[str, bytes]]) -> None:
        for topic, payload in publications:
            self.link.publish(topic, payload, qos=1)

    def stats(self, state: str = "up") -> dict:
        """The stats JSON of DESIGN.md, plus ``state`` (up, or down in the last report at
        drain), ``flooding`` (the publishers flooding now: ``Ingest.flooding``), the link's
        and the broker's view, the store's health: ``store_error`` (``"REASON: message"``
        while it refuses writes, else ""), ``store_fault`` (the episode, see
        ``StoreHealth.fault``; None) and ``disk_free_bytes``, and the dedup table's
        (``Ingest.dedup_stats``). If the store cannot be read, readings and open alerts are
        the last values read. Call it in the writer's turn (it reads the writer's flood
        counts and dedup table)."""
        cutoff = time.monotonic() - 60
        while self.committed and self.committed[0][0] < cutoff:
            self.committed.popleft()
        latencies = sorted(self.batch_ms)
        percentile = (lambda q: round(latencies[min(len(latencies) - 1, int(q * len(latencies)))], 3)  # noqa: E731
                      if latencies else None)
        link = self.link.stats
        try:
            self._store_view = {"readings": self.store.counters(), "alerts_open": self.store.alerts_open()}
        except StoreError as error:
            self.health.refused("stats", error)
        return {
            "gw": self.settings.gw_id,
            "state": state,
            "up_s": round(time.monotonic() - self.started_s, 1),
            "readings": self._store_view["readings"],
            "rate_1m": round(sum(n for _, n in self.committed) / 60, 1),
            "batch": {"p50_ms": percentile(0.5), "p99_ms": percentile(0.99)},
            "alerts_open": self._store_view["alerts_open"],
            "queue_depth": self.link.backlog,
            "db_bytes": self.store.db_bytes(),
            "flooding": [] if self._ingest is None else self._ingest.flooding(now_ms()),
            "mqtt": {"connected": link.connected, "connections": link.connections, "stale_acks": link.stale_acks,
                     "broker_dropped": link.broker_dropped, "last_error": link.last_error},
            "store_error": self.health.last_error,
            "store_fault": self.health.fault(self.held),
            "disk_free_bytes": self.store.disk_free_bytes(),
            "dedup": None if self._ingest is None else self._ingest.dedup_stats(),
        }

    async def _report_stats(self, state: str = "up") -> None:
        """Publish the stats (retained) and save them in the store, for status after a stop."""
        async with self._writer:
            stats = self.stats(state)
        self.link.publish(f"pmp/v1/gateway/{self.settings.gw_id}/stats", json.dumps(stats).encode(), qos=1,
                          retain=True)
        try:
            await trio.to_thread.run_sync(self.store.save_gateway_stats, stats, limiter=self._writer)
        except StoreError as error:
            self.health.refused("stats", error)
        else:
            self.health.ok("stats")

    async def _stats_loop(self) -> None:
        while True:
            await trio.sleep(self.settings.stats_interval_s)
            await self._report_stats()
