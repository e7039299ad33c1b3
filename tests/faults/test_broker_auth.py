"""Issue 6, item 3: the private broker of ``pmpgw run`` admits only accounts, each device
and hub may touch only its own topics, the gateway's session cannot be taken, a retired
device is refused, and TLS works with a certificate made here. Real ``pmpgw run``, real
Mosquitto, real MQTT 5 clients; credentials issued by ``pmpgw devices add``."""

from __future__ import annotations

import json
import pathlib
import signal
import socket
import ssl
import subprocess
import sys
import threading
import time

import msgpack
import paho.mqtt.client as paho
import pytest

from gateway.broker import free_port
from gateway.sim_devices import NOT_AUTHORIZED, publish_fleet
from gateway.store import Store

PMPGW = [sys.executable, "-m", "gateway.cli"]
NOW = int(time.time() * 1000)


def pmpgw(db: pathlib.Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(PMPGW + list(args) + ["--db", str(db)], capture_output=True, text=True, timeout=60)


class Device:
    """A real MQTT client logged in as a device (or anyone), recording what the broker says."""

    def __init__(self, port: int, username: str | None, password: str | None, *, client_id: str | None = None,
                 protocol: int = paho.MQTTv5, tls_ca: pathlib.Path | None = None) -> None:
        self.events: list[tuple] = []
        self.messages: list[tuple[str, bytes]] = []
        self.changed = threading.Condition()
        self.client = paho.Client(paho.CallbackAPIVersion.VERSION2, client_id=client_id or username or "anonymous",
                                  protocol=protocol)
        if username is not None:
            self.client.username_pw_set(username, password)
        if tls_ca is not None:
            self.client.tls_set(ca_certs=str(tls_ca))
        self.client.on_connect = lambda c, u, f, reason, p: self._event("connack", reason.value)
        self.client.on_disconnect = lambda c, u, f, reason, p: self._event("disconnect", reason.value)
        self.client.on_publish = lambda c, u, mid, reason, p: self._event("puback", mid, reason.value)
        self.client.on_message = lambda c, u, m: self._event("message", m.topic, m.payload)
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def _event(self, *event) -> None:
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def wait_for(self, predicate, timeout_s: float = 15.0) -> bool:
        with self.changed:
            return self.changed.wait_for(lambda: predicate(self.events), timeout=timeout_s)

    def connack(self) -> int:
        assert self.wait_for(lambda ev: any(e[0] == "connack" for e in ev)), self.events
        return next(e[1] for e in self.events if e[0] == "connack")

    def publish(self, topic: str, payload: bytes) -> int:
        """Publish at QoS 1; the PUBACK's reason code."""
        mid = self.client.publish(topic, payload, qos=1).mid
        assert self.wait_for(lambda ev: any(e[:2] == ("puback", mid) for e in ev)), self.events
        return next(e[2] for e in self.events if e[:2] == ("puback", mid))

    def received(self, topic_prefix: str = "") -> list[tuple[str, bytes]]:
        return [(e[1], e[2]) for e in self.events if e[0] == "message" and e[1].startswith(topic_prefix)]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def reading(seq: int, sys_: int = 120) -> bytes:
    return msgpack.packb({"seq": seq, "t": NOW - 60_000 + seq, "type": "bp", "sys": sys_, "dia": 80})


@pytest.fixture(scope="module")
def certificate(tmp_path_factory) -> tuple[pathlib.Path, pathlib.Path]:
    """A self-signed certificate for 127.0.0.1 and its key, made with openssl."""
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    return cert, key


@pytest.fixture
def gateway(tmp_path, certificate):
    """``pmpgw run`` on a registry of two tonometers (patients A and B) and a hub, with a TLS
    listener; yields (db, plain port, TLS port, passwords)."""
    db = tmp_path / "data" / "pmp.db"
    passwords = {}
    for patient in ("A", "B"):
        assert pmpgw(db, "patients", "add", patient, "--tz", "UTC").returncode == 0
    for device, kind in (("tono-1", "bp"), ("tono-2", "bp"), ("hub-1", "hub")):
        added = pmpgw(db, "devices", "add", device, "--kind", kind, "--json")
        assert added.returncode == 0, added.stderr
        account = json.loads(added.stdout)
        assert account["username"] == device and len(account["password"]) >= 20
        passwords[device] = account["password"]
    assert pmpgw(db, "bind", "tono-1", "A").returncode == 0 and pmpgw(db, "bind", "tono-2", "B").returncode == 0
    tls_port = free_port()
    process = subprocess.Popen(PMPGW + ["run", "--db", str(db), "--tls", *map(str, certificate),
                                        "--tls-listen", f"127.0.0.1:{tls_port}"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    address = db.parent / "broker" / "address"
    deadline = time.monotonic() + 30
    while not address.exists() and time.monotonic() < deadline and process.poll() is None:
        time.sleep(0.05)
    assert address.exists(), process.stderr.read() if process.poll() is not None else "no broker address"
    port = int(address.read_text().strip().rsplit(":", 1)[1])
    while not json.loads(pmpgw(db, "status", "--json").stdout)["gateways"] and time.monotonic() < deadline:
        time.sleep(0.1)  # subscribed: its retained state is on the broker (status logs in as pmpgw-monitor)
    yield db, port, tls_port, passwords
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err


def acked(device: Device, seq: int):
    """A predicate: the gateway's ack on ``device``'s ack topic reached ``seq``."""
    return lambda events: any(e[0] == "message" and e[1].endswith("/ack") and json.loads(e[2])["seq"] >= seq
                              for e in events)


def stored_devices(db: pathlib.Path) -> list[str]:
    with Store.open(db) as store:
        return sorted(r["device"] for r in store.readings(None))


def test_anonymous_and_wrong_passwords_are_refused(gateway):
    db, port, _, passwords = gateway
    for username, password in ((None, None), ("tono-1", "wrong"), ("tono-9", passwords["tono-1"]),
                               ("pmpgw-gw1", passwords["tono-1"])):
        client = Device(port, username, password)
        try:
            assert client.connack() == NOT_AUTHORIZED, (username, client.events)
        finally:
            client.close()


def test_a_device_publishes_only_as_itself_and_reads_only_its_ack(gateway):
    db, port, _, passwords = gateway
    one = Device(port, "tono-1", passwords["tono-1"])
    two = Device(port, "tono-2", passwords["tono-2"])
    try:
        assert one.connack() == 0 and two.connack() == 0
        for topic in ("pmp/v1/#", "pmp/v1/alert/#", "pmp/v1/dev/+/ack", "pmp/v1/dev/tono-1/ack"):
            one.client.subscribe(topic, qos=1)
        two.client.subscribe("pmp/v1/dev/tono-2/ack", qos=1)
        time.sleep(0.3)  # the SUBACKs; Mosquitto grants them, and filters what it delivers by the ACL
        assert one.publish("pmp/v1/dev/tono-1/m", reading(0)) == 0
        assert one.wait_for(acked(one, 0)), one.events
        # As another device or hub, on the alert or another's ack topic: refused with reason 135.
        for topic in ("pmp/v1/dev/tono-2/m", "pmp/v1/hub/tono-2/gatt", "pmp/v1/alert/B", "pmp/v1/dev/tono-2/ack",
                      "pmp/v1/gateway/gw1/stats"):
            assert one.publish(topic, reading(5, sys_=200)) == NOT_AUTHORIZED, topic
        # tono-2's own crisis reading raises an alert for B, published with tono-2's ack.
        assert two.publish("pmp/v1/dev/tono-2/m", reading(0, sys_=200)) == 0
        assert two.wait_for(acked(two, 0)), two.events
        with Store.open(db) as store:
            alerts = store.alerts()
        assert [(a["patient"], a["rule"]) for a in alerts] == [("B", "BP_CRISIS")]
        time.sleep(0.5)
        assert {topic for topic, _ in one.received()} == {"pmp/v1/dev/tono-1/ack"}
        assert stored_devices(db) == ["tono-1", "tono-2"]
    finally:
        one.close()
        two.close()


def test_a_hub_publishes_only_under_its_own_id_and_each_kind_only_on_its_route(gateway):
    """The broker refuses another's id (135); the gateway refuses a kind on the other route
    (TOPIC): a tonometer on the hub route could name any BLE meter in a record."""
    db, port, _, passwords = gateway
    hub = Device(port, "hub-1", passwords["hub-1"])
    one = Device(port, "tono-1", passwords["tono-1"])
    try:
        assert hub.connack() == 0 and one.connack() == 0
        assert hub.publish("pmp/v1/dev/tono-1/m", reading(0)) == NOT_AUTHORIZED
        assert hub.publish("pmp/v1/hub/hub-2/gatt", msgpack.packb([])) == NOT_AUTHORIZED
        assert hub.publish("pmp/v1/dev/hub-1/m", reading(0)) == 0
        record = {"hseq": 1, "dev": "AA:BB:CC:DD:EE:01", "uuid": 0x2A35, "val": b"\x00", "rx": NOW}
        assert one.publish("pmp/v1/hub/tono-1/gatt", msgpack.packb(record)) == 0
        for _ in range(75):  # the gateway's commit: at most 75 looks, 0.2 s apart
            if len(quarantined := json.loads(pmpgw(db, "quarantine", "--json").stdout)) >= 2:
                break
            time.sleep(0.2)
        assert sorted((q["device"], q["reason"]) for q in quarantined) == [("hub-1", "TOPIC"), ("tono-1", "TOPIC")]
        assert stored_devices(db) == []
    finally:
        hub.close()
        one.close()


def test_a_device_cannot_take_the_gateways_client_id(gateway):
    """The user name is the client id: a device asking for the gateway's id (with a clean
    start, which would wipe the gateway's session) gets its own, and the gateway stays."""
    db, port, _, passwords = gateway
    thief = Device(port, "tono-1", passwords["tono-1"], client_id="pmpgw-gw1")
    two = Device(port, "tono-2", passwords["tono-2"])
    try:
        assert thief.connack() == 0 and two.connack() == 0
        two.client.subscribe("pmp/v1/dev/tono-2/ack", qos=1)
        time.sleep(0.3)
        assert two.publish("pmp/v1/dev/tono-2/m", reading(0)) == 0
        assert two.wait_for(acked(two, 0)), two.events  # the gateway is still there, on its session
        deadline = time.monotonic() + 15
        while "mqtt" not in (status := json.loads(pmpgw(db, "status", "--json").stdout)) and time.monotonic() < deadline:
            time.sleep(0.2)  # the gateway's first stats report (every 5 s)
        assert status["gateways"][0]["mqtt"]["connections"] == 1, status
    finally:
        thief.close()
        two.close()


def connected_when_reloaded(port: int, username: str, password: str) -> Device:
    """A client logged in with an account just issued: the running gateway hands it to its
    broker within about a second, so retry until then."""
    for _ in range(75):  # at most 75 tries, 0.2 s apart
        client = Device(port, username, password)
        if client.connack() == 0:
            return client
        client.close()
        time.sleep(0.2)
    raise AssertionError(f"{username} still refused: {client.events}")


def test_a_dashboard_receives_alerts_and_may_do_nothing_else(gateway):
    db, port, _, passwords = gateway
    issued = pmpgw(db, "dashboards", "add", "ward-1", "--json")
    assert issued.returncode == 0, issued.stderr
    account = json.loads(issued.stdout)
    assert account["username"] == "pmpgw-dash-ward-1"
    dashboard = connected_when_reloaded(port, account["username"], account["password"])
    two = Device(port, "tono-2", passwords["tono-2"])
    try:
        dashboard.client.subscribe("pmp/v1/#", qos=1)
        time.sleep(0.3)
        assert two.connack() == 0 and two.publish("pmp/v1/dev/tono-2/m", reading(0, sys_=200)) == 0
        assert dashboard.wait_for(lambda ev: any(e[0] == "message" and e[1] == "pmp/v1/alert/B" for e in ev))
        alert = json.loads(dashboard.received("pmp/v1/alert/B")[0][1])
        assert (alert["patient"], alert["rule"], alert["severity"]) == ("B", "BP_CRISIS", "emergency")
        assert all(topic.startswith(("pmp/v1/alert/", "pmp/v1/gateway/")) for topic, _ in dashboard.received())
        assert dashboard.publish("pmp/v1/alert/B", b"{}") == NOT_AUTHORIZED
        assert dashboard.publish("pmp/v1/dev/tono-2/ack", b"{}") == NOT_AUTHORIZED
        assert pmpgw(db, "dashboards", "revoke", "ward-1").returncode == 0
        assert dashboard.wait_for(lambda ev: any(e[0] == "disconnect" for e in ev)), dashboard.events
    finally:
        dashboard.close()
        two.close()
    listed = json.loads(pmpgw(db, "dashboards", "list", "--json").stdout)
    assert listed == []


def test_a_retired_device_is_disconnected_and_refused(gateway):
    db, port, _, passwords = gateway
    one = Device(port, "tono-1", passwords["tono-1"])
    try:
        assert one.connack() == 0
        retired = pmpgw(db, "devices", "retire", "tono-1")
        assert retired.returncode == 0 and "broker account" in retired.stdout, retired.stderr
        assert one.wait_for(lambda ev: ("disconnect", 135) in ev or any(e[0] == "disconnect" for e in ev)), one.events
    finally:
        one.close()
    again = Device(port, "tono-1", passwords["tono-1"])
    try:
        assert again.connack() == NOT_AUTHORIZED
    finally:
        again.close()
    assert pmpgw(db, "devices", "credentials", "tono-1").returncode == 2  # RETIRED: no new account either


def test_new_credentials_replace_the_old_password(gateway):
    db, port, _, passwords = gateway
    issued = pmpgw(db, "devices", "credentials", "tono-2", "--json")
    assert issued.returncode == 0, issued.stderr
    fresh = json.loads(issued.stdout)["password"]
    assert fresh != passwords["tono-2"]
    connected_when_reloaded(port, "tono-2", fresh).close()
    old = Device(port, "tono-2", passwords["tono-2"])
    try:
        assert old.connack() == NOT_AUTHORIZED
    finally:
        old.close()


def test_tls_listener_with_a_certificate_made_here(gateway, certificate):
    db, _, tls_port, passwords = gateway
    device = Device(tls_port, "tono-2", passwords["tono-2"], tls_ca=certificate[0])
    try:
        assert device.connack() == 0
        device.client.subscribe("pmp/v1/dev/tono-2/ack", qos=1)
        time.sleep(0.3)
        assert device.publish("pmp/v1/dev/tono-2/m", reading(3)) == 0
        assert device.wait_for(lambda ev: any(e[0] == "message" for e in ev)), device.events
    finally:
        device.close()
    with socket.create_connection(("127.0.0.1", tls_port), timeout=5) as raw:  # it is TLS, with our certificate:
        with pytest.raises(ssl.SSLCertVerificationError):  # the system's CAs do not know it
            ssl.create_default_context().wrap_socket(raw, server_hostname="127.0.0.1")


def test_the_simulator_sees_reason_135_where_mqtt_311_would_be_acked_silently(gateway):
    db, port, _, passwords = gateway
    outcome = publish_fleet(("127.0.0.1", port), [("tono-1", "pmp/v1/dev/tono-2/m", reading(0)),
                                                  ("tono-1", "pmp/v1/dev/tono-1/m", reading(0))],
                            passwords, ack_timeout_s=10.0)
    assert (outcome.published, outcome.denied, outcome.refused) == (1, 1, [])
    old = Device(port, "tono-1", passwords["tono-1"], protocol=paho.MQTTv311)
    try:
        assert old.connack() == 0
        assert old.publish("pmp/v1/dev/tono-2/m", reading(1)) == 0  # acked, yet dropped by the broker
    finally:
        old.close()
    assert stored_devices(db) == ["tono-1"]


@pytest.mark.parametrize("name", ["a/b", "a+b", "a#b", "a:b", "pmpgw-gw2", "x" * 65])
def test_ids_that_cannot_be_user_names_are_refused(tmp_path, name):
    result = pmpgw(tmp_path / "pmp.db", "devices", "add", name, "--kind", "bp")
    assert result.returncode == 2 and result.stderr.split(":")[1].strip() in {"INVALID", "RESERVED"}, result.stderr


def test_a_ble_meter_gets_no_account(tmp_path):
    db = tmp_path / "pmp.db"
    added = pmpgw(db, "devices", "add", "AA:BB:CC:DD:EE:01", "--kind", "glu", "--json")
    assert added.returncode == 0 and json.loads(added.stdout)["password"] is None
    refused = pmpgw(db, "devices", "credentials", "AA:BB:CC:DD:EE:01")
    assert refused.returncode == 2 and refused.stderr.startswith("pmpgw: INVALID"), refused.stderr
