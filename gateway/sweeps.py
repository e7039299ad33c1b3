"""The MISSED and DEVICE sweeps (DESIGN.md "Default alert rules"): which tasks are due.

Pure decisions (registry arrays + ``gateway.activity`` arrays + the clock -> tasks), then
``Sweeper``, the glue that feeds them from the store and writes what they decide in one
transaction. Times are int ms UTC.

MISSED (task for the personal administrator), per patient under dispensary observation with
a measuring device (not a hub, not retired) bound now: for each metric the patient's
programmes call for (``PROGRAMME_METRICS``; glucose is ``cgm`` when a CGM is bound, else
``glu``), no VALID reading of it for longer than the plan interval (patients.targets
``"plan": {"bp": days, "glu": days, "cgm": days}``, ``DEFAULT_PLAN_DAYS`` each). The
interval counts from the latest of: that reading, the patient's registration, the start of
the patient's first binding (for ``cgm``: first CGM binding), and the last resolution of
the patient's MISSED task, so a patient enrolled less than one interval ago is not missed
yet, and a task resolved by staff ("I called them") comes back only after another interval
without readings. The task's ``t`` is when the first metric became overdue.

DEVICE (task for the device administrator), per measuring device bound now, raised on each
patient it is bound to (``PROBLEMS``):

- ``silent``: nothing received from it for longer than ``SILENT_MS``, counted from the latest
  of its last message, the start of its binding and the last staff resolution of a DEVICE
  task on that patient (``Activity.reset_at``);
- ``reject_rate``: more than ``REJECT_PCT`` % of its counted readings rejected, over its
  last ``OUTCOME_WINDOW`` (50) readings, once at least ``REJECT_MIN_READINGS`` are counted;
- ``clock``: its latest counted reading had a clock fault (FUTURE, STALE, meter time fault);
- ``battery``: its last reported battery below ``BATTERY_LOW_PCT`` %, or its latest reading
  carried the meter's own "battery low" status;
- ``flood``: it has been flooding (``gateway.flood``: more messages than the gateway's
  flood limit, by default 1 a second over a minute) for longer than the flood window, so a
  single burst (a backlog re-sent after an outage) raises nothing; it clears with the flood.

A staff resolution of a DEVICE task empties the reject and clock registers of the devices
bound to the patient, and battery counts again only from a message received after it: only
new evidence raises the task again. The task's ``t`` is when its earliest problem started
(silent: last heard + 7 days; otherwise: the device's last message).

Lifecycle (``decide``): a task is raised when none of its (patient, rule) is open; an open
one is raised again (the store updates it, re-notifying only after its cooldown) when its
problems changed (other metrics, devices or problems), or, while still ``open`` (nobody
acknowledged it), once the cooldown has passed since it was last notified. An open or
acknowledged task whose condition no longer holds is resolved by the gateway (actor
``gateway``, recorded in alert_events with the note ``RESOLVED_NOTES``); resolutions are
not published. So running a sweep twice raises nothing twice, and a restarted gateway
finds its open tasks in the store.
"""

from __future__ import annotations

import dataclasses
import functools
import json
from collections.abc import Iterable, Sequence
from typing import NamedTuple

import numpy as np

from core.bindings import BINDING_DTYPE
from core.rule_tables import Rule
from core.window_layout import DAY_MS

from .activity import METRICS, NEVER, Activity
from .flood import FloodMeter
from .store import AlertIn, Store
from .store.store import COOLDOWN_MS, GATEWAY_ACTOR

DEFAULT_PLAN_DAYS = 3.0  # a metric's plan interval when the patient's targets name none
# Programme -> the metric it calls for; "glu" becomes "cgm" for a patient with a CGM bound.
PROGRAMME_METRICS: dict[str, str] = {"AH": "bp", "DM1": "glu", "DM2": "glu"}
SILENT_MS = 7 * DAY_MS  # DEVICE "silent": nothing received for longer than this
REJECT_PCT = 20  # DEVICE "reject_rate": more than this % of the counted readings rejected ...
REJECT_MIN_READINGS = 10  # ... once at least this many are counted (of the last OUTCOME_WINDOW)
BATTERY_LOW_PCT = 15.0  # DEVICE "battery": last reported percent below this
PROBLEMS = ("silent", "reject_rate", "clock", "battery", "flood")  # order in a DEVICE task's values
# Note of the gateway's resolution of a task whose condition cleared: (rule, patient still
# covered by the sweep) -> note.
RESOLVED_NOTES: dict[tuple[Rule, bool], str] = {
    (Rule.MISSED, True): "valid readings resumed",
    (Rule.MISSED, False): "patient no longer monitored (not under observation, or no device bound)",
    (Rule.DEVICE, True): "device problems cleared",
    (Rule.DEVICE, False): "no device with a problem bound any more",
}
RESOLUTION_MARGIN_MS = 3_600_000  # resolutions are re-read this far back (clocks of other processes)

_LATEST = np.iinfo(np.int64).max
_METRIC_COLUMN = {metric: j for j, metric in enumerate(METRICS)}
_BP, _GLU, _CGM = (_METRIC_COLUMN[m] for m in ("bp", "glu", "cgm"))


@dataclasses.dataclass(frozen=True)
class Registry:
    """What the sweeps read of the registry, arrays by registry index.

    Patients: ``observed`` bool (under dispensary observation), ``wants`` bool[n, 2] (the
    programmes call for bp, for glucose), ``plan_days`` float64[n, 3] (METRICS order),
    ``registered`` int64 (ms). Devices: ``device_ids`` str, ``measuring`` bool (not a hub),
    ``cgm`` bool, ``retired`` int64 (ms; max int64 while in service). ``bindings``
    BINDING_DTYPE (``[start, end)``).
    """

    observed: np.ndarray
    wants: np.ndarray
    plan_days: np.ndarray
    registered: np.ndarray
    device_ids: Sequence[str]
    measuring: np.ndarray
    cgm: np.ndarray
    retired: np.ndarray
    bindings: np.ndarray

    @property
    def n_patients(self) -> int:
        return len(self.observed)

    @property
    def n_devices(self) -> int:
        return len(self.device_ids)

    @functools.cached_property
    def device_index(self) -> dict[str, int]:
        """Device id -> registry index."""
        return {device_id: idx for idx, device_id in enumerate(self.device_ids)}

    @classmethod
    def from_rows(cls, patients: Iterable[tuple], devices: Iterable[tuple], bindings: np.ndarray) -> Registry:
        """From ``Store.sweep_registry``: patients ``(idx, programmes "AH,DM2", dispensary,
        targets JSON, created ms)``, devices ``(idx, id, kind, retired ms or None)``."""
        patients, devices = list(patients), list(devices)
        n_p, n_d = len(patients), len(devices)
        observed, wants = np.zeros(n_p, dtype=bool), np.zeros((n_p, 2), dtype=bool)
        plan_days, registered = np.full((n_p, len(METRICS)), DEFAULT_PLAN_DAYS), np.zeros(n_p, dtype=np.int64)
        for idx, programmes, dispensary, targets, created in patients:
            observed[idx], registered[idx] = bool(dispensary), created
            metrics = {PROGRAMME_METRICS.get(p.strip()) for p in programmes.split(",")}
            wants[idx] = ("bp" in metrics, "glu" in metrics)
            plan = json.loads(targets).get("plan") if targets != "{}" else None
            for metric, days in (plan.items() if isinstance(plan, dict) else ()):
                if metric in _METRIC_COLUMN and type(days) in (int, float) and days > 0:
                    plan_days[idx, _METRIC_COLUMN[metric]] = days
        ids = [""] * n_d
        measuring, cgm = np.zeros(n_d, dtype=bool), np.zeros(n_d, dtype=bool)
        retired = np.full(n_d, _LATEST, dtype=np.int64)
        for idx, device_id, kind, retired_ms in devices:
            ids[idx], measuring[idx], cgm[idx] = device_id, kind != "hub", kind == "cgm"
            if retired_ms is not None:
                retired[idx] = retired_ms
        bindings = np.asarray(bindings, dtype=BINDING_DTYPE)
        # Read after the patients and devices: a binding of one registered since is left for the next sweep.
        bindings = bindings[(bindings["device"] < n_d) & (bindings["patient"] < n_p)]
        return cls(observed, wants, plan_days, registered, ids, measuring, cgm, retired, bindings)


class Bound(NamedTuple):
    """Who is monitored at a moment: the (device, patient) pairs of measuring devices in
    service bound then, with the start of each pair's binding, and per patient."""

    device: np.ndarray  # int32[k]
    patient: np.ndarray  # int32[k]
    start: np.ndarray  # int64[k], earliest start among the pair's open bindings
    has_device: np.ndarray  # bool[n_patients]
    has_cgm: np.ndarray  # bool[n_patients]
    first_bound: np.ndarray  # int64[n_patients, 3]: earliest binding start (any device; cgm: a CGM); NEVER none


def bound_at(registry: Registry, now_ms: int) -> Bound:
    """The measuring devices in service bound at ``now_ms`` and the patients they make monitored."""
    b = registry.bindings
    started = b[(b["start"] <= now_ms) & registry.measuring[b["device"]]]
    current = started[(started["end"] > now_ms) & (registry.retired[started["device"]] > now_ms)]
    keys = (current["device"].astype(np.int64) << 32) | current["patient"].astype(np.int64)
    pairs, pair_of = np.unique(keys, return_inverse=True)
    starts = np.full(len(pairs), _LATEST, dtype=np.int64)
    np.minimum.at(starts, pair_of, current["start"])
    device, patient = (pairs >> 32).astype(np.int32), (pairs & 0xFFFFFFFF).astype(np.int32)
    n_p = registry.n_patients
    has_device, has_cgm = np.zeros(n_p, dtype=bool), np.zeros(n_p, dtype=bool)
    has_device[patient] = True
    has_cgm[patient[registry.cgm[device]]] = True
    first = np.full((n_p, len(METRICS)), _LATEST, dtype=np.int64)
    for column, which in ((_BP, started), (_GLU, started), (_CGM, started[registry.cgm[started["device"]]])):
        np.minimum.at(first[:, column], which["patient"], which["start"])
    first[first == _LATEST] = NEVER
    return Bound(device, patient, starts, has_device, has_cgm, first)


class Task(NamedTuple):
    """A task the sweep finds due, raised on ``patient`` (registry index). ``problems`` is
    what makes it this task (``signature``): MISSED the overdue metrics, in METRICS order;
    DEVICE ``(device id, (problem, ...))`` per device, by id, problems in PROBLEMS order.
    Its values (with the figures) are built only when it is raised (``task_values``)."""

    patient: int
    rule: Rule
    t: int
    problems: tuple


# Bit sets -> names: a row of booleans read as bits (column j = bit j) picks an entry.
_METRIC_SETS = [tuple(m for j, m in enumerate(METRICS) if code >> j & 1) for code in range(1 << len(METRICS))]
_PROBLEM_SETS = [tuple(p for j, p in enumerate(PROBLEMS) if code >> j & 1) for code in range(1 << len(PROBLEMS))]


def _bits(rows: np.ndarray) -> list[int]:
    """bool[k, m] -> each row as an int, column j = bit j."""
    return (rows.astype(np.int64) << np.arange(rows.shape[1])).sum(axis=1).tolist()


def missed_tasks(registry: Registry, bound: Bound, last_valid: np.ndarray, resolved: np.ndarray,
                 now_ms: int) -> tuple[list[Task], np.ndarray]:
    """MISSED tasks at ``now_ms`` (module docstring), and bool[n_patients]: who was covered.

    ``last_valid`` int64[n_patients, 3] (``Activity.last_valid``); ``resolved`` int64[n_patients]
    the last resolution of each patient's MISSED task (``NEVER``).
    """
    covered = registry.observed & bound.has_device
    expects = np.zeros_like(registry.plan_days, dtype=bool)
    expects[:, _BP] = registry.wants[:, 0]
    expects[:, _GLU] = registry.wants[:, 1] & ~bound.has_cgm
    expects[:, _CGM] = registry.wants[:, 1] & bound.has_cgm
    expects &= covered[:, None]
    since = np.maximum.reduce([last_valid, bound.first_bound,
                               np.broadcast_to(registry.registered[:, None], last_valid.shape),
                               np.broadcast_to(resolved[:, None], last_valid.shape)])
    due = since + (registry.plan_days * DAY_MS).astype(np.int64)
    missed = expects & (now_ms > due)
    rows = np.flatnonzero(missed.any(axis=1))
    first_due = np.where(missed[rows], due[rows], _LATEST).min(axis=1)
    tasks = [Task(p, Rule.MISSED, t, _METRIC_SETS[code])
             for p, t, code in zip(rows.tolist(), first_due.tolist(), _bits(missed[rows]))]
    return tasks, covered


def device_problems(bound: Bound, activity: Activity, now_ms: int,
                    flooding: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The problems of each bound pair's device at ``now_ms``: bool[k, len(PROBLEMS)], and
    int64[k] since when its earliest one holds (silent: heard + SILENT_MS; otherwise its
    last message). ``flooding`` bool[n_devices]: who floods for longer than the flood
    window (``FloodMeter.sustained``); None: nobody."""
    d = bound.device
    last_rx, reset_at, counted = activity.last_rx[d], activity.reset_at[d], activity.counted[d].astype(np.int64)
    heard = np.maximum.reduce([last_rx, bound.start, reset_at])
    rejects = np.bitwise_count(activity.rejects[d]).astype(np.int64)
    problems = np.zeros((len(d), len(PROBLEMS)), dtype=bool)
    problems[:, 0] = now_ms > heard + SILENT_MS
    problems[:, 1] = (counted >= REJECT_MIN_READINGS) & (100 * rejects > REJECT_PCT * counted)
    problems[:, 2] = (counted > 0) & ((activity.clock_faults[d] & np.uint64(1)) != 0)
    problems[:, 3] = (last_rx > reset_at) & ((activity.battery[d] < BATTERY_LOW_PCT) | activity.battery_low[d])
    if flooding is not None:
        problems[:, 4] = flooding[d]
    return problems, np.where(problems[:, 0], heard + SILENT_MS, last_rx)


def device_tasks(registry: Registry, bound: Bound, activity: Activity, now_ms: int,
                 flooding: np.ndarray | None = None) -> tuple[list[Task], np.ndarray]:
    """DEVICE tasks at ``now_ms`` (module docstring), one per patient with a problem device,
    and bool[n_patients]: who was covered (has a measuring device bound). ``flooding`` as
    ``device_problems`` takes it."""
    problems, since = device_problems(bound, activity, now_ms, flooding)
    rows = np.flatnonzero(problems.any(axis=1))
    by_patient: dict[int, tuple[int, list]] = {}
    for p, d, t, code in zip(bound.patient[rows].tolist(), bound.device[rows].tolist(), since[rows].tolist(),
                             _bits(problems[rows])):
        first, devices = by_patient.setdefault(p, (t, []))
        devices.append((registry.device_ids[d], _PROBLEM_SETS[code]))
        if t < first:
            by_patient[p] = (t, devices)
    tasks = [Task(p, Rule.DEVICE, t, tuple(sorted(devices))) for p, (t, devices) in by_patient.items()]
    return tasks, bound.has_device


def task_values(task: Task, registry: Registry, activity: Activity, flood: FloodMeter | None = None) -> dict:
    """The alert values of ``task``. MISSED: ``{"metrics": [...], "last_valid": {metric: t
    or None}, "plan_days": {metric: days}}``; DEVICE: ``{"devices": {device id: [problem,
    ...]}, "figures": {device id: {"last_rx", "battery" (percent or None), "battery_low",
    "readings" (counted, <= 50), "rejected", "clock_faults"}}}``, and for a device with
    the ``flood`` problem ``"msgs_per_s"`` (over the last flood window)."""
    if task.rule is Rule.MISSED:
        p, columns = task.patient, [_METRIC_COLUMN[m] for m in task.problems]
        last = activity.last_valid[p, columns].tolist()
        return {"metrics": list(task.problems),
                "last_valid": {m: None if t == NEVER else t for m, t in zip(task.problems, last)},
                "plan_days": dict(zip(task.problems, registry.plan_days[p, columns].tolist()))}
    index = registry.device_index
    figures = {}
    for device_id, problems in task.problems:
        d = index[device_id]
        last_rx, battery = int(activity.last_rx[d]), float(activity.battery[d])
        figures[device_id] = {"last_rx": None if last_rx == NEVER else last_rx,
                              "battery": None if battery != battery else battery,
                              "battery_low": bool(activity.battery_low[d]), "readings": int(activity.counted[d]),
                              "rejected": int(np.bitwise_count(activity.rejects[d])),
                              "clock_faults": int(np.bitwise_count(activity.clock_faults[d]))}
        if "flood" in problems and flood is not None:
            figures[device_id]["msgs_per_s"] = round(flood.msgs_per_s(d), 2)
    return {"devices": {device_id: list(problems) for device_id, problems in task.problems}, "figures": figures}


class OpenTask(NamedTuple):
    """A MISSED or DEVICE alert not resolved, as stored."""

    id: int
    patient: int
    rule: str
    state: str
    notified: int
    values: dict


def signature(rule: Rule, values: dict) -> tuple:
    """The ``Task.problems`` of stored alert values: what makes a task another one, not its
    figures, which move at every sweep."""
    if rule is Rule.MISSED:
        return tuple(values.get("metrics", ()))
    return tuple(sorted((device, tuple(problems)) for device, problems in values.get("devices", {}).items()))


def decide(tasks: Iterable[Task], covered: dict[Rule, np.ndarray], open_tasks: Iterable[OpenTask],
           now_ms: int, cooldown_ms: int = COOLDOWN_MS) -> tuple[list[Task], list[tuple[int, str]]]:
    """What to write (module docstring "Lifecycle"): the tasks to raise, and ``(alert id,
    note)`` of open tasks to resolve. ``covered`` per rule: bool[n_patients] the sweep evaluated."""
    stored = {(o.patient, Rule[o.rule]): o for o in open_tasks}
    raises = []
    for task in tasks:
        existing = stored.pop((task.patient, task.rule), None)
        if (existing is None or signature(task.rule, existing.values) != task.problems
                or existing.state == "open" and now_ms - existing.notified >= cooldown_ms):
            raises.append(task)
    resolves = []
    for (patient, rule), existing in stored.items():
        still = patient < len(covered[rule]) and bool(covered[rule][patient])
        resolves.append((existing.id, RESOLVED_NOTES[rule, still]))
    return raises, resolves


class Sweeper:
    """Runs the sweeps in the gateway's writer thread: registry (re-read when it changed),
    open tasks and their resolutions from the store; decisions from the functions above;
    one transaction for what they decide."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._version: int | None = None
        self.registry: Registry | None = None
        self.missed_resolved = np.zeros(0, dtype=np.int64)
        self._resolutions_after: int | None = None  # None: read them all (first run)

    def run(self, activity: Activity, now_ms: int, flood: FloodMeter | None = None) -> list[dict]:
        """Sweep at ``now_ms`` (``flood``: the writer's flood counts, for the DEVICE
        ``flood`` problem); return the alert JSON of each task raised or re-notified (to
        publish). Raises StoreError when the store refuses (nothing written)."""
        version = self.store.registry_version()
        if self.registry is None or version != self._version:
            self.registry = Registry.from_rows(**self.store.sweep_registry())
            self._version = version
        registry = self.registry
        activity.grow(registry.n_devices, registry.n_patients)
        if len(self.missed_resolved) < registry.n_patients:
            self.missed_resolved = np.concatenate([self.missed_resolved, np.full(
                registry.n_patients - len(self.missed_resolved), NEVER, dtype=np.int64)])
        bound = bound_at(registry, now_ms)
        self._take_resolutions(activity, bound, now_ms)
        missed, missed_covered = missed_tasks(registry, bound, activity.last_valid[:registry.n_patients],
                                              self.missed_resolved[:registry.n_patients], now_ms)
        flooding = None if flood is None else flood.sustained(now_ms, registry.n_devices)
        device, device_covered = device_tasks(registry, bound, activity, now_ms, flooding)
        open_tasks = [OpenTask(*row) for row in self.store.open_tasks()]
        raises, resolves = decide(missed + device, {Rule.MISSED: missed_covered, Rule.DEVICE: device_covered},
                                  open_tasks, now_ms)
        if not raises and not resolves:
            return []
        alerts = [AlertIn(patient=task.patient, rule=task.rule.name, t=task.t, late=False,
                          values=task_values(task, registry, activity, flood)) for task in raises]
        return self.store.apply_tasks(alerts, resolves, now_ms)

    def _take_resolutions(self, activity: Activity, bound: Bound, now_ms: int) -> None:
        """Resolutions of sweep tasks since the last look (all of them the first time):
        restart MISSED clocks; a staff resolution of a DEVICE task resets the evidence of
        the devices bound to the patient since before it (``Activity.reset_evidence``)."""
        rows = self.store.task_resolutions(self._resolutions_after)
        self._resolutions_after = now_ms - RESOLUTION_MARGIN_MS
        n_p = len(self.missed_resolved)
        missed = np.array([(p, at) for p, rule, at, _ in rows if rule == Rule.MISSED.name and p < n_p],
                          dtype=np.int64).reshape(-1, 2)
        np.maximum.at(self.missed_resolved, missed[:, 0], missed[:, 1])
        device = np.array([(p, at) for p, rule, at, actor in rows
                           if rule == Rule.DEVICE.name and actor != GATEWAY_ACTOR and p < n_p],
                          dtype=np.int64).reshape(-1, 2)
        if len(device):
            latest = np.full(n_p, NEVER, dtype=np.int64)
            np.maximum.at(latest, device[:, 0], device[:, 1])
            at = latest[bound.patient]
            before = bound.start < at
            activity.reset_evidence(bound.device[before], at[before])
