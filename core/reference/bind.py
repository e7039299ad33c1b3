"""Pure-Python twin of core/bind.py: scan every binding of the device."""

from __future__ import annotations

from collections import defaultdict

import numpy as np

from ..bindings import Bindings
from ..codes import NO_PATIENT, NO_USER, Reason


def _patient_at(device_rows: list[tuple], user: int, t: int) -> int:
    holding = [(slot, patient) for _, slot, start, end, patient in device_rows if start <= t < end]
    for slot, patient in holding:
        if user != NO_USER and slot == user:
            return patient
    for slot, patient in holding:
        if slot == NO_USER:
            return patient
    return NO_PATIENT


def bind(device: np.ndarray, user: np.ndarray, t: np.ndarray, reason: np.ndarray, patient: np.ndarray,
         bindings: Bindings) -> None:
    """Set ``patient`` of every OK reading, or its reason to UNBOUND, in place."""
    by_device: dict[int, list[tuple]] = defaultdict(list)
    for row in bindings.rows.tolist():
        by_device[row[0]].append(row)
    for i in range(len(device)):
        if reason[i] != Reason.OK:
            continue
        patient[i] = _patient_at(by_device[int(device[i])], int(user[i]), int(t[i]))
        if patient[i] == NO_PATIENT:
            reason[i] = Reason.UNBOUND
