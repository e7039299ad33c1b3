"""What the MISSED and DEVICE sweeps know of each device and patient, kept by the writer.

The gateway's writer updates these arrays from every committed batch (vectorised numpy over
the batch: no Python per reading, no SQL), saves the rows that changed with the window
state (``Ingest.save_windows``: every few minutes and at drain) and restores them at
start-up. Arrays are indexed by the registry index (the core's device / patient index) and
grow as the registry does.

Per device:

- ``last_rx`` int64: ms UTC of the latest row received from it (any reason; the row's
  receive time, capped at gateway time); ``NEVER`` before the first;
- ``battery`` float64: the last battery percent a reading map reported (``bat``); NaN never;
- ``battery_low`` bool: its latest reading carried the meter's own "battery low" status
  (GATT glucose / CGM sensor status, ``Flag.BATTERY_LOW``);
- ``rejects``, ``clock_faults`` uint64: registers of its last ``OUTCOME_WINDOW`` counted
  readings, newest in bit 0: rejected (``REJECTED``), or with a clock fault (``FUTURE`` /
  ``STALE``, or the meter's "time fault" status); ``counted`` uint8: readings in them.
  A reading counts unless it is a DUPLICATE (a re-send), UNBOUND (nobody to blame the
  device for) or a glucose context record (it belongs to its measurement);
- ``reset_at`` int64: ms UTC of the last staff resolution of a DEVICE task about it
  (``reset_evidence``: its registers start empty then); ``NEVER``.

Per patient and metric (``METRICS``): ``last_valid`` int64[n_patients, 3], the measurement
time of the latest VALID reading (stored as clinical: reason OK after the store's dedup,
bound, no ``NOT_VALID`` flag); ``NEVER`` before the first.

Restart: the state is saved with the id of the last stored reading it includes; readings
stored after that are replayed into ``last_valid`` and ``last_rx`` (``replay``), so both
are exact after a crash. The device registers and battery are not in stored readings (the
rejects are in quarantine): a crash loses at most the outcomes of the last save interval
(300 s) of them, which only delays or hastens a DEVICE task by that much. Rows a quarantine
replay commits update only ``last_valid`` and ``last_rx`` (``take_late``).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from core.codes import Flag, Kind, Reason

from .store.store import ACTIVITY_NEVER

# Metrics a plan names, in ``last_valid`` column order, and the reading kind of each.
METRICS: dict[str, Kind] = {"bp": Kind.BP, "glu": Kind.GLU, "cgm": Kind.CGM}
OUTCOME_WINDOW = 50  # readings in a device's reject and clock registers
NEVER = ACTIVITY_NEVER  # no reading (yet): int64 min

# Flags that make a stored reading not VALID for adherence: disturbed, control solution,
# a time the meter itself doubts, a meter reporting a fault.
NOT_VALID = int(Flag.ARTIFACT | Flag.CONTROL | Flag.TIME_FAULT | Flag.DEVICE_FAULT)
# Rows not counted in a device's registers: not the device's fault (a re-send, a reading
# nobody was bound to). Every other reason but OK counts against it as rejected.
NOT_COUNTED = np.array([Reason.DUPLICATE, Reason.UNBOUND], dtype=np.uint8)
REJECTED = np.array([r for r in Reason if r != Reason.OK and r not in NOT_COUNTED], dtype=np.uint8)
CLOCK_REASONS = np.array([Reason.FUTURE, Reason.STALE], dtype=np.uint8)

_WINDOW_MASK = np.uint64((1 << OUTCOME_WINDOW) - 1)
_METRIC_OF_KIND = np.full(256, -1, dtype=np.int8)
for _column, _kind in enumerate(METRICS.values()):
    _METRIC_OF_KIND[_kind] = _column

# Columns of the saved rows (``Store.save_activity`` / ``load_activity``), by table.
DEVICE_COLUMNS = ("last_rx", "battery", "battery_low", "rejects", "clock_faults", "counted", "reset_at")
PATIENT_COLUMNS = tuple(f"last_{metric}" for metric in METRICS)


def _last_of_each(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(distinct keys, index of the last row holding each) of ``keys``."""
    distinct, first_from_end = np.unique(keys[::-1], return_index=True)
    return distinct, len(keys) - 1 - first_from_end


class Activity:
    """The per-device and per-patient activity arrays (see the module docstring)."""

    def __init__(self, n_devices: int = 0, n_patients: int = 0) -> None:
        self.last_rx = np.full(n_devices, NEVER, dtype=np.int64)
        self.battery = np.full(n_devices, np.nan)
        self.battery_low = np.zeros(n_devices, dtype=bool)
        self.rejects = np.zeros(n_devices, dtype=np.uint64)
        self.clock_faults = np.zeros(n_devices, dtype=np.uint64)
        self.counted = np.zeros(n_devices, dtype=np.uint8)
        self.reset_at = np.full(n_devices, NEVER, dtype=np.int64)
        self.last_valid = np.full((n_patients, len(METRICS)), NEVER, dtype=np.int64)
        self.device_dirty = np.zeros(n_devices, dtype=bool)
        self.patient_dirty = np.zeros(n_patients, dtype=bool)
        self.through = 0  # id of the last stored reading the saved state includes

    @property
    def n_devices(self) -> int:
        return len(self.last_rx)

    @property
    def n_patients(self) -> int:
        return len(self.last_valid)

    def grow(self, n_devices: int, n_patients: int) -> None:
        """Make room for device indexes < n_devices and patient indexes < n_patients."""
        extra = n_devices - self.n_devices
        if extra > 0:
            fresh = Activity(extra, 0)
            for name in (*DEVICE_COLUMNS, "device_dirty"):
                setattr(self, name, np.concatenate([getattr(self, name), getattr(fresh, name)]))
        extra = n_patients - self.n_patients
        if extra > 0:
            fresh = Activity(0, extra)
            self.last_valid = np.concatenate([self.last_valid, fresh.last_valid])
            self.patient_dirty = np.concatenate([self.patient_dirty, fresh.patient_dirty])

    def update(self, batch: np.ndarray, reason: np.ndarray, battery: np.ndarray | None, now_ms: int) -> None:
        """Take a committed batch.

        ``batch`` READING_DTYPE[n] after the core (device and patient indexes, t, rx, kind,
        flags); ``reason`` uint8[n] the store's final reasons (``CommitResult.reason``: a
        row the store already held is DUPLICATE or CONFLICT there); ``battery`` float64[n]
        percent, NaN absent; ``now_ms`` gateway time (caps receive times).
        """
        if not len(batch):
            return
        self._grow_for(batch)
        self._heard(batch, now_ms)
        self._valid(batch, reason)
        self._outcomes(batch, reason)
        self._battery(batch, battery)

    def take_late(self, batch: np.ndarray, reason: np.ndarray, now_ms: int) -> None:
        """Take rows out of their arrival order (a quarantine replay): into ``last_valid``
        and ``last_rx`` only, which are maxima; the registers and battery describe the
        device's latest messages, which these are not."""
        if not len(batch):
            return
        self._grow_for(batch)
        self._heard(batch, now_ms)
        self._valid(batch, reason)

    def replay(self, batch: np.ndarray, ids: np.ndarray) -> None:
        """Take stored readings at start-up (``Store.readings_batch``: reason OK, int64 ids)
        as ``take_late`` does, skipping those the saved state includes (id <= through).
        Idempotent."""
        batch = batch[ids > self.through]
        self.take_late(batch, batch["reason"], np.iinfo(np.int64).max)

    def _grow_for(self, batch: np.ndarray) -> None:
        self.grow(int(batch["device"].max()) + 1, int(batch["patient"].max()) + 1)

    def _heard(self, batch: np.ndarray, now_ms: int) -> None:
        rows = batch["device"] >= 0
        device = batch["device"][rows]
        np.maximum.at(self.last_rx, device, np.minimum(batch["rx"][rows], now_ms))
        self.device_dirty[device] = True

    def _valid(self, batch: np.ndarray, reason: np.ndarray) -> None:
        metric = _METRIC_OF_KIND[batch["kind"]]
        valid = ((reason == Reason.OK) & (batch["patient"] >= 0) & (metric >= 0)
                 & ((batch["flags"] & NOT_VALID) == 0))
        patient = batch["patient"][valid]
        np.maximum.at(self.last_valid, (patient, metric[valid]), batch["t"][valid])
        self.patient_dirty[patient] = True

    def _outcomes(self, batch: np.ndarray, reason: np.ndarray) -> None:
        """Shift each device's counted readings of this batch into its registers, in row order."""
        counted = (batch["device"] >= 0) & (batch["kind"] != Kind.GLU_CONTEXT) & ~np.isin(reason, NOT_COUNTED)
        rows = np.flatnonzero(counted)
        if not len(rows):
            return
        rows = rows[np.argsort(batch["device"][rows], kind="stable")]
        device = batch["device"][rows]
        starts = np.flatnonzero(np.r_[True, device[1:] != device[:-1]])
        sizes = np.diff(np.r_[starts, len(rows)])
        age = np.repeat(starts + sizes, sizes) - 1 - np.arange(len(rows))  # 0: the device's newest here
        shift = np.minimum(age, 63).astype(np.uint64)
        recent = age < OUTCOME_WINDOW
        rejected = np.isin(reason[rows], REJECTED) & recent
        clock = (np.isin(reason[rows], CLOCK_REASONS) | ((batch["flags"][rows] & Flag.TIME_FAULT) != 0)) & recent
        devices, step = device[starts], np.minimum(sizes, OUTCOME_WINDOW).astype(np.uint64)
        for register, bits in ((self.rejects, rejected), (self.clock_faults, clock)):
            new = np.bitwise_or.reduceat(bits.astype(np.uint64) << shift, starts)
            register[devices] = ((register[devices] << step) | new) & _WINDOW_MASK
        self.counted[devices] = np.minimum(self.counted[devices].astype(np.int64) + sizes, OUTCOME_WINDOW)

    def _battery(self, batch: np.ndarray, battery: np.ndarray | None) -> None:
        device = batch["device"]
        if battery is not None:
            rows = np.flatnonzero((device >= 0) & np.isfinite(battery))
            devices, last = _last_of_each(device[rows])
            self.battery[devices] = battery[rows[last]]
        rows = np.flatnonzero((device >= 0) & (batch["kind"] != Kind.GLU_CONTEXT))
        devices, last = _last_of_each(device[rows])
        self.battery_low[devices] = (batch["flags"][rows[last]] & Flag.BATTERY_LOW) != 0

    def reset_evidence(self, devices: np.ndarray, at_ms: np.ndarray) -> None:
        """Staff resolved a DEVICE task about ``devices`` (int[k]) at ``at_ms`` (int64[k]; a
        device may repeat, the latest counts): empty their reject and clock registers, once
        per resolution (a device already reset at or after it is left alone, so the same
        resolution seen again changes nothing)."""
        latest = np.full(self.n_devices, NEVER, dtype=np.int64)
        np.maximum.at(latest, devices, at_ms)
        reset = np.flatnonzero(latest > self.reset_at)
        self.reset_at[reset] = latest[reset]
        self.rejects[reset] = 0
        self.clock_faults[reset] = 0
        self.counted[reset] = 0
        self.device_dirty[reset] = True

    def take_latest(self, devices: Mapping[str, np.ndarray], patients: Mapping[str, np.ndarray]) -> None:
        """Take the later of these and the saved rows' (``Store.load_activity``) ``last_rx``
        and ``last_valid``: what other gateways sharing the store heard (``Ingest(shared=True)``).
        They are in the store already, so nothing becomes dirty."""
        self.grow(int(devices["device"].max(initial=-1)) + 1, int(patients["patient"].max(initial=-1)) + 1)
        np.maximum.at(self.last_rx, devices["device"], devices["last_rx"])
        for j, name in enumerate(PATIENT_COLUMNS):
            np.maximum.at(self.last_valid[:, j], patients["patient"], patients[name])

    # -- saved form ---------------------------------------------------------------------

    def changed_rows(self) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray]]:
        """The rows changed since ``mark_saved``: ``({"device": idx, DEVICE_COLUMNS...},
        {"patient": idx, PATIENT_COLUMNS...})``, for ``Store.save_activity``."""
        devices = np.flatnonzero(self.device_dirty)
        patients = np.flatnonzero(self.patient_dirty)
        device_rows = {"device": devices, **{name: getattr(self, name)[devices] for name in DEVICE_COLUMNS}}
        patient_rows = {"patient": patients, **{name: self.last_valid[patients, j]
                                                for j, name in enumerate(PATIENT_COLUMNS)}}
        return device_rows, patient_rows

    def mark_saved(self, through: int) -> None:
        """The changed rows are saved, with every reading up to id ``through``."""
        self.device_dirty[:] = False
        self.patient_dirty[:] = False
        self.through = through

    @classmethod
    def from_rows(cls, devices: Mapping[str, np.ndarray], patients: Mapping[str, np.ndarray],
                  through: int) -> Activity:
        """The state saved as ``changed_rows`` (``Store.load_activity``), clean."""
        activity = cls(int(devices["device"].max(initial=-1)) + 1, int(patients["patient"].max(initial=-1)) + 1)
        for name in DEVICE_COLUMNS:
            getattr(activity, name)[devices["device"]] = devices[name]
        for j, name in enumerate(PATIENT_COLUMNS):
            activity.last_valid[patients["patient"], j] = patients[name]
        activity.through = through
        return activity
