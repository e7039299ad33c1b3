"""MQTT topic names of the wire contract (DESIGN.md "Topics"): parse what arrives, build what leaves.

Inbound, the gateway subscribes to two topics and nothing else:

    pmp/v1/dev/{device_id}/m     reading maps of one device (Route.READINGS)
    pmp/v1/hub/{hub_id}/gatt     GATT record maps of a home hub's BLE meters (Route.GATT)

``device_id`` and ``hub_id`` are 1-64 characters of ``[A-Za-z0-9_.-]`` (they double as MQTT
user names, which may hold neither ``:`` nor ``/``). A BLE meter behind a hub never connects
itself; it is named in each GATT record by its address, six upper-case hex octets joined by
colons (``AA:BB:CC:DD:EE:FF``). The two name forms cannot collide (only addresses hold ``:``),
so devices, hubs and BLE meters share one registry (``adapters.devices.DeviceIndex``).

Any other topic, or an id outside these forms, is reason TOPIC (``adapters.inbound``), and
so is an id starting with ``pmpgw-``: those name the gateway's own broker accounts
(``gateway.broker_accounts``), never a device. So is a message on a route that the
publisher's registered kind does not use (``ROUTE_KINDS``): the broker's ACL lets every
account publish under its own id only, on both routes, and the gateway keeps tonometers
and glucometers off the hub route (where a record names any BLE meter) and hubs off the
readings route.
"""

from __future__ import annotations

import enum
import re

PREFIX = "pmp/v1"


class Route(enum.Enum):
    """What a subscribed topic carries."""

    READINGS = "m"
    GATT = "gatt"


# Route -> (topic filter the gateway subscribes to, publisher segment, last segment).
# The one table of inbound topics: parse_topic and SUBSCRIPTIONS are both read from it.
INBOUND: dict[Route, tuple[str, str, str]] = {
    Route.READINGS: (f"{PREFIX}/dev/+/m", "dev", "m"),
    Route.GATT: (f"{PREFIX}/hub/+/gatt", "hub", "gatt"),
}

SUBSCRIPTIONS: tuple[str, ...] = tuple(topic_filter for topic_filter, _, _ in INBOUND.values())
SHARE_GROUP = "pmpgw"  # DESIGN.md "Scaling out": the gateways' MQTT 5 shared-subscription group


def shared(subscriptions: tuple[str, ...], group: str = SHARE_GROUP) -> tuple[str, ...]:
    """``$share/{group}/{filter}`` of each filter: the broker hands each message to one
    member of the group (Mosquitto: in turn), each member on its own persistent session."""
    return tuple(f"$share/{group}/{topic_filter}" for topic_filter in subscriptions)

RESERVED_PREFIX = "pmpgw-"  # ids of the gateway's own broker accounts: never a publisher
# Route -> the registry kinds (gateway.store DEVICE_KINDS) that may publish on it; "unknown":
# a publisher the gateway registered on first sight, before an operator gave its kind.
ROUTE_KINDS: dict[Route, frozenset[str]] = {
    Route.READINGS: frozenset({"bp", "glu", "cgm", "unknown"}),
    Route.GATT: frozenset({"hub", "unknown"}),
}

_ID_RE = re.compile(r"[A-Za-z0-9_.\-]{1,64}")
_BLE_ADDRESS_RE = re.compile(r"[0-9A-F]{2}(?::[0-9A-F]{2}){5}")
_PREFIX_LEVELS = PREFIX.split("/")
# (publisher segment, last segment) -> route, from INBOUND
_ROUTE_OF = {(segment, last): route for route, (_, segment, last) in INBOUND.items()}


def parse_topic(topic: object) -> tuple[Route, str] | None:
    """``(route, publisher id)`` of an inbound topic (the device id or hub id in it), or None
    when it is not one (reason TOPIC). A plain tuple: this runs once per message.

    Accepts any object so that a caller never has to check first: only a ``str`` that
    matches one of the INBOUND forms exactly (no trailing newline, no extra level) parses.
    """
    if type(topic) is not str:
        return None
    levels = topic.split("/")
    if len(levels) != 5 or levels[:2] != _PREFIX_LEVELS:
        return None
    route = _ROUTE_OF.get((levels[2], levels[4]))
    if route is None or _ID_RE.fullmatch(levels[3]) is None or levels[3].startswith(RESERVED_PREFIX):
        return None
    return route, levels[3]


def is_publisher_id(name: object) -> bool:
    """True for a device, hub or patient id: 1-64 characters of ``[A-Za-z0-9_.-]``."""
    return type(name) is str and _ID_RE.fullmatch(name) is not None


def is_ble_address(name: object) -> bool:
    """True for a BLE meter's name: ``AA:BB:CC:DD:EE:FF``, upper-case hex with colons."""
    return type(name) is str and _BLE_ADDRESS_RE.fullmatch(name) is not None


def device_ack_topic(device_id: str) -> str:
    """``pmp/v1/dev/{device_id}/ack``: the gateway's ``{"seq": N}`` for a device."""
    return f"{PREFIX}/dev/{_checked(device_id)}/ack"


def hub_ack_topic(hub_id: str) -> str:
    """``pmp/v1/hub/{hub_id}/ack``: the gateway's ``{"hseq": N}`` for a hub."""
    return f"{PREFIX}/hub/{_checked(hub_id)}/ack"


def _checked(name: str) -> str:
    if not is_publisher_id(name):
        raise ValueError(f"not a device or hub id (1-64 of [A-Za-z0-9_.-]): {name!r}")
    return name
