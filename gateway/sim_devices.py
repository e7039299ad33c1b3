"""Simulated devices on the wire: each device and hub of a fleet connects with its own
broker account, as the real ones do (DESIGN.md "Topics", README "Broker accounts").

Each publisher connects with MQTT 5 (user name = client id = its id), subscribes to its
ack topic, publishes its messages at QoS 1 and checks each PUBACK: MQTT 5 says why a
publish was refused (reason 135, Not authorized, for a topic its ACL does not allow),
where MQTT 3.1.1 would have acked it silently. Then it waits for the gateway's ack
(``{"seq": N}`` / ``{"hseq": N}``) to cover what it sent. A connection refused for its
credentials is retried for ``connect_timeout_s``: a running gateway hands accounts just
issued to its broker within a second.
"""

from __future__ import annotations

import collections
import concurrent.futures
import dataclasses
import json
import threading
import time
from collections.abc import Callable, Iterable, Iterator

import msgpack
import paho.mqtt.client as paho

NOT_AUTHORIZED = 135  # MQTT 5 reason code: the broker refused a publish (ACL) or a connection
ACK_KEYS = {"m": "seq", "gatt": "hseq"}  # last topic level -> the counter the gateway acks


@dataclasses.dataclass
class FleetOutcome:
    """What the broker and the gateway said to the fleet."""

    published: int = 0  # messages the broker accepted (PUBACK success)
    denied: int = 0  # messages the broker refused with reason 135 (not authorized)
    failed: int = 0  # messages refused for another reason, or never acknowledged
    refused: list[str] = dataclasses.field(default_factory=list)  # publishers whose connection was refused
    gateway_acked: int = 0  # publishers the gateway acked up to their last counter
    ack_pending: list[str] = dataclasses.field(default_factory=list)  # ... and those it did not, in time
    no_ack_expected: int = 0  # publishers with a payload not decodable (no counter to wait for)


class _Pacer:
    """At most ``rate`` messages/s over all threads (None: no limit)."""

    def __init__(self, rate: float | None) -> None:
        self._interval = 1.0 / rate if rate else 0.0
        self._next = time.monotonic()
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self._interval:
            return
        with self._lock:
            slot, self._next = self._next, max(self._next, time.monotonic()) + self._interval
        time.sleep(max(0.0, slot - time.monotonic()))


def expected_ack(topic: str, payloads: Iterable[bytes]) -> int | None:
    """The highest counter (seq or hseq) in a publisher's payloads, which the gateway's ack
    must reach; None when one payload is not strict msgpack or JSON (its counters are
    unknown, so the gateway cannot ack past it) or holds no counter."""
    key = ACK_KEYS[topic.rsplit("/", 1)[1]]
    highest = None
    for payload in payloads:
        try:
            items = (json.loads(payload, parse_constant=_no_constant) if payload[:1] in (b"{", b"[")
                     else msgpack.unpackb(payload))
        except ValueError:
            return None
        for item in items if isinstance(items, list) else [items]:
            counter = item.get(key) if isinstance(item, dict) else None
            if isinstance(counter, int) and (highest is None or counter > highest):
                highest = counter
    return highest


def _no_constant(name: str) -> None:
    raise ValueError(f"JSON constant {name}")


class _Publisher:
    """One device or hub: its connection, PUBACK reasons and the gateway's ack."""

    def __init__(self, address: tuple[str, int], publisher: str, password: str, ack_topic: str) -> None:
        self.acked = -1
        self.connack: paho.ReasonCode | None = None
        self.reasons: dict[int, int] = {}
        self.changed = threading.Condition()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=publisher, protocol=paho.MQTTv5)
        self.client.username_pw_set(publisher, password)
        self.client.max_inflight_messages_set(100)
        self.client.on_connect = self._on_connect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_ack
        self.address, self.ack_topic = address, ack_topic

    def _on_connect(self, client, userdata, flags, reason, properties) -> None:
        if not reason.is_failure:
            client.subscribe(self.ack_topic, qos=1)
        with self.changed:
            self.connack = reason
            self.changed.notify_all()

    def _on_publish(self, client, userdata, mid, reason, properties) -> None:
        with self.changed:
            self.reasons[mid] = reason.value
            self.changed.notify_all()

    def _on_ack(self, client, userdata, message) -> None:
        try:
            counter = next(iter(json.loads(message.payload).values()))
        except (ValueError, StopIteration, AttributeError):
            return
        with self.changed:
            self.acked = max(self.acked, counter)
            self.changed.notify_all()

    def connect(self, timeout_s: float) -> bool:
        """Connect (retrying a refusal until ``timeout_s``); True once the broker accepted."""
        deadline = time.monotonic() + timeout_s
        while True:
            self.connack = None
            self.client.connect(*self.address)
            self.client.loop_start()
            with self.changed:
                self.changed.wait_for(lambda: self.connack is not None, timeout=max(0.0, deadline - time.monotonic()))
            if self.connack is not None and not self.connack.is_failure:
                return True
            self.close()
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.3)

    def wait(self, predicate: Callable[[], bool], timeout_s: float) -> bool:
        with self.changed:
            return self.changed.wait_for(predicate, timeout=timeout_s)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def own_topic(messages: Iterable[tuple[str, bytes]]) -> Iterator[tuple[str, str, bytes]]:
    """(publisher, topic, payload) of (topic, payload): each sent by the device or hub its topic names."""
    for topic, payload in messages:
        yield topic.split("/")[3], topic, payload


def publish_fleet(address: tuple[str, int], messages: Iterable[tuple[str, str, bytes]], passwords: dict[str, str],
                  *, rate: float | None = None, workers: int = 8, connect_timeout_s: float = 15.0,
                  ack_timeout_s: float = 20.0, progress: Callable[[int], None] = lambda sent: None) -> FleetOutcome:
    """Publish ``messages`` (publisher, topic, payload), each publisher logged in as itself
    with ``passwords[publisher]`` and waiting for the ack of its own ack topic (that of the
    route of its first message); ``workers`` publishers at a time, at most ``rate``
    messages/s in all. ``progress(sent)`` is called as messages go out."""
    by_publisher: dict[tuple[str, str], list[tuple[str, bytes]]] = collections.defaultdict(list)
    for publisher, topic, payload in messages:
        by_publisher[(publisher, topic.split("/")[2])].append((topic, payload))
    outcome, lock, pacer, sent = FleetOutcome(), threading.Lock(), _Pacer(rate), [0]

    def run(publisher: str, family: str, items: list[tuple[str, bytes]]) -> None:
        ack_topic = f"pmp/v1/{family}/{publisher}/ack"
        device = _Publisher(address, publisher, passwords.get(publisher, ""), ack_topic)
        if not device.connect(connect_timeout_s):
            with lock:
                outcome.refused.append(publisher)
            return
        try:
            mids = []
            for topic, payload in items:
                pacer.wait()
                mids.append(device.client.publish(topic, payload, qos=1).mid)
                with lock:
                    sent[0] += 1
                    progress(sent[0])
            device.wait(lambda: len(device.reasons) >= len(mids), ack_timeout_s)
            target = expected_ack(items[0][0], (payload for _, payload in items))
            acked = target is not None and device.wait(lambda: device.acked >= target, ack_timeout_s)
            reasons = [device.reasons.get(mid) for mid in mids]
        finally:
            device.close()
        with lock:
            outcome.published += sum(r is not None and r < 128 for r in reasons)
            outcome.denied += sum(r == NOT_AUTHORIZED for r in reasons)
            outcome.failed += sum(r is None or (r >= 128 and r != NOT_AUTHORIZED) for r in reasons)
            if target is None:
                outcome.no_ack_expected += 1
            elif acked:
                outcome.gateway_acked += 1
            else:
                outcome.ack_pending.append(publisher)

    with concurrent.futures.ThreadPoolExecutor(max_workers=workers) as pool:
        for future in [pool.submit(run, publisher, family, items)
                       for (publisher, family), items in by_publisher.items()]:
            future.result()
    return outcome
