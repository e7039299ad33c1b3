"""Patient binding: a reading belongs to the patient its device was bound to at ``t``.

Devices are rented and re-issued, so a device has bindings with validity intervals
``[start, end)`` (ms UTC); a cuff shared in a family sends a user slot, and a binding may
name that slot. Matching, for a reading of device d, user slot u, time t:

1. a binding of d for slot u whose interval holds t (u != NO_USER), else
2. a binding of d for any slot (user == NO_USER) whose interval holds t, else
3. UNBOUND.

The registry refuses overlapping bindings of one device and slot, so at most one binding
matches at each step.
"""

from __future__ import annotations

import numpy as np

from ._jit import kernel
from ._prefetch import PREFETCH_DISTANCE, prefetch
from .bindings import Bindings
from .codes import NO_PATIENT, NO_USER, Reason

_OK, _UNBOUND = int(Reason.OK), int(Reason.UNBOUND)


@kernel
def _bind_kernel(device, user, t, reason, patient, b_user, b_start, b_end, b_patient, device_start):
    n_devices = device_start.shape[0] - 1
    n = device.shape[0]
    for i in range(n):
        # Two-stage prefetch: the device's index entry far ahead, its first binding near.
        far, near = i + 2 * PREFETCH_DISTANCE, i + PREFETCH_DISTANCE
        if far < n and 0 <= device[far] < n_devices:
            prefetch(device_start, device[far])
        if near < n and 0 <= device[near] < n_devices and device_start[device[near]] < b_start.shape[0]:
            prefetch(b_start, device_start[device[near]])
        if reason[i] != _OK:
            continue
        d = device[i]
        found = NO_PATIENT
        if 0 <= d < n_devices:
            generic = NO_PATIENT
            for j in range(device_start[d], device_start[d + 1]):
                if b_start[j] <= t[i] < b_end[j]:
                    if b_user[j] == user[i] and user[i] != NO_USER:
                        found = b_patient[j]
                        break
                    if b_user[j] == NO_USER and generic == NO_PATIENT:
                        generic = b_patient[j]
            if found == NO_PATIENT:
                found = generic
        patient[i] = found
        if found == NO_PATIENT:
            reason[i] = _UNBOUND


def bind(device: np.ndarray, user: np.ndarray, t: np.ndarray, reason: np.ndarray, patient: np.ndarray,
         bindings: Bindings) -> None:
    """Set ``patient`` (int32[n]) of every OK reading, or its reason to UNBOUND, in place."""
    rows = bindings.rows
    _bind_kernel(device, user, t, reason, patient, rows["user"], rows["start"], rows["end"], rows["patient"],
                 bindings.device_start)
