"""Hostile input against a running gateway (issue 6, "Hostile input").

One in-process gateway (a real Mosquitto, a real SQLite file, as tests/gateway/test_service.py)
takes a stream of random and mutated payloads drawn by hypothesis, with good readings of
three publishers mixed into the same stream: reading maps (msgpack and JSON) and GATT
record maps that are truncated, huge, deeply nested, of wrong types, with booleans as
numbers, NaN / infinity (JSON literals, msgpack floats, SFLOAT specials), negative and
overflowing integers, future and year-2000 times, conflicting re-sends of a seq, invalid
publisher ids in the topic, empty payloads and random bytes.

It found that a glucose context record (0x2A34) skipped the FUTURE / STALE checks: one whose
hub ``rx`` was 0 was stored at 1970 (fixed in core/validate.py and its twin; regression test
in tests/core/test_validate.py).

``PMP_HOSTILE_EXAMPLES`` sets the number of hypothesis examples (default 100, each one
message group and one round trip through the gateway).
"""

from __future__ import annotations

import datetime
import json
import math
import os
import time

import msgpack
import paho.mqtt.client as paho
import pytest
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from adapters import gatt_encode as enc
from adapters.mqtt import LinkSettings, MqttLink
from gateway.service import Gateway, ServiceSettings
from gateway.store import Store

pytestmark = pytest.mark.trio

EXAMPLES = int(os.environ.get("PMP_HOSTILE_EXAMPLES", "100"))
WAIT_S = 15.0  # longest wait for one ack: the gateway is taken for stopped beyond it

MIN_ = 60_000
YEAR_2015_MS = 1_420_070_400_000
REASONS = {"DECODE", "SCHEMA", "TOPIC", "RANGE", "NOTNUM", "FUTURE", "STALE", "UNBOUND", "CONFLICT"}

# The good publishers: nothing hostile is ever sent on their topics or names them.
GOOD_BP, GOOD_GLU, GOOD_HUB, GOOD_METER = "tono-good", "glu-good", "hub-good", "00:00:00:00:00:01"
# Hostile input goes to bound devices (so it reaches validation), an unbound one and bad ids.
BOUND_BP, BOUND_GLU, BOUND_BP_METER, BOUND_GLU_METER = "tono-1", "glu-1", "AA:BB:CC:DD:EE:01", "AA:BB:CC:DD:EE:02"
BAD_IDS = ["x" * 65, "bad id", "bad*id", "m\u00fcter", "a:b", ""]
HOSTILE_DEVICES = [BOUND_BP, BOUND_GLU, "stranger-1"] + BAD_IDS
HOSTILE_HUBS = ["hub-1"] + BAD_IDS
HOSTILE_METERS = [BOUND_BP_METER, BOUND_GLU_METER, "AA:BB:CC:DD:EE:99", "aa:bb:cc:dd:ee:01", "AA-BB-CC-DD-EE-01",
                  "", 17, None]


def now_ms() -> int:
    return int(time.time() * 1000)


def utc_naive(seconds: int) -> datetime.datetime:
    """The UTC date and time of ``seconds`` since the epoch, as a meter with tz 0 sends it."""
    return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc).replace(tzinfo=None)


NOW = now_ms()
TIMES = [NOW + 3_600_000, NOW + 10 * MIN_, 946_684_800_000, YEAR_2015_MS - 1, NOW - 401 * 86_400_000, 0, -1,
         2**63 - 1, -(2**63), 2**64, NOW - MIN_]

# --- values and maps ---------------------------------------------------------------------

hostile_values = st.one_of(
    st.none(), st.booleans(), st.sampled_from([math.nan, math.inf, -math.inf, -0.0, 1e308, 5e-324]),
    st.floats(), st.integers(-(2**70), 2**70), st.sampled_from([-1, 0, 2**16, 2**32, 2**63, 2**64 - 1, -(2**63)]),
    st.sampled_from(TIMES), st.text(max_size=8), st.text(min_size=257, max_size=300), st.binary(max_size=16),
    st.sampled_from(["LO", "HI", "bp", "glu", "cgm", "kPa", "mg/dL", "pre", "control"]),
    st.lists(st.integers(), max_size=3), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2),
    st.recursive(st.integers(), lambda inner: st.lists(inner, min_size=1, max_size=1), max_leaves=40),
)
map_keys = st.one_of(st.sampled_from(["seq", "t", "type", "sys", "dia", "map", "pul", "glu", "u", "meal", "src", "st",
                                      "user", "trend", "bat"]), st.text(max_size=6))


@st.composite
def reading_maps(draw) -> dict:
    """A plausible reading map of a random kind with zero to three keys changed or dropped."""
    kind = draw(st.sampled_from(["bp", "glu", "cgm"]))
    m: dict = {"seq": draw(st.integers(0, 50)), "t": NOW - draw(st.integers(1, 600)) * MIN_, "type": kind}
    if kind == "bp":
        m |= {"sys": draw(st.integers(90, 180)), "dia": draw(st.integers(50, 85)), "pul": draw(st.integers(40, 120))}
    else:
        m |= {"glu": draw(st.sampled_from([5.5, 12.0, "LO", "HI"]))}
    if kind == "cgm":
        del m["seq"]
    for _ in range(draw(st.integers(0, 3))):
        if draw(st.booleans()) and m:
            del m[draw(st.sampled_from(sorted(m)))]
        else:
            m[draw(map_keys)] = draw(hostile_values)
    return m


edge_numbers = st.one_of(
    st.sampled_from([math.nan, math.inf, -math.inf, True, False, 0, -1, 19.9, 39.9, 0.4, 40.1, 200.5, 250.5, 300.1,
                     -(2**63), 2**64 - 1, 2**64]), st.floats(-1e6, 1e6), st.integers(-(2**40), 2**40))


@st.composite
def edge_maps(draw) -> dict:
    """A well-formed reading map with one value at or past its limit: implausible, NaN,
    infinite, boolean, overflowing, in another unit, or a time in the future or before 2015."""
    kind = draw(st.sampled_from(["bp", "glu", "cgm"]))
    m = {"seq": draw(st.integers(100, 150)), "t": NOW - draw(st.integers(1, 600)) * MIN_, "type": kind}
    m |= {"sys": 130, "dia": 85, "pul": 70} if kind == "bp" else {"glu": 6.5}
    if kind == "cgm":
        del m["seq"]
    key = draw(st.sampled_from(sorted(set(m) - {"type"}) + ["map", "trend", "bat", "u"]))
    m[key] = (draw(st.sampled_from(["kPa", "mg/dL", "mmol/L", "mmHg"])) if key == "u" else
              draw(st.sampled_from(TIMES)) if key == "t" else draw(edge_numbers))
    return m


def encode(obj, fmt: str) -> bytes:
    """``obj`` as msgpack or JSON; what one format cannot hold goes out in the other (msgpack
    has no integer beyond 64 bits, JSON no bytes: those are sent as hex text)."""
    if fmt == "msgpack":
        try:
            return msgpack.packb(obj)
        except (OverflowError, ValueError, TypeError):
            pass
    return json.dumps(obj, default=lambda b: b.hex()).encode()


# --- GATT values and records -------------------------------------------------------------

SFLOAT_SPECIALS = [enc.SFLOAT_NAN, enc.SFLOAT_NRES, enc.SFLOAT_PLUS_INF, enc.SFLOAT_MINUS_INF, 0x0801]
sfloats = st.one_of(st.sampled_from(SFLOAT_SPECIALS), st.integers(0, 0xFFFF),
                    st.sampled_from([enc.sfloat(120), enc.sfloat(80), enc.sfloat(70), enc.sfloat(0), enc.sfloat(400)]))
dates = st.one_of(st.sampled_from([datetime.datetime(2000, 1, 1), datetime.datetime(2014, 12, 31, 23, 59)]),
                  st.datetimes(min_value=datetime.datetime(1582, 1, 1), max_value=datetime.datetime(9999, 1, 1)),
                  st.just(utc_naive(NOW // 1000 - 600)))


@st.composite
def gatt_values(draw) -> tuple[int, bytes]:
    """(uuid, value): an encoded characteristic with hostile fields, truncated, garbled or random."""
    choice = draw(st.sampled_from(["bp", "glu", "context", "cgm", "random", "bad date"]))
    if choice == "bp":
        uuid = 0x2A35
        value = enc.blood_pressure(draw(sfloats), draw(sfloats), draw(sfloats), kpa=draw(st.booleans()),
                                   when=draw(st.none() | dates), pulse_raw=draw(st.none() | sfloats),
                                   status=draw(st.none() | st.integers(0, 0xFFFF)))
    elif choice == "glu":
        uuid = 0x2A18
        value = enc.glucose(draw(st.integers(0, 0xFFFF)), draw(dates),
                            offset_min=draw(st.none() | st.integers(-(2**15), 2**15 - 1)),
                            concentration_raw=draw(st.none() | sfloats), mol_per_l=draw(st.booleans()),
                            status=draw(st.none() | st.integers(0, 0xFFFF)))
    elif choice == "context":
        uuid = 0x2A34
        value = enc.glucose_context(draw(st.integers(0, 0xFFFF)), meal=draw(st.none() | st.integers(0, 255)))
    elif choice == "cgm":
        uuid = 0x2AA7
        value = b"".join(enc.cgm_record(draw(sfloats), draw(st.integers(0, 0xFFFF)), crc=draw(st.booleans()),
                                        trend_raw=draw(st.none() | sfloats),
                                        status=draw(st.none() | st.integers(0, 255)))
                         for _ in range(draw(st.integers(1, 3))))
    elif choice == "random":
        return draw(st.integers(0, 0xFFFF)), draw(st.binary(max_size=40))
    else:  # month 13 or hour 24 (impossible: DECODE), month 0 ("not known": the hub's rx)
        uuid = 0x2A35
        value = enc.blood_pressure(enc.sfloat(120), enc.sfloat(80), enc.sfloat(93), when=datetime.datetime(2020, 1, 1))
        month, hour = draw(st.sampled_from([(0, 10), (13, 10), (6, 24)]))
        value = value[:9] + bytes([month, 1, hour]) + value[12:]  # flags, 3 SFLOATs, year; month day hour
    if draw(st.booleans()):
        value = value[: draw(st.integers(0, len(value)))]  # truncated (possibly to nothing)
    return uuid, value


@st.composite
def gatt_records(draw) -> dict:
    """A GATT record map naming a hostile meter, with zero to two keys changed or dropped."""
    uuid, value = draw(gatt_values())
    record: dict = {"dev": draw(st.sampled_from(HOSTILE_METERS)), "uuid": uuid, "val": value,
                    "rx": draw(st.sampled_from([NOW, 0, NOW + 3_600_000, 2**63 - 1])),
                    "tz": draw(st.integers(-900, 900) | st.sampled_from([-(2**15), 2**15 - 1])),
                    "hseq": draw(st.integers(0, 1000))}
    if uuid == 0x2AA7:
        record["cgm_start"] = draw(st.sampled_from([NOW - 3_600_000, -(2**63), 2**63 - 1, 2**63 - 2**40, 0]))
    for _ in range(draw(st.integers(0, 2))):
        if draw(st.booleans()):
            record.pop(draw(st.sampled_from(sorted(record))), None)
        else:
            record[draw(st.sampled_from(["dev", "uuid", "val", "rx", "tz", "cgm_start", "hseq", "x"]))] = draw(
                hostile_values)
    return record


# --- whole messages ----------------------------------------------------------------------

class Octets(bytes):
    """A payload whose repr stays short (hypothesis prints the examples it reports)."""

    def __repr__(self) -> str:
        return f"Octets({len(self)} octets: {bytes(self[:32])!r}...)"


ONE = {"seq": 1, "t": NOW - MIN_, "type": "bp", "sys": 120, "dia": 80}
# Over the 256 KiB limit or the element count, and nested past every parser's depth limit.
HUGE = [Octets(payload) for payload in (
    json.dumps([ONE] * 3500).encode(), msgpack.packb([ONE] * 1001), msgpack.packb(ONE) + b"\x00" * (256 * 1024),
    b"{" + b" " * (256 * 1024) + b"}", b"[" * 100_000 + b"]" * 100_000, b"\x91" * 100_000 + b"\xc0")]
NESTED = json.dumps(ONE | {"pul": json.loads("[" * 50 + "1" + "]" * 50)}).encode()
LITERALS = [NESTED, b'{"seq": 7, "t": %d, "type": "bp", "sys": NaN, "dia": 80}' % NOW,
            b'[{"seq": 8, "t": %d, "type": "glu", "glu": Infinity}, {"seq": 9, "t": %d, "type": "glu", "glu": 6.1}]'
            % (NOW - MIN_, NOW - MIN_),
            b'{"seq": 10, "seq": 11, "t": %d, "type": "bp", "sys": 120, "dia": 80}' % NOW,
            b'{"seq": 12, "t": %d, "type": "bp", "sys": true, "dia": 80}' % NOW,
            b"", b"[]", b"{", b"null", b"\xc1not msgpack"]


def reading_topic(device: str) -> str:
    return f"pmp/v1/dev/{device}/m"


def gatt_topic(hub: str) -> str:
    return f"pmp/v1/hub/{hub}/gatt"


# One message per reason of DESIGN.md's table, sent at the end of every run.
EVERY_REASON = [
    (reading_topic(BOUND_BP), b"\xc1"),  # DECODE
    (reading_topic(BOUND_BP), msgpack.packb({"seq": 20_000, "t": NOW - MIN_, "type": "bp", "sys": 120})),  # SCHEMA
    (reading_topic("x" * 65), msgpack.packb(ONE)),  # TOPIC
    (reading_topic(BOUND_BP), msgpack.packb(ONE | {"seq": 20_001, "sys": 301})),  # RANGE
    (reading_topic(BOUND_BP), msgpack.packb(ONE | {"seq": 20_002, "sys": math.nan})),  # NOTNUM
    (reading_topic(BOUND_BP), msgpack.packb(ONE | {"seq": 20_003, "t": NOW + 3_600_000})),  # FUTURE
    (reading_topic(BOUND_BP), msgpack.packb(ONE | {"seq": 20_004, "t": 946_684_800_000})),  # STALE
    (reading_topic("stranger-2"), msgpack.packb(ONE)),  # UNBOUND
    (reading_topic(BOUND_BP), msgpack.packb(ONE | {"seq": 20_005})),
    (reading_topic(BOUND_BP), msgpack.packb(ONE | {"seq": 20_005, "sys": 121})),  # CONFLICT
]


@st.composite
def conflicts(draw) -> list[tuple[str, bytes]]:
    """The same device and seq twice with different values (the second is CONFLICT, or both
    are DUPLICATE / CONFLICT of an earlier example)."""
    seq = draw(st.integers(10_000, 10_050))
    first = {"seq": seq, "t": NOW - 5 * MIN_, "type": "bp", "sys": 130, "dia": 85}
    return [(reading_topic(BOUND_BP), msgpack.packb(m)) for m in (first, first | {"sys": draw(st.integers(131, 200))})]


hostile_messages = st.one_of(
    st.builds(lambda d, m, f: [(reading_topic(d), encode(m, f))], st.sampled_from(HOSTILE_DEVICES), reading_maps(),
              st.sampled_from(["msgpack", "json"])),
    st.builds(lambda d, m, f: [(reading_topic(d), encode(m, f))], st.sampled_from([BOUND_BP, BOUND_GLU]), edge_maps(),
              st.sampled_from(["msgpack", "json"])),
    st.builds(lambda d, ms, f: [(reading_topic(d), encode(ms, f))], st.sampled_from(HOSTILE_DEVICES),
              st.lists(reading_maps(), min_size=1, max_size=5), st.sampled_from(["msgpack", "json"])),
    st.builds(lambda d, m, f, cut: [(reading_topic(d), encode(m, f)[:cut])], st.sampled_from(HOSTILE_DEVICES),
              reading_maps(), st.sampled_from(["msgpack", "json"]), st.integers(0, 60)),
    st.builds(lambda h, rs, one: [(gatt_topic(h), encode(rs[0] if one else rs, "msgpack"))],
              st.sampled_from(HOSTILE_HUBS), st.lists(gatt_records(), min_size=1, max_size=4), st.booleans()),
    st.builds(lambda h, r: [(gatt_topic(h), encode(r, "json"))], st.sampled_from(HOSTILE_HUBS), gatt_records()),
    st.builds(lambda d, p: [(d, p)], st.sampled_from([reading_topic(BOUND_BP), gatt_topic("hub-1")]),
              st.sampled_from(range(len(HUGE))).map(HUGE.__getitem__) | st.sampled_from(LITERALS)
              | st.binary(max_size=64)),
    conflicts(),
)


class Watcher:
    """A subscriber recording the gateway's acks (paho's thread appends, the test reads)."""

    def __init__(self, port: int) -> None:
        self.acks: set[tuple[str, str]] = set()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"watch-{time.time_ns()}",
                                  protocol=paho.MQTTv5)
        self.client.on_message = lambda c, u, m: self.acks.add((m.topic, m.payload.decode()))
        self.client.connect("127.0.0.1", port)
        self.client.subscribe("pmp/v1/+/+/ack", qos=1)
        self.client.loop_start()

    def wait(self, expected: set[tuple[str, str]]) -> None:
        """Return once every ``(topic, payload)`` ack in ``expected`` came; fail after WAIT_S."""
        deadline = time.monotonic() + WAIT_S
        while not expected <= self.acks:
            assert time.monotonic() < deadline, f"gateway stopped acking: missing {expected - self.acks}"
            time.sleep(0.005)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class Publisher:
    """One MQTT connection publishing the whole stream in order (QoS 1)."""

    def __init__(self, port: int) -> None:
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=f"pub-{time.time_ns()}",
                                  protocol=paho.MQTTv5)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.published: set[tuple[str, bytes]] = set()

    def send(self, messages: list[tuple[str, bytes]]) -> None:
        for info in [self.client.publish(topic, payload, qos=1) for topic, payload in messages]:
            info.wait_for_publish(WAIT_S)
            assert info.is_published()
        self.published.update((topic, bytes(payload)) for topic, payload in messages)

    def stop(self) -> None:
        self.client.loop_stop()
        self.client.disconnect()


class GoodStream:
    """The good readings: a bp reading map (msgpack), a glucose one (JSON) and a GATT blood
    pressure record, each example; remembers what it sent and the acks that prove it stored."""

    def __init__(self) -> None:
        self.n = 0
        self.bp: dict[int, tuple] = {}  # seq -> (t, sys, dia, pul)
        self.glu: dict[int, tuple] = {}  # seq -> (t, glu)
        self.gatt: dict[int, tuple] = {}  # t -> (sys, dia, pul)

    def next(self, sys_: int, dia: int, pul: int, glu: float) -> tuple[list[tuple[str, bytes]], set]:
        n, self.n = self.n, self.n + 1
        t = NOW - 10 * MIN_ - n * 1000
        when = utc_naive((NOW - n * MIN_) // 1000 - 120)
        self.bp[n] = (t, sys_, dia, pul)
        self.glu[n] = (t, glu)
        self.gatt[int(when.replace(tzinfo=datetime.timezone.utc).timestamp() * 1000)] = (sys_, dia, pul)
        value = enc.blood_pressure(enc.sfloat(sys_), enc.sfloat(dia), enc.sfloat((sys_ + 2 * dia) // 3), when=when,
                                   pulse_raw=enc.sfloat(pul))
        messages = [(reading_topic(GOOD_BP), msgpack.packb({"seq": n, "t": t, "type": "bp", "sys": sys_, "dia": dia,
                                                            "pul": pul})),
                    (reading_topic(GOOD_GLU), json.dumps({"seq": n, "t": t, "type": "glu", "glu": glu}).encode()),
                    (gatt_topic(GOOD_HUB), msgpack.packb({"dev": GOOD_METER, "uuid": 0x2A35, "val": value,
                                                          "rx": now_ms(), "tz": 0, "hseq": n}))]
        acks = {(f"pmp/v1/dev/{GOOD_BP}/ack", json.dumps({"seq": n})), (f"pmp/v1/dev/{GOOD_GLU}/ack",
                                                                       json.dumps({"seq": n})),
                (f"pmp/v1/hub/{GOOD_HUB}/ack", json.dumps({"hseq": n}))}
        return messages, acks


@pytest.fixture
def store(tmp_path):
    """A SQLite file with one patient and the good and hostile devices bound to it."""
    with Store.open(tmp_path / "pmp.db") as opened:
        opened.add_patient("P1", programmes=("AH", "DM2"), tz="UTC")
        for device, kind in [(GOOD_BP, "bp"), (GOOD_GLU, "glu"), (GOOD_METER, "bp"), (BOUND_BP, "bp"),
                             (BOUND_GLU, "glu"), (BOUND_BP_METER, "bp"), (BOUND_GLU_METER, "glu")]:
            opened.add_device(device, kind)
            opened.bind(device, "P1", 0)
        yield opened


async def serve(broker, store, body) -> None:
    """Run a gateway on ``broker`` and ``store`` while ``body()`` runs, then drain it."""
    link = MqttLink(LinkSettings(host="127.0.0.1", port=broker.port, client_id="pmpgw-test",
                                 state_topic="pmp/v1/gateway/test/state"))
    gateway = Gateway(store, link, ServiceSettings(gw_id="test", stats_interval_s=0.5))
    async with trio.open_nursery() as nursery:
        await nursery.start(gateway.run)
        await body()
        gateway.drain()


def assert_plausible(reading: dict, latest_ms: int) -> None:
    """A stored reading has no NaN, no value outside DESIGN.md's plausible ranges, and a
    time in [2015, gateway time + 5 min] and not older than 400 days."""
    numbers = [reading[k] for k in ("sys", "dia", "map", "pul", "glu", "trend", "battery")]
    assert all(x is None or math.isfinite(x) for x in numbers), reading
    assert max(YEAR_2015_MS, NOW - 400 * 86_400_000 - 60_000) <= reading["t"] <= latest_ms + 5 * MIN_, reading
    if reading["type"] == "bp":
        assert 40 <= reading["sys"] <= 300 and 20 <= reading["dia"] <= 200 and reading["sys"] > reading["dia"], reading
        assert reading["pul"] is None or 20 <= reading["pul"] <= 250, reading
    elif reading["type"] in ("glu", "cgm"):
        assert (reading["glu"] is None) == (reading["range"] is not None), reading
        assert reading["glu"] is None or 0.5 <= reading["glu"] <= 40, reading
    else:
        assert reading["type"] == "glu_context" and reading["glu"] is None, reading


async def test_hostile_stream_never_stops_the_gateway_and_loses_nothing(broker, store):
    """Random and mutated payloads mixed with good readings: every good reading is acked and
    stored exactly once with its values, nothing implausible is stored, and every row that
    arrived is counted exactly once (received = stored + duplicate + quarantined) with a
    reason of DESIGN.md's table; each quarantine row keeps its reason and raw payload."""
    good = GoodStream()
    watcher = Watcher(broker.port)
    publisher = Publisher(broker.port)

    @settings(max_examples=EXAMPLES, database=None, suppress_health_check=list(HealthCheck))
    @given(hostile=st.lists(hostile_messages, min_size=1, max_size=6).map(lambda groups: sum(groups, [])),
           at=st.integers(0, 100), sys_=st.integers(100, 180), dia=st.integers(50, 95), pul=st.integers(45, 120),
           glu=st.integers(30, 250).map(lambda x: x / 10))
    def one_example(hostile, at, sys_, dia, pul, glu):
        messages, acks = good.next(sys_, dia, pul, glu)
        at %= len(hostile) + 1
        publisher.send(hostile[:at] + messages + hostile[at:])
        watcher.wait(acks)

    async def body():
        await trio.to_thread.run_sync(one_example)
        messages, acks = good.next(120, 80, 70, 5.5)  # after every hostile message: all of them committed
        await trio.to_thread.run_sync(publisher.send, EVERY_REASON + messages)
        await trio.to_thread.run_sync(watcher.wait, acks)

    await serve(broker, store, body)
    publisher.stop()
    watcher.stop()
    assert good.n > min(EXAMPLES, 5)

    counters = store.counters()
    quarantined = counters["quarantined"]
    assert counters["received"] >= len(publisher.published)  # every message gave at least one row
    assert counters["received"] == counters["stored"] + counters["duplicate"] + sum(quarantined.values())
    assert set(quarantined) == REASONS, quarantined
    rows = store.quarantine(limit=10**6)
    assert len(rows) == sum(quarantined.values())
    assert all(row["reason"] in REASONS and (row["topic"], row["payload"]) in publisher.published for row in rows)
    assert {row["reason"] for row in rows} == {reason for reason, n in quarantined.items() if n}

    readings = store.readings(limit=10**6)
    latest = now_ms()
    for reading in readings:
        assert_plausible(reading, latest)
    by_device: dict[str, list[dict]] = {}
    for reading in readings:
        by_device.setdefault(reading["device"], []).append(reading)
    bp = {r["seq"]: (r["t"], r["sys"], r["dia"], r["pul"]) for r in by_device[GOOD_BP]}
    assert len(by_device[GOOD_BP]) == len(bp) and bp == good.bp
    glu = {r["seq"]: (r["t"], r["glu"]) for r in by_device[GOOD_GLU]}
    assert len(by_device[GOOD_GLU]) == len(glu) and glu == good.glu
    gatt = {r["t"]: (r["sys"], r["dia"], r["pul"]) for r in by_device[GOOD_METER]}
    assert len(by_device[GOOD_METER]) == len(gatt) and gatt == good.gatt
