"""Topic validation table (DESIGN.md "Topics") and the ack topics the gateway builds."""

import pytest

from adapters.topics import (
    SUBSCRIPTIONS,
    Route,
    device_ack_topic,
    hub_ack_topic,
    is_ble_address,
    is_publisher_id,
    parse_topic,
    shared,
)

ID_64 = "a" * 64

# topic -> what it parses to (None: reason TOPIC)
TOPICS = [
    ("pmp/v1/dev/tono-17/m", (Route.READINGS, "tono-17")),
    ("pmp/v1/dev/A.b_c-9/m", (Route.READINGS, "A.b_c-9")),
    (f"pmp/v1/dev/{ID_64}/m", (Route.READINGS, ID_64)),
    ("pmp/v1/dev/x/m", (Route.READINGS, "x")),
    ("pmp/v1/hub/hub-3/gatt", (Route.GATT, "hub-3")),
    ("pmp/v1/dev/..../m", (Route.READINGS, "....")),
    (f"pmp/v1/dev/{ID_64}a/m", None),  # 65 characters
    ("pmp/v1/dev//m", None),
    ("pmp/v1/dev/AA:BB:CC:DD:EE:FF/m", None),  # a BLE meter never publishes itself
    ("pmp/v1/dev/a b/m", None),
    ("pmp/v1/dev/ä/m", None),
    ("pmp/v1/dev/a/m/", None),
    ("pmp/v1/dev/a/m\n", None),
    ("/pmp/v1/dev/a/m", None),
    ("pmp/v2/dev/a/m", None),
    ("pmp/v1/dev/a/gatt", None),
    ("pmp/v1/hub/a/m", None),
    ("pmp/v1/dev/a/ack", None),
    ("pmp/v1/dev/+/m", None),
    ("pmp/v1/dev/#", None),
    ("PMP/v1/dev/a/m", None),
    ("pmp/v1/dev/a/b/m", None),
    ("", None),
    ("pmp/v1/dev/pmpgw-gw1/m", None),  # the gateway's own accounts never publish readings
    ("pmp/v1/hub/pmpgw-monitor/gatt", None),
    ("pmp/v1/dev/pmpgw/m", (Route.READINGS, "pmpgw")),
    (b"pmp/v1/dev/a/m", None),
    (None, None),
]


@pytest.mark.parametrize("topic, expected", TOPICS)
def test_parse_topic(topic, expected):
    assert parse_topic(topic) == expected


@pytest.mark.parametrize("name, ok", [
    ("AA:BB:CC:DD:EE:FF", True), ("00:1A:7D:DA:71:13", True), ("aa:bb:cc:dd:ee:ff", False),
    ("AA-BB-CC-DD-EE-FF", False), ("AA:BB:CC:DD:EE", False), ("AA:BB:CC:DD:EE:FF:00", False),
    ("AABBCCDDEEFF", False), ("AA:BB:CC:DD:EE:FG", False), ("AA:BB:CC:DD:EE:FF\n", False), (17, False),
])
def test_ble_address(name, ok):
    assert is_ble_address(name) is ok


@pytest.mark.parametrize("name, ok", [("a", True), (ID_64, True), (ID_64 + "a", False), ("", False),
                                      ("a/b", False), ("a:b", False), ("a+", False), (None, False)])
def test_publisher_id(name, ok):
    assert is_publisher_id(name) is ok


def test_subscriptions_cover_both_routes():
    assert SUBSCRIPTIONS == ("pmp/v1/dev/+/m", "pmp/v1/hub/+/gatt")
    assert shared(SUBSCRIPTIONS) == ("$share/pmpgw/pmp/v1/dev/+/m", "$share/pmpgw/pmp/v1/hub/+/gatt")


def test_ack_topics():
    assert device_ack_topic("tono-17") == "pmp/v1/dev/tono-17/ack"
    assert hub_ack_topic("hub-3") == "pmp/v1/hub/hub-3/ack"
    with pytest.raises(ValueError, match="not a device or hub id"):
        device_ack_topic("a/b")
