"""The private Mosquitto: sized configuration, start, stop, persistence across a restart."""

import socket
import subprocess

import pytest

from gateway.broker import BROKER_SETTINGS, PrivateBroker, TlsListener, config_text


def test_config_sizes_what_the_guarantees_depend_on(tmp_path):
    text = config_text(1883, tmp_path)
    assert "listener 1883 127.0.0.1" in text
    for key in ("max_inflight_messages", "max_queued_messages", "max_queued_bytes", "persistence"):
        assert f"{key} {BROKER_SETTINGS[key]}" in text
    assert int(BROKER_SETTINGS["max_inflight_messages"]) > 20  # Mosquitto's default would cap a batch at 20
    assert "allow_anonymous true" in text  # the tests' own brokers; pmpgw run's is secured:


def test_secured_config_admits_only_accounts_and_binds_client_ids_on_every_listener(tmp_path):
    tls = TlsListener("127.0.0.1", 8883, tmp_path / "cert.pem", tmp_path / "key.pem")
    lines = config_text(1883, tmp_path, secured=True, tls=tls).splitlines()
    assert {"allow_anonymous false", "per_listener_settings false", f"password_file {tmp_path / 'passwd'}",
            f"acl_file {tmp_path / 'acl'}"} <= set(lines)
    assert "allow_anonymous true" not in lines
    for listener in ("listener 1883 127.0.0.1", "listener 8883 127.0.0.1"):  # a per-listener setting
        assert lines[lines.index(listener) + 1] == "use_username_as_clientid true"
    assert f"certfile {tmp_path / 'cert.pem'}" in lines and f"keyfile {tmp_path / 'key.pem'}" in lines


def test_broker_listens_and_stops(broker):
    with socket.create_connection(broker.address, timeout=1):
        pass
    broker.stop()
    assert broker.process.returncode == 0
    with pytest.raises(OSError):
        socket.create_connection(broker.address, timeout=0.5)


def test_retained_message_survives_a_graceful_restart(tmp_path):
    first = PrivateBroker.start(tmp_path)
    subprocess.run(["mosquitto_pub", "-p", str(first.port), "-t", "t/x", "-m", "kept", "-q", "1", "-r"], check=True)
    first.stop()
    again = PrivateBroker.start(tmp_path, port=first.port)
    try:
        out = subprocess.run(["mosquitto_sub", "-p", str(again.port), "-t", "t/x", "-C", "1", "-W", "3"],
                             capture_output=True, check=True)
        assert out.stdout.strip() == b"kept"
    finally:
        again.stop()

