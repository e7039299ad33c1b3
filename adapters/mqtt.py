"""paho-mqtt driven by trio on its own socket: QoS 1 in, manual ack after commit.

The shape of paho's ``examples/loop_trio.py``: one task waits for the socket to be readable
and calls ``loop_read``, one writes when paho asks (``on_socket_register_write``), one
calls ``loop_misc`` every second for keep-alive; there is no paho thread. Callbacks only
append to the inbox and return.

Guarantees (DESIGN.md "Data flow"):

- **Persistent session**: a fixed client id, MQTT 5 ``clean_start=False`` and a Session
  Expiry Interval, so the broker keeps the subscriptions and queues while the gateway is
  away or restarting.
- **Manual ack**: nothing is acknowledged on receipt; ``ack`` sends PUBACK for messages
  the caller has committed. An ack belongs to the connection its message came on: after a
  reconnect, acks of the old connection are dropped (message ids are reused per
  connection) and the broker redelivers those messages; dedup makes that harmless.
- **Backpressure from the protocol**: the broker has at most Receive Maximum un-acked
  messages in flight to us. The broker's window is not exact, so the inbox has a limit too:
  above it the reader pauses, but never longer than ``max_pause_s`` (a fraction of the
  keep-alive), and nothing is ever dropped.
- **State**: Last Will ``offline`` and a retained ``online`` on the state topic.

Three private paho methods are replaced (``_GatewayClient``; paho is pinned to 2.1-2.2 in
pyproject.toml for that reason). Two were a third of the trio thread's time with one
reading a message (py-spy of ``pmpgw run`` under the e2e.ingest_single stream):

- ``_sock_recv``: paho reads a packet with three ``recv`` calls (command octet, length
  octets, the rest); here the socket is read 64 KiB at a time into a buffer that serves
  them (13 % of the samples were those ``recv`` calls);
- acks: ``ack`` queues every PUBACK of a batch as ONE write (paho queues one packet, and
  makes one ``send``, per PUBACK: 7 % of the samples).

The third held memory: ``_handle_on_message`` matches every message against the per-topic
callbacks of ``message_callback_add`` (the link adds none) with a closure that refers to
itself (``MQTTMatcher.iter_match``), six objects of cyclic garbage a message that only the
cyclic collector frees, and the gateway runs that rarely (``gateway.service.GC_THRESHOLDS``):
~180,000 of them piled up between collections in the e2e bench. Here ``on_message`` is
called directly.
"""

from __future__ import annotations

import collections
import dataclasses
import socket
import struct
import time
from collections.abc import Iterable

import paho.mqtt.client as paho
import trio
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from .topics import SUBSCRIPTIONS

BROKER_DROPPED = "$SYS/broker/publish/messages/dropped"
STATE_ONLINE, STATE_OFFLINE = b"online", b"offline"
READS_PER_WAKEUP = 256  # loop_read calls per readable socket before yielding to other tasks
RECV_OCTETS = 65_536  # one socket read fills the receive buffer with up to this much
PUBACK_HEADER = 0x40  # MQTT PUBACK fixed header; remaining length 2: the message id (reason: success)


class _GatewayClient(paho.Client):
    """paho's client with a buffered receive path and batched PUBACKs (module docstring)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self._received = bytearray()

    def buffered(self) -> bool:
        """Whether octets already read from the socket wait to be parsed."""
        return bool(self._received)

    def _sock_recv(self, bufsize: int) -> bytes:
        if not self._received:
            chunk = super()._sock_recv(RECV_OCTETS)  # raises BlockingIOError when nothing waits
            if not chunk:
                return b""  # the broker closed the connection
            self._received += chunk
        out = bytes(self._received[:bufsize])
        del self._received[:bufsize]
        return out

    def _sock_close(self) -> None:
        self._received.clear()  # octets of a closed connection never belong to the next
        super()._sock_close()

    def _handle_on_message(self, message: paho.MQTTMessage) -> None:
        with self._in_callback_mutex:
            self.on_message(self, self._userdata, message)

    def ack_all(self, mids: list[int]) -> None:
        """PUBACK (reason success) every message id of ``mids`` in one queued write."""
        if mids:
            packet = b"".join(struct.pack("!BBH", PUBACK_HEADER, 2, mid) for mid in mids)
            self._packet_queue(PUBACK_HEADER, packet, 0, 0)


@dataclasses.dataclass(frozen=True, slots=True)
class Received:
    """One QoS 1 message as it arrived: ``connection`` numbers the connection it came on,
    ``rx_ms`` is the gateway's clock at arrival (ms UTC)."""

    topic: str
    payload: bytes
    mid: int
    qos: int
    connection: int
    rx_ms: int


@dataclasses.dataclass(frozen=True)
class LinkSettings:
    """Where and how to connect. Times in seconds; ``receive_maximum`` is the MQTT 5 bound
    on un-acked messages in flight to us (the broker's ``max_inflight_messages`` must be at
    least as large for it to matter)."""

    host: str
    port: int
    client_id: str
    state_topic: str
    subscriptions: tuple[str, ...] = SUBSCRIPTIONS
    receive_maximum: int = 1000
    session_expiry_s: int = 7 * 86_400
    keepalive_s: int = 30
    inbox_limit: int = 4000
    reconnect_min_s: float = 0.1
    reconnect_max_s: float = 10.0
    connect_timeout_s: float = 2.0
    username: str | None = None
    password: str | None = None

    @property
    def max_pause_s(self) -> float:
        """Longest the reader may pause for a full inbox: a tenth of the keep-alive."""
        return self.keepalive_s / 10


@dataclasses.dataclass
class LinkStats:
    """Counters for status: messages and acks, connections established (subscribed and
    ``online`` published: attempts that fail only leave their reason in ``last_error``), the
    broker's dropped count."""

    connected: bool = False
    connections: int = 0
    received: int = 0
    acked: int = 0
    stale_acks: int = 0
    paused_reads: int = 0
    broker_dropped: int | None = None
    last_error: str = ""


class MqttLink:
    """One MQTT 5 connection of the gateway, kept up by ``run`` with backoff."""

    def __init__(self, settings: LinkSettings) -> None:
        self.settings = settings
        self.stats = LinkStats()
        self._inbox: collections.deque[Received] = collections.deque()
        self._inbox_bytes = 0  # payload octets in the inbox
        self._arrived = trio.Event()
        self._taken = trio.Event()
        self._closing = False
        self._connection = 0
        self._connected = trio.Event()
        self._lost = trio.Event()
        self._write_wanted = trio.Event()
        self._sock = None
        self._subscribe_mid = -1
        self._client = self._make_client()

    def _make_client(self) -> paho.Client:
        s = self.settings
        client = _GatewayClient(paho.CallbackAPIVersion.VERSION2, client_id=s.client_id, protocol=paho.MQTTv5,
                                manual_ack=True)
        client.connect_timeout = s.connect_timeout_s
        if s.username is not None:
            client.username_pw_set(s.username, s.password)
        client.will_set(s.state_topic, STATE_OFFLINE, qos=1, retain=True)
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_socket_open = self._on_socket_open
        client.on_socket_close = self._on_socket_close
        client.on_socket_register_write = self._on_socket_register_write
        client.on_socket_unregister_write = lambda *_: None
        return client

    def _connect_properties(self) -> Properties:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self.settings.session_expiry_s
        properties.ReceiveMaximum = self.settings.receive_maximum
        return properties

    # paho callbacks: record and return, no work here.
    def _on_socket_open(self, client, userdata, sock) -> None:
        # PUBACKs and alerts are small writes: without TCP_NODELAY, Nagle's algorithm holds
        # them back until the broker's delayed ACK (~40 ms) whenever data is in flight.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock

    def _on_socket_close(self, client, userdata, sock) -> None:
        # paho closes the socket right after this returns: wake the tasks waiting on it first
        # (outside trio, e.g. paho's __del__ at exit, nobody waits on it).
        if trio.lowlevel.in_trio_run():
            trio.lowlevel.notify_closing(sock)
        self._sock = None
        self._lost.set()

    def _on_socket_register_write(self, client, userdata, sock) -> None:
        self._write_wanted.set()

    def _on_connect(self, client, userdata, flags, reason_code, properties) -> None:
        if reason_code.is_failure:
            self.stats.last_error = f"broker refused the connection: {reason_code}"
            self._lost.set()
            return
        client.subscribe(BROKER_DROPPED, qos=0)
        _, self._subscribe_mid = client.subscribe([(topic, paho.SubscribeOptions(qos=1))
                                                   for topic in self.settings.subscriptions])

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties) -> None:
        if mid != self._subscribe_mid:
            return
        refused = [code for code in reason_codes if code.is_failure]
        if refused:
            self.stats.last_error = f"broker refused the subscriptions: {refused}"
            self._lost.set()
            return
        client.publish(self.settings.state_topic, STATE_ONLINE, qos=1, retain=True)
        self.stats.connected = True
        self.stats.connections += 1
        self._connected.set()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties) -> None:
        self.stats.connected = False
        if reason_code.is_failure:
            self.stats.last_error = f"disconnected: {reason_code}"
        self._lost.set()

    def _on_message(self, client, userdata, message: paho.MQTTMessage) -> None:
        if message.topic == BROKER_DROPPED:
            self.stats.broker_dropped = int(message.payload or 0)
            return
        self._inbox.append(Received(message.topic, message.payload, message.mid, message.qos, self._connection,
                                    time.time_ns() // 1_000_000))
        self._inbox_bytes += len(message.payload)
        self.stats.received += 1
        self._arrived.set()

    # The gateway's side.
    async def run(self, *, task_status: trio.TaskStatus = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, and reconnect with exponential backoff whenever the connection is lost,
        until ``close``. Signals ``task_status.started()`` once the first connection is subscribed.

        The TCP connect itself is paho's blocking call, bounded by ``connect_timeout_s``: a
        broker on loopback or the LAN answers in milliseconds, and while there is no
        connection there is nothing else to do (acks of the lost connection are void).
        """
        delay = self.settings.reconnect_min_s
        started = False
        while not self._closing:
            try:
                self._connect()
                delay = self.settings.reconnect_min_s
                await self._serve_connection(None if started else task_status.started)
                started = started or self._connected.is_set()
            except OSError as err:
                self.stats.last_error = f"cannot reach {self.settings.host}:{self.settings.port}: {err}"
            self.stats.connected = False
            await trio.sleep(delay)
            delay = min(2 * delay, self.settings.reconnect_max_s)

    def _connect(self) -> None:
        self._connection += 1
        self._connected = trio.Event()
        self._lost = trio.Event()
        s = self.settings
        if self._connection == 1:
            self._client.connect(s.host, s.port, s.keepalive_s, clean_start=False,
                                 properties=self._connect_properties())
        else:
            self._client.reconnect()

    async def _serve_connection(self, on_ready) -> None:
        async with trio.open_nursery() as nursery:
            for loop in (self._read_loop, self._write_loop, self._misc_loop):
                nursery.start_soon(self._until_closed, loop)
            if on_ready is not None:
                nursery.start_soon(self._call_when_connected, on_ready)
            await self._lost.wait()
            nursery.cancel_scope.cancel()
        if self._sock is not None:  # lost while open (the broker refused our subscriptions)
            self._client.disconnect()
            # Close it now, while this connection's events are current: left open, the next
            # reconnect would close it and mark the new connection lost, again and again.
            self._client._sock_close()

    async def _until_closed(self, loop) -> None:
        """Run one socket loop; the socket closing under it means the connection is lost."""
        try:
            await loop()
        except trio.ClosedResourceError:
            self._lost.set()

    async def _call_when_connected(self, on_ready) -> None:
        await self._connected.wait()
        on_ready()

    async def _read_loop(self) -> None:
        while self._sock is not None:
            if len(self._inbox) >= self.settings.inbox_limit:
                self.stats.paused_reads += 1
                with trio.move_on_after(self.settings.max_pause_s):
                    await self._wait_inbox_below_limit()
            if self._client.buffered():
                await trio.lowlevel.checkpoint()  # whole packets may wait in the buffer, not in the socket
            else:
                await trio.lowlevel.wait_readable(self._sock)
            # paho reads one packet a call: drain what arrived, up to a bound, per wakeup.
            for _ in range(READS_PER_WAKEUP):
                before = self.stats.received
                if self._client.loop_read() != paho.MQTT_ERR_SUCCESS:
                    self._lost.set()
                    return
                if self.stats.received == before or self._sock is None:
                    break

    async def _wait_inbox_below_limit(self) -> None:
        while len(self._inbox) >= self.settings.inbox_limit:
            self._taken = trio.Event()
            await self._taken.wait()

    async def _write_loop(self) -> None:
        while self._sock is not None:
            if not self._client.want_write():
                self._write_wanted = trio.Event()
                await self._write_wanted.wait()
                continue
            await trio.lowlevel.wait_writable(self._sock)
            if self._client.loop_write() != paho.MQTT_ERR_SUCCESS:
                self._lost.set()
                return

    async def _misc_loop(self) -> None:
        while True:
            await trio.sleep(1)
            if self._client.loop_misc() != paho.MQTT_ERR_SUCCESS:
                self._lost.set()
                return

    async def wait_connected(self) -> None:
        """Return once the current connection is up (subscribed, ``online`` published)."""
        await self._connected.wait()

    async def receive_batch(self, max_messages: int, max_wait_s: float, max_bytes: int = 2**62) -> list[Received]:
        """Return at most ``max_messages`` messages in arrival order (removed from the
        inbox), stopping after the one that brings the payloads to ``max_bytes``.

        Messages that waited while the caller was busy (committing the last batch) are
        returned at once: under load, batches form from what arrived meanwhile. Only an
        empty inbox is waited on: for the first message, then up to ``max_wait_s`` more for
        a full batch (a trickle of messages still makes one commit, not one each).
        """
        if not self._inbox:
            while not self._inbox:
                self._arrived = trio.Event()
                await self._arrived.wait()
            with trio.move_on_after(max_wait_s):
                while len(self._inbox) < max_messages and self._inbox_bytes < max_bytes:
                    self._arrived = trio.Event()
                    await self._arrived.wait()
        batch, size = [], 0
        while self._inbox and len(batch) < max_messages and size < max_bytes:
            batch.append(self._inbox.popleft())
            size += len(batch[-1].payload)
        self._inbox_bytes -= size
        self._taken.set()
        return batch

    @property
    def backlog(self) -> int:
        """Messages received and not yet taken by ``receive_batch``."""
        return len(self._inbox)

    def ack(self, messages: Iterable[Received]) -> int:
        """PUBACK every message that came on the current connection while it is open; drop
        (and count) the others, which the broker redelivers. Call only after their batch is
        committed. A resumed session's messages arrive before the SUBACK that marks the link
        connected: they are acked like any other on their connection."""
        acked, mids = 0, []
        for message in messages:
            if message.connection != self._connection or self._sock is None:
                self.stats.stale_acks += 1
                continue
            if message.qos:
                mids.append(message.mid)
            acked += 1
        self._client.ack_all(mids)
        self.stats.acked += acked
        return acked

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Queue a publication; it goes out on the current connection (QoS 1: paho re-sends
        it after a reconnect)."""
        self._client.publish(topic, payload, qos=qos, retain=retain)

    async def close(self, *, timeout_s: float = 2.0) -> None:
        """Publish ``offline``, give the socket a moment to flush, and disconnect cleanly;
        ``run`` then returns instead of reconnecting."""
        self._closing = True
        if self.stats.connected and self._sock is not None:
            info = self._client.publish(self.settings.state_topic, STATE_OFFLINE, qos=1, retain=True)
            with trio.move_on_after(timeout_s):
                while not info.is_published() and self._sock is not None:
                    await trio.sleep(0.01)
                self._client.disconnect()
                while self._sock is not None:  # paho closes it once DISCONNECT is written
                    await trio.sleep(0.01)
        self._lost.set()
