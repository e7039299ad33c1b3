"""The trio-driven paho link against a real Mosquitto: manual ack, redelivery, session, state."""

from __future__ import annotations

import contextlib
import socket
import threading

import paho.mqtt.client as paho
import pytest
import trio

from adapters.mqtt import STATE_OFFLINE, STATE_ONLINE, LinkSettings, MqttLink
from adapters.topics import SUBSCRIPTIONS, shared

pytestmark = pytest.mark.trio

TOPIC = "pmp/v1/dev/tono-1/m"


@contextlib.asynccontextmanager
async def running(broker, **overrides):
    """A link connected to ``broker`` for the body of the block, closed after it."""
    async with trio.open_nursery() as nursery:
        link = MqttLink(settings(broker, **overrides))
        await nursery.start(link.run)
        yield link
        await link.close()


def settings(broker, **overrides) -> LinkSettings:
    return LinkSettings(**{"host": "127.0.0.1", "port": broker.port, "client_id": "pmpgw-test",
                           "state_topic": "pmp/v1/gateway/t/state", "keepalive_s": 5, **overrides})


def publish(broker, payloads: list[bytes], topic: str = TOPIC) -> None:
    """Publish at QoS 1 from a plain paho client and wait until the broker has them all."""
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="device", protocol=paho.MQTTv5)
    client.connect("127.0.0.1", broker.port)
    client.loop_start()
    infos = [client.publish(topic, p, qos=1) for p in payloads]
    for info in infos:
        info.wait_for_publish(5)
    client.loop_stop()
    client.disconnect()


def retained(broker, topic: str) -> bytes | None:
    """The retained payload on ``topic``, read by a fresh subscriber."""
    got: list[bytes] = []
    done = threading.Event()
    client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id="watcher", protocol=paho.MQTTv5)
    client.on_message = lambda c, u, m: (got.append(m.payload), done.set())
    client.connect("127.0.0.1", broker.port)
    client.subscribe(topic, qos=1)
    client.loop_start()
    done.wait(3)
    client.loop_stop()
    client.disconnect()
    return got[0] if got else None


async def receive(link: MqttLink, n: int, timeout_s: float = 5.0) -> list:
    out = []
    with trio.move_on_after(timeout_s):
        while len(out) < n:
            out += await link.receive_batch(n - len(out), 0.05)
    return out


async def nothing_arrives(link: MqttLink, wait_s: float = 0.5) -> bool:
    with trio.move_on_after(wait_s):
        await link.receive_batch(1, 0)
        return False
    return True


async def test_messages_arrive_in_order_and_acked_ones_are_not_redelivered(broker):
    async with running(broker) as link:
        await trio.to_thread.run_sync(publish, broker, [b"%d" % i for i in range(20)])
        got = await receive(link, 20)
        assert [m.payload for m in got] == [b"%d" % i for i in range(20)]
        assert link.ack(got) == 20
    async with running(broker) as again:
        assert await nothing_arrives(again)


async def test_unacked_messages_are_redelivered_to_the_restarted_gateway(broker):
    async with running(broker) as link:
        await trio.to_thread.run_sync(publish, broker, [b"a", b"b", b"c"])
        assert len(await receive(link, 3)) == 3
    async with running(broker) as restarted:
        redelivered = await receive(restarted, 3)
        assert sorted(m.payload for m in redelivered) == [b"a", b"b", b"c"]
        restarted.ack(redelivered)


async def test_acks_of_a_lost_connection_are_dropped_and_the_broker_redelivers(broker):
    async with running(broker, reconnect_min_s=0.05) as link:
        await trio.to_thread.run_sync(publish, broker, [b"x", b"y"])
        first = await receive(link, 2)
        link._sock.shutdown(socket.SHUT_RDWR)  # the connection breaks under the gateway's feet
        with trio.fail_after(5):
            while link.stats.connections < 2 or not link.stats.connected:
                await trio.sleep(0.01)
        assert link.ack(first) == 0 and link.stats.stale_acks == 2
        second = await receive(link, 2)
        assert sorted(m.payload for m in second) == [b"x", b"y"]
        assert {m.connection for m in second} == {2}
        assert link.ack(second) == 2


async def test_session_queues_messages_while_the_gateway_is_away(broker):
    async with running(broker) as link:
        await link.wait_connected()  # subscribed once: the broker now keeps the session
    await trio.to_thread.run_sync(publish, broker, [b"%d" % i for i in range(50)])
    async with running(broker) as back:
        got = await receive(back, 50)
        assert sorted(m.payload for m in got) == sorted(b"%d" % i for i in range(50))
        back.ack(got)


async def test_state_topic_says_online_then_offline(broker):
    async with running(broker) as link:
        await link.wait_connected()
        await trio.sleep(0.1)
        assert await trio.to_thread.run_sync(retained, broker, link.settings.state_topic) == STATE_ONLINE
    assert await trio.to_thread.run_sync(retained, broker, link.settings.state_topic) == STATE_OFFLINE


async def test_full_inbox_pauses_reading_but_loses_nothing(broker):
    async with running(broker, inbox_limit=10) as link:
        await trio.to_thread.run_sync(publish, broker, [b"%d" % i for i in range(200)])
        await trio.sleep(0.3)
        assert link.stats.paused_reads > 0
        got = await receive(link, 200)
        assert [m.payload for m in got] == [b"%d" % i for i in range(200)]
        link.ack(got)


async def test_batches_stop_at_the_byte_bound(broker):
    async with running(broker) as link:
        await trio.to_thread.run_sync(publish, broker, [bytes(100)] * 10)
        await until_backlog(link, 10)
        first = await link.receive_batch(10, 0, max_bytes=250)
        assert len(first) == 3  # the message that crosses the bound is the last of the batch
        rest = await receive(link, 7)
        link.ack(first + rest)


async def test_a_backlog_is_taken_at_once_and_a_trickle_gathered_up_to_a_bound(broker):
    """Messages that waited while the gateway committed make the next batch without the
    gather wait (30 s here: waiting would trip the 5 s guard); from an empty inbox the
    gather ends as soon as the batch reaches its byte bound."""
    async with running(broker) as link:
        await trio.to_thread.run_sync(publish, broker, [bytes(100)] * 5)
        await until_backlog(link, 5)
        with trio.fail_after(5):
            backlog = await link.receive_batch(500, 30.0)
        assert len(backlog) == 5
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.to_thread.run_sync, publish, broker, [bytes(100)] * 4)
            with trio.fail_after(5):
                trickle = await link.receive_batch(500, 30.0, max_bytes=400)
        assert len(trickle) == 4
        link.ack(backlog + trickle)


async def until_backlog(link: MqttLink, n: int) -> None:
    with trio.fail_after(5):
        while link.backlog < n:
            await trio.sleep(0.01)


async def test_messages_of_a_resumed_session_that_arrive_before_the_suback_are_acked(broker):
    """Regression (found while restarting the broker under load): a resumed session's queued
    messages arrive right after CONNACK, before the SUBACK that marks the link connected. Their
    acks were dropped as if the connection was gone, so they stayed in flight on a live
    connection: the broker never redelivers them on it, and once Receive Maximum of them pile
    up it sends nothing more (the gateway wedged until some later reconnect)."""
    async with running(broker) as link:
        await link.wait_connected()  # the session exists and keeps the subscriptions
    queued = [b"%d" % i for i in range(600)]  # more than one read wakeup (READS_PER_WAKEUP) holds
    await trio.to_thread.run_sync(publish, broker, queued)
    async with trio.open_nursery() as nursery:
        link = MqttLink(settings(broker, inbox_limit=10))  # the reader pauses once the inbox fills
        nursery.start_soon(link.run)
        with trio.fail_after(5):
            early = await link.receive_batch(len(queued), 0)
        assert not link.stats.connected  # the SUBACK waits behind the queued messages
        assert link.ack(early) == len(early) and link.stats.stale_acks == 0
        rest = await receive(link, len(queued) - len(early))
        assert sorted(m.payload for m in early + rest) == sorted(queued)
        assert link.ack(rest) == len(rest)
        await link.wait_connected()  # close flushes the acks of a connected link
        await link.close()
    async with running(broker) as again:
        assert await nothing_arrives(again)  # every message was acked on the connection it came on


async def test_a_restarted_broker_resumes_the_session_and_connections_count_only_established_ones(broker):
    """The link reconnects by itself to a broker restarted on its port and data directory
    (SIGTERM: it saves its persistence), and the session it resumes kept the subscriptions:
    messages published while the link was away arrive. ``connections`` counts connections
    established, not the attempts refused while the broker was down (it counted those too)."""
    from gateway.broker import PrivateBroker

    async with running(broker, reconnect_min_s=0.02, reconnect_max_s=0.05) as link:
        broker.stop()  # blocking calls: the link cannot run (nor reconnect) until the next await
        with trio.fail_after(10):
            while "cannot reach" not in link.stats.last_error:
                await trio.sleep(0.01)
            refused = link.stats.last_error
            await trio.sleep(0.3)  # a few more refused attempts
        restarted = PrivateBroker.start(broker.data_dir, port=broker.port)
        try:
            publish(restarted, [b"%d" % i for i in range(30)])  # before the link can reconnect
            got = await receive(link, 30, timeout_s=10)
            assert sorted(m.payload for m in got) == sorted(b"%d" % i for i in range(30))
            assert {m.connection for m in got} != {1} and link.ack(got) == 30
            with trio.fail_after(10):
                await link.wait_connected()
            assert link.stats.connected and link.stats.connections == 2, (link.stats, refused)
        finally:
            await link.close()
            restarted.stop()


async def test_receiving_leaves_no_cyclic_garbage(broker):
    """The gateway runs the cyclic collector rarely (gateway.service.GC_THRESHOLDS): receiving
    must not make reference cycles, or up to a million objects of them pile up between
    collections. paho's own message dispatch made six a message (adapters/mqtt.py)."""
    import gc

    n = 400
    async with running(broker) as link:
        await link.wait_connected()  # subscribed once: the broker now keeps the session
    await trio.to_thread.run_sync(publish, broker, [b"%d" % i for i in range(n)])
    gc.collect()
    gc.disable()
    try:
        async with running(broker) as back:
            got = await receive(back, n)
            cyclic = gc.collect()
            back.ack(got)
    finally:
        gc.enable()
    print(f"cyclic garbage receiving {len(got)} messages: {cyclic} objects")
    assert len(got) == n
    assert cyclic < n // 10


async def test_shared_subscribers_each_get_a_share_and_together_every_message_once(broker):
    """Two gateways in the group $share/pmpgw/ on their own sessions: each message goes to
    one of them; one that is away has its share queued on its session (Mosquitto hands
    messages in turn to every member, connected or not)."""
    group = shared(SUBSCRIPTIONS)
    async with running(broker, client_id="pmpgw-a", subscriptions=group) as a, \
            running(broker, client_id="pmpgw-b", subscriptions=group) as b:
        await trio.to_thread.run_sync(publish, broker, [b"%d" % i for i in range(40)])
        got_a = await receive(a, 40, timeout_s=1.0)
        got_b = await receive(b, 40 - len(got_a), timeout_s=3.0)
        assert got_a and got_b
        assert sorted(m.payload for m in got_a + got_b) == sorted(b"%d" % i for i in range(40))
        a.ack(got_a)
        b.ack(got_b)
    async with running(broker, client_id="pmpgw-a", subscriptions=group) as a:
        await trio.to_thread.run_sync(publish, broker, [b"%d" % i for i in range(40, 60)])
        got_a = await receive(a, 20, timeout_s=1.0)
        a.ack(got_a)
    async with running(broker, client_id="pmpgw-b", subscriptions=group) as b:
        queued = await receive(b, 20 - len(got_a), timeout_s=3.0)  # b's share, kept while it was away
        b.ack(queued)
    assert sorted(m.payload for m in got_a + queued) == sorted(b"%d" % i for i in range(40, 60))
