"""The simulated fleet: deterministic, registered, and decodable by the core."""

import msgpack

import core.compiled
from gateway.simfleet import DAY_MS, SimulatedFleet

START = 1_764_000_000_000


def fleet(**kw):
    return SimulatedFleet(50, start_ms=START, days=2, seed=7, **kw)


def test_same_seed_same_messages():
    assert list(fleet().messages()) == list(fleet().messages())


def test_registry_covers_every_publisher():
    sim = fleet(bad_share=0.0)
    patients, devices, bindings = sim.registry()
    known = {d for d, _ in devices}
    assert {d for d, _ in bindings} <= known and {p for _, p in bindings} == {p for p, _ in patients}
    for topic, payload in sim.messages():
        assert topic.split("/")[3] in known
        records = msgpack.unpackb(payload)
        for record in records if isinstance(records, list) else [records]:
            assert record.get("dev", topic.split("/")[3]) in known


def test_readings_lie_in_the_window_and_gatt_values_decode():
    sim = fleet(bad_share=0.0, late_share=0.0)
    decoded = 0
    for topic, payload in sim.messages():
        records = msgpack.unpackb(payload)
        for r in records if isinstance(records, list) else [records]:
            if "uuid" in r:
                out, error = core.compiled.gatt_decode(r["uuid"], r["val"], tz_min=r["tz"], cgm_start=r.get("cgm_start"))
                assert error == 0 and len(out) == 1
                decoded += 1
            else:
                assert START <= r["t"] < START + 2 * DAY_MS + 600_000
    assert decoded > 0
    assert sim.counts.readings > 0 and sim.counts.gatt_records > 0


def test_fleet_has_bad_late_and_resent_messages():
    sim = SimulatedFleet(300, start_ms=START, days=2, seed=3)
    list(sim.messages())
    assert sim.counts.bad > 0 and sim.counts.late > 0 and sim.counts.resent > 0
