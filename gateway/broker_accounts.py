"""Broker accounts: who may connect to Mosquitto and which topics each may touch.

Sans-IO: passwords and their hashes, user-name rules, and the text of Mosquitto's
``password_file`` and ``acl_file``. ``gateway.broker`` writes the files for the private
broker; ``pmpgw broker-files`` writes them for an external one.

Every device and hub connects with its own account, its id as the user name (DESIGN.md:
ids double as MQTT user names) and, with ``use_username_as_clientid``, as its client id
too, so no client can take another's id (the gateway's above all: a device connecting
as ``pmpgw-gw1`` with a clean start would wipe the gateway's persistent session and the
readings queued in it). What each may touch is ``PUBLISHER_PATTERNS`` and ``ROLE_TOPICS``. A password
is stored only as its hash, in the format of ``mosquitto_passwd`` (Mosquitto 2.0:
``$7$ITERATIONS$SALT$HASH``, PBKDF2-HMAC-SHA512, base64).
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import re
import secrets
from collections.abc import Iterable

from adapters.topics import RESERVED_PREFIX

# mosquitto_passwd's own choices for "$7$" (Mosquitto 2.0): 101 PBKDF2-SHA512 iterations,
# a 12-byte salt, the 64-byte digest.
HASH_ITERATIONS = 101
SALT_BYTES = 12
PASSWORD_BYTES = 18  # random bytes of an issued password: 144 bits, 24 URL-safe characters

# DESIGN.md "Topics": an id is 1-64 of [A-Za-z0-9_.-]; so no ':' (it ends the user name in
# the password file), no '/', '+' or '#' (they would become topic levels and wildcards in
# the ACL's topics).
USERNAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
GATEWAY_PREFIX = RESERVED_PREFIX  # the gateway's own accounts: pmpgw-{gw_id}, and MONITOR_USERNAME
MONITOR_USERNAME = "pmpgw-monitor"  # what ``pmpgw status`` logs in as to read the retained stats
DASHBOARD_PREFIX = GATEWAY_PREFIX + "dash-"  # a clinicians' dashboard: pmpgw-dash-{name}

# What an account may touch: Mosquitto denies what no entry allows. Devices and hubs get
# the same ``pattern`` entries, where %u is the user name: each may publish and read under
# its own id only, and the gateway keeps each kind on its route (``adapters.topics.
# ROUTE_KINDS``, a reading on the wrong one is TOPIC). Not one ``user`` block per device:
# Mosquitto 2.0 parses an acl_file in time quadratic in its users, where the password file
# is linear (bench/broker_accounts.py); the pattern ACL stays four lines at any fleet size.
PUBLISHER_PATTERNS: tuple[tuple[str, str], ...] = (
    ("write", "pmp/v1/dev/%u/m"), ("read", "pmp/v1/dev/%u/ack"),
    ("write", "pmp/v1/hub/%u/gatt"), ("read", "pmp/v1/hub/%u/ack"),
)
# The gateway's own accounts and the dashboards (few): role -> (access, topic) entries under
# their ``user`` line.
ROLE_TOPICS: dict[str, tuple[tuple[str, str], ...]] = {
    "gateway": (("readwrite", "pmp/v1/#"), ("read", "$SYS/broker/#")),
    "monitor": (("read", "pmp/v1/gateway/#"),),
    "dashboard": (("read", "pmp/v1/alert/#"), ("read", "pmp/v1/gateway/#")),
}
DEVICE_ROLES = {"bp": "device", "glu": "device", "cgm": "device", "hub": "hub"}  # registry kind -> role


class AccountError(ValueError):
    """A user name the broker cannot take; ``reason`` INVALID or RESERVED, ``value`` the name."""

    def __init__(self, reason: str, message: str, value: object) -> None:
        super().__init__(message)
        self.reason, self.value = reason, value


@dataclasses.dataclass(frozen=True)
class Account:
    """One broker account: user name, role (a ROLE_TOPICS key) and password hash."""

    username: str
    role: str
    password_hash: str


def check_username(name: str, *, gateway: bool = False) -> str:
    """``name`` if it may be a broker user name (a device's or hub's; ``gateway``: a
    gateway's, which must start with GATEWAY_PREFIX, a prefix no device may use)."""
    if not isinstance(name, str) or not USERNAME.fullmatch(name):
        raise AccountError("INVALID", f"{name!r} cannot be an MQTT user name: use 1-64 characters of "
                                      "[A-Za-z0-9_.-] (no '/', '+', '#' or ':')", name)
    if name.startswith(GATEWAY_PREFIX) != gateway:
        raise AccountError("RESERVED", f"{name!r}: user names starting with {GATEWAY_PREFIX!r} are "
                                       f"{'required for' if gateway else 'reserved for'} gateways", name)
    return name


def connects(device_id: str, kind: str) -> bool:
    """Whether a registered device connects to the broker itself (and so needs an account):
    a device or hub of a known kind, not a BLE meter (named by its address, relayed by a hub)."""
    return kind in DEVICE_ROLES and bool(USERNAME.fullmatch(device_id))


def dashboard_username(name: str) -> str:
    """The user name of dashboard ``name`` (under the reserved prefix: no device can hold it,
    so the publishers' %u patterns give it nothing)."""
    return check_username(DASHBOARD_PREFIX + name, gateway=True)


def gateway_username(gw_id: str) -> str:
    """The user name (and client id) of gateway ``gw_id``."""
    return check_username(GATEWAY_PREFIX + gw_id, gateway=True)


def new_account(username: str, role: str) -> tuple[Account, str]:
    """A fresh account of ``role`` and its password (for the gateway's own accounts)."""
    password = new_password()
    return Account(username, role, hash_password(password)), password


def new_password() -> str:
    """A fresh random password (URL-safe text, PASSWORD_BYTES of randomness)."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def hash_password(password: str, *, salt: bytes | None = None) -> str:
    """``password`` hashed as ``mosquitto_passwd`` does (``$7$101$salt$hash``)."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, HASH_ITERATIONS)
    return f"$7${HASH_ITERATIONS}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def password_file(accounts: Iterable[Account]) -> str:
    """The text of Mosquitto's ``password_file``: ``user:hash`` lines."""
    return "".join(f"{a.username}:{a.password_hash}\n" for a in accounts)


def acl_file(accounts: Iterable[Account]) -> str:
    """The text of Mosquitto's ``acl_file``: a ``user`` block of ROLE_TOPICS entries for each
    of the gateway's own accounts, then PUBLISHER_PATTERNS for every account."""
    blocks = [f"user {a.username}\n" + "".join(f"topic {access} {topic}\n" for access, topic in ROLE_TOPICS[a.role])
              for a in accounts if a.role in ROLE_TOPICS]
    blocks.append("".join(f"pattern {access} {topic}\n" for access, topic in PUBLISHER_PATTERNS))
    return "\n".join(blocks)
