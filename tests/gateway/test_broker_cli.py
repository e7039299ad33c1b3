"""``pmpgw broker-files``: an external Mosquitto configured from its files admits the
gateway and the registered devices, each with its own password, and no one else."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time


from gateway.broker import free_port, mosquitto_binary
from gateway.sim_devices import NOT_AUTHORIZED
from tests.faults.test_broker_auth import Device, acked, pmpgw, reading

PMPGW = [sys.executable, "-m", "gateway.cli"]


def test_an_external_broker_from_broker_files_admits_the_gateway_and_each_device(tmp_path):
    db, files = tmp_path / "pmp.db", tmp_path / "mosquitto"
    assert pmpgw(db, "patients", "add", "A", "--tz", "UTC").returncode == 0
    password = json.loads(pmpgw(db, "devices", "add", "tono-1", "--kind", "bp", "--json").stdout)["password"]
    assert pmpgw(db, "bind", "tono-1", "A").returncode == 0
    written = pmpgw(db, "broker-files", str(files))
    assert written.returncode == 0 and "1 device and hub accounts" in written.stdout, written.stderr
    assert oct((files / "pmpgw-gw1.password").stat().st_mode & 0o777) == "0o600"
    again = pmpgw(db, "broker-files", str(files))  # the gateway's password is kept across runs
    assert again.returncode == 0
    port = free_port()
    conf = tmp_path / "external.conf"
    conf.write_text((files / "mosquitto.conf").read_text() + f"user root\npersistence_location {tmp_path}/\n"
                    f"listener {port} 127.0.0.1\nuse_username_as_clientid true\n")
    broker = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stderr=subprocess.PIPE)
    gateway = None
    try:
        time.sleep(0.5)
        gateway = subprocess.Popen(PMPGW + ["run", "--broker", f"127.0.0.1:{port}", "--db", str(db),
                                            "--mqtt-password-file", str(files / "pmpgw-gw1.password")],
                                   stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        device = Device(port, "tono-1", password)
        try:
            assert device.connack() == 0
            device.client.subscribe("pmp/v1/dev/tono-1/ack", qos=1)
            for _ in range(40):  # re-send until the gateway has subscribed (at most 40 tries, 0.5 s each)
                if device.wait_for(acked(device, 0), timeout_s=0.5):
                    break
                device.publish("pmp/v1/dev/tono-1/m", reading(0))
            assert device.wait_for(acked(device, 0), timeout_s=0.5), device.events
            assert device.publish("pmp/v1/dev/tono-2/m", reading(1)) == NOT_AUTHORIZED
        finally:
            device.close()
        anonymous = Device(port, None, None)
        try:
            assert anonymous.connack() == NOT_AUTHORIZED
        finally:
            anonymous.close()
        gateway.send_signal(signal.SIGTERM)
        out, err = gateway.communicate(timeout=30)
        assert gateway.returncode == 0, err
        assert json.loads(out)["readings"]["stored"] == 1
    finally:
        if gateway is not None and gateway.poll() is None:
            gateway.kill()
            gateway.wait()
        broker.send_signal(signal.SIGTERM)
        broker.wait(timeout=10)
        broker.stderr.close()
