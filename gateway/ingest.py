"""The gateway's single writer: a batch of MQTT messages -> decoded -> core -> ONE commit.

Runs in one worker thread (the core's kernels release the GIL; a capacity limit of one
keeps a single writer of the dedup table, window state and store). Nothing is acked here:
``process`` returns what to acknowledge and publish, and the service does that only after
the commit returned (DESIGN.md "Data flow").

Publishers the registry does not know are registered on first sight with kind "unknown"
(their readings are UNBOUND, quarantined, and replayable once a device administrator binds
them); the adapters' provisional device indexes are mapped to the store's.

Every committed live batch is also counted per publisher for flood detection
(``gateway.flood``): a publisher that starts or stops flooding is logged once per episode,
the stats list the flooding ones and the DEVICE sweep reports a lasting flood. Nothing of
a flooding publisher is refused.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import math

import numpy as np

import core
from adapters.devices import DeviceIndex
from adapters.inbound import Decoded, Inbound, decode_messages
from adapters.mqtt import Received
from adapters.topics import Route, device_ack_topic, hub_ack_topic, parse_topic
from core.codes import Flag, Kind, Reason
from core.dedup_keys import MAX_CAPACITY
from core.rule_tables import Rule

from .acks import ContiguousAcks
from .activity import Activity
from .clock import format_ms, now_ms
from . import shared_windows
from .flood import FloodMeter, FloodSettings
from .store import GATEWAY_ACTOR, AlertIn, CommitResult, DayClose, Store, StoreError
from .sweeps import Sweeper

log = logging.getLogger("pmpgw")

# Device kind recorded for a publisher first seen on a topic: by the kind of its first row.
FIRST_SEEN_KIND: dict[int, str] = {Kind.BP: "bp", Kind.GLU: "glu", Kind.GLU_CONTEXT: "glu", Kind.CGM: "cgm"}

DAY_MS = 86_400_000
# The core's dedup table keeps keys of readings measured in this many last days at most
# (pruned daily; its size is bounded apart, ``core.dedup_keys.MAX_CAPACITY``). A record
# measured before the table's horizon is looked up in the store first (``_recall``).
DEDUP_HORIZON_MS = 30 * DAY_MS

# The values a window alert carries, in the order of its values columns (core.window_layout).
WINDOW_VALUES: dict[Rule, tuple[str, ...]] = {
    Rule.BP_HOME_HIGH: ("mean_sys", "mean_dia", "n", "days"),
    Rule.CGM_TIR: ("tir_pct", "tbr_pct", "cv_pct", "data_pct"),
}

# The values an alert carries, by the kind of its reading: JSON key -> column of v.
ALERT_VALUES: dict[int, dict[str, int]] = {
    Kind.BP: {"sys": 0, "dia": 1, "pul": 3},
    Kind.GLU: {"glu": 0},
    Kind.CGM: {"glu": 0, "trend": 1},
}


@dataclasses.dataclass(frozen=True)
class Outcome:
    """One committed batch: the store's result and the publications it calls for
    (``(topic, JSON payload)``: alerts, device and hub acks)."""

    result: CommitResult
    publications: list[tuple[str, bytes]]


def alert_publications(alerts: list[dict]) -> list[tuple[str, bytes]]:
    """``(pmp/v1/alert/{patient}, alert JSON)`` of each alert dict of the store."""
    return [(f"pmp/v1/alert/{alert['patient']}", json.dumps(alert).encode()) for alert in alerts]


class Ingest:
    """Decode, run the core, commit: the state of one gateway's single writer.

    ``dedup_max_capacity``: the core's dedup table's bound in slots of 32 bytes (a power
    of two; ``core.dedup_keys.MAX_CAPACITY`` = 256 MiB by default). Records measured before
    the table's horizon (keys evicted to stay within it, or older than DEDUP_HORIZON_MS)
    are looked up in the store, one query a batch, so DUPLICATE and CONFLICT stay exact.

    ``shared``: gateways share the store (``pmpgw run --shared``) and each receives only
    part of the readings (and of each publisher's sequence): the device and hub acks are
    advanced by the store, in each batch's transaction, over what every gateway committed
    (``Store.commit_batch``'s ``ack_seqs``); each batch adds its stored readings' daily
    window sums to the store, and day close evaluates the window rules on the store's sums
    (``gateway.shared_windows``), not on this gateway's own window state; the sweeps take
    the latest device and patient times all the gateways saved (``_share_activity``).
    """

    def __init__(self, store: Store, *, impl=core.implementation, flood: FloodSettings = FloodSettings(),
                 dedup_max_capacity: int = MAX_CAPACITY, shared: bool = False) -> None:
        self.store = store
        self.shared = shared
        self._registry_version = store.registry_version()
        self.devices = DeviceIndex(store.device_index())
        self.kinds = store.device_kinds()  # id -> registry kind: which route each may publish on
        self.impl = impl
        self.dedup_max_capacity = dedup_max_capacity
        self.recalled = self.recalled_found = self.dedup_peak_capacity = 0
        self.activity = Activity.from_rows(*store.load_activity())  # the sweeps' state; _load_core_state replays
        self._core_stale = True
        self._load_core_state()
        self.sweeper = Sweeper(store)
        self.flood = FloodMeter(flood, len(self.devices))
        self.device_acks = ContiguousAcks(store.publisher_acks("dev"))
        self.hub_acks = ContiguousAcks(store.publisher_acks("hub"))
        if shared:
            self.store.seed_day_sums(lambda: shared_windows.slot_sums(self.pipeline.windows.arrays()["acc"]),
                                     now_ms=now_ms())
        self.closed_day = self.local_days(now_ms())
        self.pruned_day = now_ms() // DAY_MS

    def _load_core_state(self) -> None:
        """The core's state as the store has it: registry, dedup keys of the readings
        measured in the last DEDUP_HORIZON_MS (the newest of them, if more than the table
        holds), window state as saved plus the readings stored since (replayed in id order,
        into the sweeps' activity state too, from the older of the two saves).
        ``_core_stale`` stays True until a load completes."""
        store, impl = self.store, self.impl
        arrays, through = store.load_windows()
        self.pipeline = core.Pipeline(impl, n_patients=len(arrays["tz_min"]), tz_min=arrays["tz_min"],
                                      bindings=store.bindings(), thresholds=store.thresholds(),
                                      dedup_max_capacity=self.dedup_max_capacity,
                                      windows=impl.WindowState.from_arrays(**arrays, adopt=True))
        dedup = self.pipeline.dedup
        dedup.prune(now_ms() - DEDUP_HORIZON_MS)
        dedup.add_evicted_seqs(*store.highest_seqs_before(dedup.horizon))
        for keys in store.dedup_key_chunks(since_t=dedup.horizon):
            dedup.add_stored(keys)
        self._note_dedup_capacity()
        self._windows_dirty = np.zeros(len(arrays["tz_min"]), dtype=bool)
        after = min(through, self.activity.through)
        while True:
            batch, ids = store.readings_batch(after_id=after)
            if not len(ids):
                self._core_stale = False
                return
            self.pipeline.windows.update(batch[ids > through], self.pipeline.thresholds)
            self._mark_windows_dirty(batch["patient"][ids > through])
            self.activity.replay(batch, ids)
            after = int(ids[-1])

    def save_windows(self) -> None:
        """Persist the window state and the sweeps' activity state (so a restart replays
        only readings stored after them)."""
        changed = np.flatnonzero(self._windows_dirty)
        self.store.save_windows({**self.pipeline.windows.arrays(), "patients": changed})
        self._windows_dirty[changed] = False
        self.activity.mark_saved(self.store.save_activity(*self.activity.changed_rows()))

    def _mark_windows_dirty(self, patients: np.ndarray) -> None:
        """Note the patients whose window state changed since the last save (only they are
        written: the state is ~3 KiB a patient, 600 MB for 200,000 patients)."""
        patients = patients[patients >= 0]
        if len(patients) and patients.max() >= len(self._windows_dirty):  # the registry grew
            self._windows_dirty = np.concatenate(
                [self._windows_dirty, np.zeros(int(patients.max()) + 1 - len(self._windows_dirty), dtype=bool)])
        self._windows_dirty[patients] = True

    def sweep(self, now: int) -> list[tuple[str, bytes]]:
        """Run the MISSED and DEVICE sweeps at gateway time ``now`` (``gateway.sweeps``) and
        commit their tasks; return the publications of the tasks raised or re-notified.
        Shared: first save this gateway's activity and take the store's latest times
        (``_share_activity``)."""
        if self.shared:
            self._share_activity()
        return alert_publications(self.sweeper.run(self.activity, now, self.flood))

    def _share_activity(self) -> None:
        """Gateways sharing the store: save the activity rows that changed here (the store
        keeps the later of its and these times), then take the later of the store's and
        ours: each device's last message and each patient's last valid reading as all the
        gateways heard them, as of their last sweeps."""
        self.activity.mark_saved(self.store.save_activity(*self.activity.changed_rows()))
        devices, patients, _ = self.store.load_activity()
        self.activity.take_latest(devices, patients)

    def local_days(self, at_ms: int) -> np.ndarray:
        """int32[n_patients]: each patient's local day (days since 1970-01-01) at ``at_ms``."""
        offsets = self.pipeline.windows.tz_min.astype(np.int64) * 60_000
        return ((at_ms + offsets) // DAY_MS).astype(np.int32)

    def close_days(self, now: int) -> Outcome:
        """Evaluate the window rules (BP_HOME_HIGH, CGM_TIR) for every patient whose local
        day ended since the last call, and commit their alerts; once a UTC day, forget dedup
        keys older than DEDUP_HORIZON_MS."""
        self.refresh_registry()
        if now // DAY_MS > self.pruned_day:
            self.pruned_day = now // DAY_MS
            self.pipeline.dedup.prune(now - DEDUP_HORIZON_MS)
        today = self.local_days(now)
        known = self.closed_day[: len(today)]
        closed = np.flatnonzero(today[: len(known)] > known).astype(np.int32)
        if self.shared:
            result = self.store.commit_batch(core.empty_batch(0), now_ms=now, day_close=DayClose(
                closed, today[closed] - 1, self._shared_window_alerts))
        else:
            alerts = self.pipeline.close_days(closed, today[closed] - 1)
            result = self.store.commit_batch(core.empty_batch(0), now_ms=now, alerts=self._window_alerts(alerts))
        self.closed_day = today  # only now: a refused commit closes the same days next time
        return Outcome(result, alert_publications(result.alerts))

    def _window_alerts(self, alerts: np.ndarray) -> list[AlertIn]:
        """The store's alert inputs of the core's window alerts (WINDOW_ALERT_DTYPE), each at
        the last millisecond of its patient's closed local day."""
        tz_min = self.pipeline.windows.tz_min
        return [AlertIn(patient=int(a["patient"]), rule=Rule(int(a["rule"])).name,
                        t=(int(a["day"]) + 1) * DAY_MS - int(tz_min[a["patient"]]) * 60_000 - 1,
                        late=False, values={name: None if math.isnan(x) else x for name, x in
                                            zip(WINDOW_VALUES[Rule(int(a["rule"]))], a["values"].tolist())})
                for a in alerts]

    def _shared_window_alerts(self, patients: np.ndarray, days: np.ndarray, sums: np.ndarray) -> list[AlertIn]:
        """``DayClose.evaluate``: the window alerts of the closes this gateway claimed, from
        the store's daily sums."""
        return self._window_alerts(shared_windows.close_days(
            self.impl, patients, days, sums, self.pipeline.windows.tz_min, self.pipeline.thresholds))

    def _day_sums(self, batch: np.ndarray, stored: np.ndarray) -> np.ndarray:
        """``commit_batch``'s ``day_sums``: the daily window sums of the rows it stored."""
        return shared_windows.day_sums(self.impl, batch[stored], self.pipeline.windows.tz_min,
                                       self.pipeline.thresholds)

    def refresh_registry(self) -> bool:
        """Reload devices, patients (with their targets) and bindings if the registry
        changed; True if it did."""
        version = self.store.registry_version()
        if version == self._registry_version:
            return False
        self._registry_version = version
        self.devices = DeviceIndex(self.store.device_index())
        self.kinds = self.store.device_kinds()
        self.pipeline.set_registry(tz_min=self.store.tz_offsets(), bindings=self.store.bindings(),
                                   thresholds=self.store.thresholds())
        return True

    def process(self, messages: list[Received], now_ms: int) -> Outcome:
        """Decode, validate, dedup, bind, window and evaluate ``messages``; commit them, with
        the device and hub acks they move, in one transaction. Raises StoreError (nothing
        written; the core's state, the registry and the acks as the store has them; the
        messages must not be acked, and may be processed again)."""
        inbound = [Inbound(m.topic, m.payload, m.rx_ms) for m in messages]
        decoded = self.decode(inbound)
        routes = [parse_topic(m.topic) for m in messages]
        seqs = _publisher_seqs(routes, decoded.batch, decoded.message, decoded.hseq)
        if self.shared:
            result = self.commit(decoded, inbound, now_ms, ack_seqs=_by_route(seqs))
            acks = [(hub, publisher, acked) for (hub, publisher), _ in seqs
                    if (acked := result.acks.get("hub" if hub else "dev", {}).get(publisher)) is not None]
        else:
            with self.device_acks.tentative(), self.hub_acks.tentative():
                moved, acks = self._acks(seqs)
                result = self.commit(decoded, inbound, now_ms, publisher_acks=moved)
        self._count_publishers(routes, decoded.message, now_ms)
        return Outcome(result, alert_publications(result.alerts) + [_ack_publication(*ack) for ack in acks])

    def _count_publishers(self, routes: list[tuple[Route, str] | None], message: np.ndarray, now_ms: int) -> None:
        """Count a committed batch's messages and rows per publisher (``gateway.flood``) and
        log the floods that start or end (every publisher of a valid topic is registered by
        now: ``decode``)."""
        get = self.devices.get
        publisher = np.array([-1 if route is None else get(route[1]) for route in routes], dtype=np.int64)
        started, ended = self.flood.update(publisher, np.bincount(message, minlength=len(routes)), now_ms)
        window = self.flood.settings.window_s
        for episode in started:
            log.warning("flood: %s sent %d messages (%d readings) in the last %g s, above the limit of %g "
                        "messages/s; its readings are still stored and acked", self.devices.id_of(episode.publisher),
                        episode.msgs, episode.readings, window, self.flood.settings.msgs_per_s)
        for episode in ended:
            log.info("flood: %s stopped flooding (flooding since %s; %d messages in the last %g s)",
                     self.devices.id_of(episode.publisher), format_ms(episode.since), episode.msgs, window)

    def flooding(self, now: int) -> list[dict]:
        """The stats JSON's ``flooding`` (``FloodMeter.report``) at gateway time ``now``."""
        return self.flood.report(now, self.devices.id_of)

    def decode(self, messages: list[Inbound]) -> Decoded:
        """Take registry changes, decode ``messages``, and register the publishers seen for
        the first time (their rows get the store's device indexes)."""
        self.refresh_registry()
        known = len(self.devices)
        decoded = decode_messages(messages, self.devices, kinds=self.kinds)
        if len(self.devices) > known:
            try:
                self._register_new_devices(decoded.batch, known, messages, decoded.message)
            except StoreError:
                # The adapters gave the new publishers provisional indexes the store may not
                # have given them: take the device index from the store at the next batch.
                self._registry_version = None
                raise
        return decoded

    def commit(self, decoded: Decoded, messages: list[Inbound], now_ms: int, *,
               replayed: np.ndarray | None = None, publisher_acks: dict[str, dict[str, int]] | None = None,
               ack_seqs: dict[str, dict[str, np.ndarray]] | None = None) -> CommitResult:
        """Run the core on ``decoded`` (the rows of ``messages``: validate, bind, dedup,
        windows, reading rules) at gateway time ``now_ms`` and commit it in ONE transaction.
        The one path of live batches and of quarantine replay (``replayed``: the quarantine
        row of each row; ``publisher_acks`` the acks the batch moves, or ``ack_seqs`` its
        sequence numbers for the store to advance the acks; see ``Store.commit_batch``).
        Raises StoreError (nothing written; the core's state is the store's again, reloaded
        now or, if the store refuses that too, before the next batch)."""
        if self._core_stale:
            self._load_core_state()
        batch = decoded.batch
        rejected = np.flatnonzero(batch["reason"] != Reason.OK)  # by the adapters, which say why
        where = zip(rejected.tolist(), decoded.message[rejected].tolist(), decoded.element[rejected].tolist())
        details = {row: decoded.details[(message, element)] for row, message, element in where
                   if (message, element) in decoded.details}
        try:
            reading_alerts = self.pipeline.process(batch, now_ms, recall=self._recall)
            self._note_dedup_capacity()
            self._mark_windows_dirty(batch["patient"][batch["reason"] == Reason.OK])
            result = self.store.commit_batch(
                batch, now_ms=now_ms, payloads=[m.payload for m in messages], message=decoded.message,
                element=decoded.element, topics=[m.topic for m in messages], details=details, meal=decoded.meal,
                battery=decoded.battery, alerts=[_alert_in(batch, a) for a in reading_alerts], replayed=replayed,
                publisher_acks=publisher_acks, ack_seqs=ack_seqs,
                day_sums=functools.partial(self._day_sums, batch) if self.shared else None)
        except StoreError:
            # The core took the batch into its dedup table and windows, the store did not
            # (or the store refused the dedup lookup midway): forget it, or the retry would
            # find every reading "already stored".
            self._core_stale = True
            self._load_core_state()
            raise
        if replayed is None:
            self.activity.update(batch, result.reason, decoded.battery, now_ms)
        else:
            self.activity.take_late(batch, result.reason, now_ms)
        return result

    def _recall(self, device: np.ndarray, tag: np.ndarray, key: np.ndarray) -> np.ndarray:
        """The dedup table's lookup of the records it may not hold (``DedupTable.check_and_insert``):
        the store's rows of those keys (``Store.stored_keys``, one query)."""
        found = self.store.stored_keys(device, tag, key)
        self.recalled += len(device)
        self.recalled_found += len(found)
        return found

    def _note_dedup_capacity(self) -> None:
        """Keep the highest capacity the dedup table had (it changes only inside the core's
        calls, so looking after each of them sees every value)."""
        self.dedup_peak_capacity = max(self.dedup_peak_capacity, self.pipeline.dedup.capacity)

    def dedup_stats(self) -> dict:
        """The dedup table for the stats JSON: keys held, slots now, at most, the highest
        so far (32 bytes each), its horizon (ms UTC; keys measured before it may be evicted),
        and the records looked up in the store for being older (and of them, found)."""
        dedup = self.pipeline.dedup
        return {"keys": len(dedup), "capacity": dedup.capacity, "max_capacity": dedup.max_capacity,
                "peak_capacity": self.dedup_peak_capacity, "horizon": dedup.horizon, "recalled": self.recalled,
                "recalled_found": self.recalled_found}

    def _register_new_devices(self, batch: np.ndarray, known: int, messages: list[Inbound],
                              message: np.ndarray) -> None:
        """Register the ids the adapters saw first in this batch; map their rows to the store's indexes."""
        provisional = self.devices.ids()
        first_kind: dict[int, str] = {}
        for row in range(len(batch)):
            device = int(batch["device"][row])
            if device >= known and device not in first_kind:
                hub = parse_topic(messages[int(message[row])].topic) == (Route.GATT, provisional[device])
                first_kind[device] = "hub" if hub else FIRST_SEEN_KIND.get(int(batch["kind"][row]), "unknown")
        registered = self.store.device_index()
        for device in range(known, len(provisional)):
            if provisional[device] not in registered:  # else the CLI registered it meanwhile
                self.store.add_device(provisional[device], first_kind.get(device, "unknown"), actor=GATEWAY_ACTOR)
        stored = self.store.device_index()
        remap = np.arange(len(provisional), dtype=np.int32)
        remap[known:] = [stored[name] for name in provisional[known:]]
        moved = batch["device"] >= known
        batch["device"][moved] = remap[batch["device"][moved]]
        self.refresh_registry()

    def _acks(self, seqs: list[tuple[tuple[bool, str], np.ndarray]]
              ) -> tuple[dict[str, dict[str, int]], list[tuple[bool, str, int]]]:
        """Take the batch's sequence numbers (``_publisher_seqs``) into the in-memory
        contiguous acks (call it inside their ``tentative`` with the commit): the acks that
        moved (``{"dev" | "hub": {publisher: seq}}``, for the store) and the acks to publish
        (``(hub, publisher, seq)``), also of publishers whose re-sent readings are acked
        already."""
        out = []
        moved: dict[str, dict[str, int]] = {"dev": {}, "hub": {}}
        for (hub, publisher), publisher_seqs in seqs:
            acks = self.hub_acks if hub else self.device_acks
            acked = acks.commit(publisher, publisher_seqs)
            if acked is not None:
                moved["hub" if hub else "dev"][publisher] = acked
            else:
                # A re-send of what was acked already: the publisher missed that ack (it was
                # offline, or the gateway died between commit and publish) and keeps
                # re-sending until it hears one, so say the current ack again.
                acked = acks.acked(publisher)
                if acked is None or not (publisher_seqs <= acked).any():
                    continue
            out.append((hub, publisher, acked))
        return moved, out


def _publisher_seqs(routes: list[tuple[Route, str] | None], batch: np.ndarray, message: np.ndarray,
                    hseq: np.ndarray) -> list[tuple[tuple[bool, str], np.ndarray]]:
    """The sequence numbers a batch commits of each publisher, in the order publishers first
    appear: ``((hub, publisher id), int64[k])``, a device's reading ``seq``s (not glucose
    context records) or a hub's message ``hseq``s, whatever the row's outcome (stored,
    duplicate or quarantined). ``routes``: ``parse_topic`` of each message's topic."""
    publishers = list(dict.fromkeys(route for route in routes if route is not None))
    code_of = {route: code for code, route in enumerate(publishers)}
    message_code = np.array([code_of.get(route, -1) for route in routes], dtype=np.int64)
    row_code = message_code[message]
    is_gatt = np.array([route is not None and route[0] is Route.GATT for route in routes], dtype=bool)[message]
    device_rows = ~is_gatt & ((batch["flags"] & Flag.HAS_SEQ) != 0) & (batch["kind"] != Kind.GLU_CONTEXT)
    hub_rows = is_gatt & (hseq >= 0)
    seq_of_row = np.where(is_gatt, hseq, batch["seq"].astype(np.int64))
    rows = np.flatnonzero((device_rows | hub_rows) & (row_code >= 0))
    order = rows[np.argsort(row_code[rows], kind="stable")]
    codes, starts = np.unique(row_code[order], return_index=True)
    return [((publishers[code][0] is Route.GATT, publishers[code][1]), seq_of_row[group])
            for code, group in zip(codes.tolist(), np.split(order, starts[1:]))]


def _by_route(seqs: list[tuple[tuple[bool, str], np.ndarray]]) -> dict[str, dict[str, np.ndarray]]:
    """``_publisher_seqs`` as ``Store.commit_batch``'s ``ack_seqs``: ``{"dev" | "hub": {publisher: seqs}}``."""
    out: dict[str, dict[str, np.ndarray]] = {"dev": {}, "hub": {}}
    for (hub, publisher), publisher_seqs in seqs:
        out["hub" if hub else "dev"][publisher] = publisher_seqs
    return out


def _ack_publication(hub: bool, publisher: str, acked: int) -> tuple[str, bytes]:
    """The ack message of DESIGN.md: ``pmp/v1/hub/{id}/ack {"hseq": N}`` or ``pmp/v1/dev/{id}/ack {"seq": N}``."""
    return ((hub_ack_topic(publisher), json.dumps({"hseq": acked}).encode()) if hub else
            (device_ack_topic(publisher), json.dumps({"seq": acked}).encode()))


def _alert_in(batch: np.ndarray, alert: np.void) -> AlertIn:
    """The store's alert input for a reading alert of the core."""
    row = int(alert["reading"])
    values: dict[str, float | str | None] = {}
    for key, column in ALERT_VALUES.get(int(batch["kind"][row]), {}).items():
        value = float(batch["v"][row, column])
        values[key] = None if math.isnan(value) else value
    flags = int(batch["flags"][row])
    if flags & (Flag.RANGE_LO | Flag.RANGE_HI):
        values["range"] = "LO" if flags & Flag.RANGE_LO else "HI"
    return AlertIn(patient=int(batch["patient"][row]), rule=Rule(int(alert["rule"])).name, t=int(batch["t"][row]),
                   late=bool(flags & Flag.LATE), values=values, rows=[row])

