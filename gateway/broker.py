"""The private Mosquitto the gateway starts when it is given no external broker.

The configuration is generated into the gateway's data directory and sized on purpose
(DESIGN.md "Data flow"): Mosquitto's defaults would cap each batch at 20 in-flight
messages (``max_inflight_messages``) and silently drop a persistent session's messages
beyond 1,000 queued (``max_queued_messages``). An external broker needs the same settings;
the README lists them.
"""

from __future__ import annotations

import dataclasses
import os
import pathlib
import pwd
import shutil
import signal
import socket
import subprocess
import time

# Broker settings that the gateway's guarantees depend on, in one place. Values are
# Mosquitto configuration values (counts of messages, bytes, seconds).
BROKER_SETTINGS: dict[str, str] = {
    "max_inflight_messages": "1000",   # un-acked QoS 1 messages to one client: a batch's ceiling
    "max_queued_messages": "1000000",  # per persistent session while the gateway is away
    "max_queued_bytes": "1073741824",  # 1 GiB per session; beyond it Mosquitto drops
    "persistence": "true",             # queued messages survive a broker restart
    "autosave_interval": "1",          # seconds between persistence saves
    "sys_interval": "2",               # $SYS/broker/... (dropped-message count) every 2 s
    "set_tcp_nodelay": "true",         # no Nagle delay (~40 ms with delayed ACKs) on alerts and acks
    "allow_anonymous": "true",
    "log_type": "error",
}


class BrokerError(RuntimeError):
    """The private broker could not be started: the message says why (see its log file)."""


def mosquitto_binary() -> str:
    """Path of the mosquitto executable (Debian installs it in /usr/sbin)."""
    found = shutil.which("mosquitto") or ("/usr/sbin/mosquitto" if os.access("/usr/sbin/mosquitto", os.X_OK) else None)
    if found is None:
        raise BrokerError("mosquitto not found: run scripts/install (it installs the Debian package)")
    return found


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def config_text(port: int, data_dir: pathlib.Path) -> str:
    """The mosquitto.conf of a private broker on 127.0.0.1:port keeping its state in data_dir."""
    # Started as root, Mosquitto would switch to the "mosquitto" user and lose access to
    # data_dir; "user" keeps it running as whoever started it.
    lines = [f"listener {port} 127.0.0.1", f"user {pwd.getpwuid(os.geteuid()).pw_name}",
             f"persistence_location {data_dir}/", f"log_dest file {data_dir / 'mosquitto.log'}"]
    lines += [f"{key} {value}" for key, value in BROKER_SETTINGS.items()]
    return "\n".join(lines) + "\n"


@dataclasses.dataclass
class PrivateBroker:
    """A Mosquitto process on 127.0.0.1 owned by this process; ``stop()`` ends it."""

    port: int
    data_dir: pathlib.Path
    process: subprocess.Popen

    @property
    def address(self) -> tuple[str, int]:
        return "127.0.0.1", self.port

    @classmethod
    def start(cls, data_dir: pathlib.Path, *, port: int | None = None, timeout_s: float = 10.0) -> "PrivateBroker":
        """Write the config into ``data_dir`` and start the broker; return once it accepts connections."""
        data_dir = pathlib.Path(data_dir).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        conf = data_dir / "mosquitto.conf"
        conf.write_text(config_text(port, data_dir))
        process = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        broker = cls(port=port, data_dir=data_dir, process=process)
        broker._wait_listening(timeout_s)
        return broker

    def _wait_listening(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                err = self.process.stderr.read().decode(errors="replace")
                self.process.stderr.close()
                raise BrokerError(f"mosquitto exited with {self.process.returncode} on port {self.port}: {err.strip()}"
                                  f" (log: {self.data_dir / 'mosquitto.log'})")
            try:
                with socket.create_connection(self.address, timeout=0.2):
                    return
            except OSError:
                time.sleep(0.02)
        self.stop()
        raise BrokerError(f"mosquitto did not listen on 127.0.0.1:{self.port} within {timeout_s} s")

    def stop(self, *, kill: bool = False, timeout_s: float = 10.0) -> None:
        """End the broker: SIGTERM (it saves its persistence) or SIGKILL (it loses what it had not saved)."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.process.stderr.close()
