"""A simulated fleet of home monitors: what tonometers, glucometers and BLE hubs publish.

Sans-IO: ``SimulatedFleet.messages`` yields ``(topic, payload)`` in measurement-time order
over a window of days, and ``registry`` says which patients, devices and bindings a
gateway needs to store them. Realistic enough to exercise every path:

- tonometers (reading maps, msgpack arrays of two readings per session, morning and
  evening, circadian blood pressure with a per-patient baseline, rare crises);
- glucometers (reading maps before meals, rare hypos, some "LO"/"HI" meter results);
- BLE glucometers and CGMs behind home hubs (GATT 0x2A18 + 0x2A34 context, 0x2AA7 records
  every 5 minutes relayed in 15-minute messages), hubs re-sending their whole recent memory
  now and then (dedup makes that harmless);
- late uploads (a session published a day after it was measured) and a few bad payloads.

Deterministic for a seed. Units as on the wire (DESIGN.md): mmHg, mmol/L, ms UTC.
"""

from __future__ import annotations

import dataclasses
import datetime
import heapq
import random
from collections.abc import Iterator

import msgpack

from adapters import gatt_encode as enc

DAY_MS = 86_400_000
MINUTE_MS = 60_000
TZ_MIN = 180  # the fleet's patients live at UTC+3


@dataclasses.dataclass(frozen=True)
class Patient:
    """One simulated patient and the devices at home."""

    id: str
    programmes: tuple[str, ...]
    baseline_sys: float
    baseline_glu: float
    devices: dict[str, str]  # device id -> kind (bp, glu, cgm, hub); BLE meters by address


@dataclasses.dataclass
class FleetCounts:
    """What the fleet published, by kind of message."""

    messages: int = 0
    readings: int = 0
    gatt_records: int = 0
    resent: int = 0
    late: int = 0
    bad: int = 0


class SimulatedFleet:
    """``n_patients`` patients measuring at home from ``start_ms`` for ``days`` days."""

    def __init__(self, n_patients: int, *, start_ms: int, days: float = 1.0, seed: int = 1,
                 bad_share: float = 0.005, late_share: float = 0.03, resend_share: float = 0.2) -> None:
        self.start_ms, self.end_ms = start_ms, start_ms + int(days * DAY_MS)
        self.bad_share, self.late_share, self.resend_share = bad_share, late_share, resend_share
        self.counts = FleetCounts()
        self._rng = random.Random(seed)
        self.patients = [self._patient(i) for i in range(n_patients)]

    def _patient(self, i: int) -> Patient:
        rng = self._rng
        programmes: tuple[str, ...] = ("AH",) if rng.random() < 0.6 else ("AH", "DM2")
        devices = {f"tono-{i:06d}": "bp"}
        if "DM2" in programmes:
            if rng.random() < 0.5:
                devices[f"glu-{i:06d}"] = "glu"
            else:
                devices[f"hub-{i:06d}"] = "hub"
                meter = "cgm" if rng.random() < 0.3 else "glu"
                devices[f"AA:BB:{i >> 24 & 0xFF:02X}:{i >> 16 & 0xFF:02X}:{i >> 8 & 0xFF:02X}:{i & 0xFF:02X}"] = meter
        return Patient(id=f"P{i:06d}", programmes=programmes, baseline_sys=rng.gauss(138, 12),
                       baseline_glu=rng.gauss(7.5, 1.2), devices=devices)

    def registry(self) -> tuple[list[tuple[str, tuple[str, ...]]], list[tuple[str, str]], list[tuple[str, str]]]:
        """(patients (id, programmes), devices (id, kind), bindings (device, patient)); hubs
        are devices without a binding (the meters behind them are bound)."""
        patients = [(p.id, p.programmes) for p in self.patients]
        devices = [(d, kind) for p in self.patients for d, kind in p.devices.items()]
        bindings = [(d, p.id) for p in self.patients for d, kind in p.devices.items() if kind != "hub"]
        return patients, devices, bindings

    def messages(self) -> Iterator[tuple[str, bytes]]:
        """Every message of the window, in publication-time order."""
        streams = [self._patient_messages(p) for p in self.patients]
        for _, topic, payload in heapq.merge(*streams, key=lambda m: m[0]):
            self.counts.messages += 1
            if self._rng.random() < self.bad_share:
                self.counts.bad += 1
                yield topic, self._spoiled(topic, payload)
            else:
                yield topic, payload

    def _spoiled(self, topic: str, payload: bytes) -> bytes:
        """A bad payload: truncated msgpack, or JSON with a NaN literal."""
        if topic.endswith("/m") and self._rng.random() < 0.5:
            return b'{"seq": 1, "t": 1, "type": "bp", "sys": NaN, "dia": 80}'
        return payload[: max(1, len(payload) // 2)]

    def _patient_messages(self, p: Patient) -> Iterator[tuple[int, str, bytes]]:
        out: list[tuple[int, str, bytes]] = []
        for device, kind in p.devices.items():
            if kind == "bp":
                out += self._tonometer(p, device)
            elif kind == "glu" and not device.startswith("AA:"):
                out += self._glucometer(p, device)
        hub = next((d for d, k in p.devices.items() if k == "hub"), None)
        if hub is not None:
            meter, meter_kind = next((d, k) for d, k in p.devices.items() if d.startswith("AA:"))
            out += self._hub(p, hub, meter, meter_kind)
        out.sort(key=lambda m: m[0])
        return iter(out)

    def _sessions(self, hours: tuple[float, ...]) -> Iterator[int]:
        """Measurement times (ms UTC) at the given local hours of every day, jittered."""
        first_day = (self.start_ms + TZ_MIN * MINUTE_MS) // DAY_MS
        last_day = (self.end_ms + TZ_MIN * MINUTE_MS) // DAY_MS
        for day in range(first_day, last_day + 1):
            for hour in hours:
                t = day * DAY_MS + int((hour + self._rng.gauss(0, 0.3)) * 60 * MINUTE_MS) - TZ_MIN * MINUTE_MS
                if self.start_ms <= t < self.end_ms:
                    yield t

    def _published_at(self, t: int) -> int:
        if self._rng.random() < self.late_share:
            self.counts.late += 1
            return t + DAY_MS + 3_600_000
        return t + self._rng.randint(1_000, 120_000)

    def _tonometer(self, p: Patient, device: str) -> list[tuple[int, str, bytes]]:
        rng, out, seq = self._rng, [], 0
        for t in self._sessions((7.5, 20.5)):
            morning = 6.0 if ((t // MINUTE_MS + TZ_MIN) % 1440) < 720 else 0.0
            maps = []
            for k in range(2):
                sys_ = p.baseline_sys + morning + rng.gauss(0, 8)
                if rng.random() < 0.005:
                    sys_ = rng.uniform(182, 210)
                dia = min(sys_ - 25, 0.55 * sys_ + rng.gauss(8, 5))
                maps.append({"seq": seq, "t": t + k * 120_000, "type": "bp", "sys": round(sys_), "dia": round(dia),
                             "pul": round(rng.gauss(72, 9)), "bat": 80})
                seq += 1
            self.counts.readings += 2
            out.append((self._published_at(t), f"pmp/v1/dev/{device}/m", msgpack.packb(maps)))
        return out

    def _glucometer(self, p: Patient, device: str) -> list[tuple[int, str, bytes]]:
        rng, out = self._rng, []
        for seq, t in enumerate(self._sessions((7.0, 13.0, 19.0))):
            glu: float | str = round(max(1.5, rng.gauss(p.baseline_glu, 1.5)), 1)
            if rng.random() < 0.01:
                glu = round(rng.uniform(2.2, 3.4), 1)
            if rng.random() < 0.002:
                glu = "LO"
            reading = {"seq": seq, "t": t, "type": "glu", "glu": glu, "meal": "pre"}
            self.counts.readings += 1
            out.append((self._published_at(t), f"pmp/v1/dev/{device}/m", msgpack.packb(reading)))
        return out

    def _hub(self, p: Patient, hub: str, meter: str, kind: str) -> list[tuple[int, str, bytes]]:
        records = self._cgm_records(p, meter) if kind == "cgm" else self._ble_glucose_records(p, meter)
        out, sent, hseq = [], [], 0
        for t, group in records:
            hseq += 1
            out.append((t + 5_000, f"pmp/v1/hub/{hub}/gatt", msgpack.packb([dict(r, hseq=hseq) for r in group])))
            sent += group
            self.counts.gatt_records += len(group)
            if self._rng.random() < self.resend_share / 24:
                hseq += 1
                dump = [dict(r, hseq=hseq) for r in sent[-96:]]
                self.counts.resent += len(dump)
                out.append((t + 6_000, f"pmp/v1/hub/{hub}/gatt", msgpack.packb(dump)))
        return out

    def _ble_glucose_records(self, p: Patient, meter: str) -> list[tuple[int, list[dict]]]:
        rng, out = self._rng, []
        for seq, t in enumerate(self._sessions((7.0, 13.0, 19.0))):
            local = datetime.datetime.fromtimestamp((t + TZ_MIN * MINUTE_MS) / 1000, datetime.timezone.utc)
            mg_dl = max(30.0, rng.gauss(p.baseline_glu, 1.5) * 18.016)
            value = enc.glucose(seq & 0xFFFF, local.replace(tzinfo=None, microsecond=0),
                                concentration_raw=enc.sfloat(round(mg_dl) * 1e-5, -5), context_follows=True)
            context = enc.glucose_context(seq & 0xFFFF, meal=1)
            base = {"dev": meter, "rx": t + 4_000, "tz": TZ_MIN}
            out.append((t, [dict(base, uuid=0x2A18, val=value), dict(base, uuid=0x2A34, val=context)]))
        return out

    def _cgm_records(self, p: Patient, meter: str) -> list[tuple[int, list[dict]]]:
        rng, out = self._rng, []
        session_start = self.start_ms - self.start_ms % DAY_MS
        level, group = p.baseline_glu * 18.016, []
        for t in range(self.start_ms - self.start_ms % (5 * MINUTE_MS), self.end_ms, 5 * MINUTE_MS):
            if t < self.start_ms:
                continue
            level = min(400.0, max(40.0, level + rng.gauss(0, 4) + (p.baseline_glu * 18.016 - level) * 0.05))
            offset = (t - session_start) // MINUTE_MS
            record = enc.cgm_record(enc.sfloat(round(level)), offset & 0xFFFF, quality_raw=enc.sfloat(95), crc=True)
            group.append({"dev": meter, "uuid": 0x2AA7, "val": record, "rx": t + 4_000, "tz": TZ_MIN,
                          "cgm_start": session_start})
            if len(group) == 3:
                out.append((t, group))
                group = []
        return out
