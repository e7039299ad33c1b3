"""core.gatt_decode: the C batch decoder vs its pure-Python twin on a hub's mixed records."""

from __future__ import annotations

import datetime

import numpy as np

from adapters import gatt_encode as enc
from bench._harness import Result, best_seconds
from core import gatt as compiled_gatt
from core.codes import UUID_KIND
from core.layout import GATT_CONTEXT_DTYPE, pack_values
from core.reference import gatt as twin_gatt

UUIDS = sorted(UUID_KIND)


def hub_values(n: int, seed: int = 2) -> tuple[list[bytes], np.ndarray]:
    """``n`` characteristic values as hubs relay them: BP with every field, glucose with
    offset and status, some contexts, and CGM values of four records with E2E-CRC."""
    rng = np.random.default_rng(seed)
    base = datetime.datetime(2025, 11, 24, 7, 30, 0)
    values, uuids = [], []
    for i in range(n):
        pick = rng.random()
        when = base + datetime.timedelta(minutes=int(rng.integers(0, 1440)))
        if pick < 0.40:
            values.append(enc.blood_pressure(enc.sfloat(int(rng.integers(100, 190))), enc.sfloat(int(rng.integers(60, 99))),
                                             enc.sfloat(95), when=when, pulse_raw=enc.sfloat(int(rng.integers(50, 110))),
                                             user=1, status=0))
            uuids.append(0x2A35)
        elif pick < 0.70:
            values.append(enc.glucose(i & 0xFFFF, when, offset_min=-5,
                                      concentration_raw=enc.sfloat(float(rng.uniform(70, 250)) * 1e-5, -5),
                                      status=0, context_follows=pick < 0.45))
            uuids.append(0x2A18)
        elif pick < 0.75:
            values.append(enc.glucose_context(i & 0xFFFF, carbohydrate=(1, enc.sfloat(0.05, -3)), meal=1,
                                              tester_health=(1, 2)))
            uuids.append(0x2A34)
        else:
            start = int(rng.integers(0, 10_000))
            values.append(b"".join(enc.cgm_record(enc.sfloat(int(rng.integers(60, 250))), start + 5 * k,
                                                  trend_raw=enc.sfloat(-1.5, -1), quality_raw=enc.sfloat(95), crc=True)
                                   for k in range(4)))
            uuids.append(0x2AA7)
    return values, np.array(uuids, dtype=np.uint16)


def _contexts(n: int) -> np.ndarray:
    ctx = np.zeros(n, dtype=GATT_CONTEXT_DTYPE)
    ctx["device"] = np.arange(n) % 5000
    ctx["rx"] = 1_764_072_000_000
    ctx["tz_min"] = 180
    ctx["cgm_start"] = 1_763_900_000_000
    ctx["has_cgm_start"] = 1
    return ctx


def rate(decoder, values: list[bytes], uuids: np.ndarray, repeat: int) -> float:
    """Records per second of ``decoder.decode_batch`` over the packed values."""
    buf, offsets = pack_values(values)
    contexts = _contexts(len(values))
    records = len(decoder.decode_batch(buf, offsets, uuids, contexts)[0])
    return records / best_seconds(lambda: decoder.decode_batch(buf, offsets, uuids, contexts), repeat=repeat)


def run(quick: bool) -> list[Result]:
    values, uuids = hub_values(100_000 if quick else 400_000)
    n_twin = 2_000 if quick else 10_000
    compiled = rate(compiled_gatt, values, uuids, repeat=3 if quick else 5)
    twin = rate(twin_gatt, values[:n_twin], uuids[:n_twin], repeat=1)
    return [Result("core.gatt_decode", "records/s", compiled, "pure-Python twin", twin,
                   note=f"{len(values):,} values (40% BP, 30% glucose, 5% context, 25% CGM x4 records + CRC), "
                        f"twin on {n_twin:,}")]
