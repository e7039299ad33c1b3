"""A seeded synthetic fleet: mixed BP / glucometer / CGM readings as one core batch.

Every patient has a tonometer (device 2p) and a glucose meter (device 2p + 1, a CGM for
``cgm_share`` of patients), bound for all time. Readings spread over the last ``days``
days, mostly in time order per device with a few out of order, a few late uploads, a few
re-sent duplicates and a few clinical events (crises, hypos), so every stage has real work.
"""

from __future__ import annotations

import dataclasses

import numpy as np

import core
from core.bindings import OPEN_END, Bindings
from core.codes import NO_USER, Flag, Kind
from core.compiled import fingerprint_readings

DAY_MS = 86_400_000
NOW_MS = 1_764_072_000_000  # 2025-11-25T12:00:00Z: a fixed clock keeps runs comparable


@dataclasses.dataclass
class Fleet:
    """A batch of readings and the registry state they need."""

    batch: np.ndarray
    bindings: Bindings
    tz_min: np.ndarray
    n_patients: int
    now_ms: int


def make_fleet(n: int, n_patients: int, *, seed: int = 1, days: int = 14, cgm_share: float = 0.3,
               duplicate_share: float = 0.05, late_share: float = 0.03) -> Fleet:
    """``n`` readings (duplicates included) from ``n_patients`` patients, reproducibly."""
    rng = np.random.default_rng(seed)
    n_unique = n - int(n * duplicate_share)
    patient = rng.integers(0, n_patients, n_unique)
    is_bp = rng.random(n_unique) < 0.5
    patient_has_cgm = rng.random(n_patients) < cgm_share
    kind = np.where(is_bp, Kind.BP, np.where(patient_has_cgm[patient], Kind.CGM, Kind.GLU)).astype(np.uint8)
    device = (2 * patient + (~is_bp)).astype(np.int32)
    t = np.sort(NOW_MS - rng.integers(0, days * DAY_MS, n_unique))
    swap = rng.random(n_unique) < 0.02
    t[swap] = rng.permutation(t[swap])

    batch = core.empty_batch(n_unique)
    batch["kind"], batch["device"], batch["t"] = kind, device, t
    delay = rng.integers(1_000, 600_000, n_unique)
    delay[rng.random(n_unique) < late_share] = 2 * DAY_MS
    batch["rx"] = np.minimum(t + delay, NOW_MS)
    batch["flags"] = Flag.HAS_TIME
    order = np.argsort(device, kind="stable")
    first_of_device = np.searchsorted(device[order], device[order])
    seq = np.empty(n_unique, dtype=np.uint32)
    seq[order] = np.arange(n_unique) - first_of_device
    batch["seq"] = seq
    batch["flags"][kind != Kind.CGM] |= np.uint16(Flag.HAS_SEQ)

    v = batch["v"]
    bp = kind == Kind.BP
    sys_ = rng.normal(135, 18, n_unique)
    crisis = rng.random(n_unique) < 0.01
    sys_[crisis] = rng.uniform(180, 220, crisis.sum())
    v[bp, 0] = np.clip(sys_, 80, 260)[bp]
    v[bp, 1] = np.clip(rng.normal(84, 10, n_unique), 45, 130)[bp]
    v[bp, 1] = np.minimum(v[bp, 1], v[bp, 0] - 15)
    v[bp, 3] = np.clip(rng.normal(74, 12, n_unique), 35, 160)[bp]
    glucose = np.exp(rng.normal(np.log(7.0), 0.3, n_unique))
    hypo = rng.random(n_unique) < 0.01
    glucose[hypo] = rng.uniform(2.2, 3.8, hypo.sum())
    v[~bp, 0] = np.round(glucose, 1)[~bp]
    cgm = kind == Kind.CGM
    v[cgm, 1] = np.round(rng.normal(0, 0.05, n_unique), 3)[cgm]
    fingerprint_readings(batch["kind"], batch["flags"], batch["user"], batch["t"], batch["v"], batch["fingerprint"])

    resent = rng.integers(0, n_unique, n - n_unique)
    batch = np.concatenate([batch, batch[resent]])
    return Fleet(batch=batch, bindings=_bindings(n_patients), tz_min=np.full(n_patients, 180, dtype=np.int16),
                 n_patients=n_patients, now_ms=NOW_MS)


def _bindings(n_patients: int) -> Bindings:
    rows = [(d, NO_USER, 0, OPEN_END, d // 2) for d in range(2 * n_patients)]
    return Bindings.from_tuples(rows, n_devices=2 * n_patients)
