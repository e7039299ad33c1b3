"""The private Mosquitto the gateway starts when it is given no external broker.

The configuration is generated into the gateway's data directory and sized on purpose
(DESIGN.md "Data flow"): Mosquitto's defaults would cap each batch at 20 in-flight
messages (``max_inflight_messages``) and silently drop a persistent session's messages
beyond 1,000 queued (``max_queued_messages``). An external broker needs the same settings;
the README lists them.

Started with accounts (as ``pmpgw run`` always starts it), the broker admits no anonymous
client: each device, hub and gateway has its own user name and password, each may touch
only its own topics (``gateway.broker_accounts``), and the user name is the client id.
``set_accounts`` rewrites the password and ACL files and makes Mosquitto reload them
(SIGHUP); a client whose account is gone is disconnected by the reload. Without accounts
(the tests' and benchmarks' own brokers) anonymous clients may do anything.
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
from collections.abc import Sequence

from .broker_accounts import Account, acl_file, password_file
from .cli_common import write_private

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
    "log_type": "error",
}
# Each listener's own settings with accounts: the user name replaces the client id, so no
# client can take another's id (a device the gateway's, to wipe its session).
SECURED_LISTENER_SETTINGS = ("use_username_as_clientid true",)


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


@dataclasses.dataclass(frozen=True)
class TlsListener:
    """A TLS listener on ``host:port`` with a PEM certificate (chain) and its private key."""

    host: str
    port: int
    certfile: pathlib.Path
    keyfile: pathlib.Path


def secured_settings(files_dir: pathlib.Path) -> list[str]:
    """Configuration lines that admit only the accounts of ``files_dir``'s ``passwd`` and
    ``acl`` (written by ``write_account_files``), on every listener."""
    return ["per_listener_settings false", "allow_anonymous false", f"password_file {files_dir / 'passwd'}",
            f"acl_file {files_dir / 'acl'}"]


def config_text(port: int, data_dir: pathlib.Path, *, secured: bool = False, tls: TlsListener | None = None) -> str:
    """The mosquitto.conf of a private broker on 127.0.0.1:port keeping its state in data_dir;
    ``secured``: accounts only, from data_dir's ``passwd`` and ``acl``; ``tls``: a second
    listener, with TLS."""
    # Started as root, Mosquitto would switch to the "mosquitto" user and lose access to
    # data_dir; "user" keeps it running as whoever started it.
    lines = [f"user {pwd.getpwuid(os.geteuid()).pw_name}", f"persistence_location {data_dir}/",
             f"log_dest file {data_dir / 'mosquitto.log'}"]
    lines += [f"{key} {value}" for key, value in BROKER_SETTINGS.items()]
    lines += secured_settings(data_dir) if secured else ["allow_anonymous true"]
    listener = SECURED_LISTENER_SETTINGS if secured else ()
    lines += [f"listener {port} 127.0.0.1", *listener]
    if tls is not None:
        lines += [f"listener {tls.port} {tls.host}", *listener, f"certfile {pathlib.Path(tls.certfile).resolve()}",
                  f"keyfile {pathlib.Path(tls.keyfile).resolve()}"]
    return "\n".join(lines) + "\n"


def external_config_text(files_dir: pathlib.Path) -> str:
    """What an external Mosquitto needs for the gateway's guarantees and accounts (the
    listeners are the operator's: each needs the SECURED_LISTENER_SETTINGS under it)."""
    lines = ["# pmp-gateway: sized settings and accounts (pmpgw broker-files)"]
    lines += [f"{key} {value}" for key, value in BROKER_SETTINGS.items() if key != "log_type"]
    lines += secured_settings(files_dir)
    lines += ["# under EVERY listener (a per-listener setting), e.g.:", "# listener 8883",
              *(f"# {setting}" for setting in SECURED_LISTENER_SETTINGS), "# certfile /etc/mosquitto/certs/server.pem",
              "# keyfile /etc/mosquitto/certs/server.key"]
    return "\n".join(lines) + "\n"


def write_account_files(data_dir: pathlib.Path, accounts: Sequence[Account]) -> None:
    """Write ``passwd`` and ``acl`` of ``accounts`` into data_dir (owner-only, each
    replaced at once by a rename, so Mosquitto never reads half a file)."""
    for name, text in (("passwd", password_file(accounts)), ("acl", acl_file(accounts))):
        partial = data_dir / f".{name}.tmp"
        write_private(partial, text)
        os.replace(partial, data_dir / name)


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
    def start(cls, data_dir: pathlib.Path, *, port: int | None = None, accounts: Sequence[Account] | None = None,
              tls: TlsListener | None = None, timeout_s: float = 10.0) -> "PrivateBroker":
        """Write the config into ``data_dir`` and start the broker; return once it accepts
        connections. ``accounts``: admit only these (None: anyone); ``tls``: also listen there."""
        data_dir = pathlib.Path(data_dir).resolve()
        data_dir.mkdir(parents=True, exist_ok=True)
        port = port or free_port()
        if accounts is not None:
            write_account_files(data_dir, accounts)
        conf = data_dir / "mosquitto.conf"
        conf.write_text(config_text(port, data_dir, secured=accounts is not None, tls=tls))
        process = subprocess.Popen([mosquitto_binary(), "-c", str(conf)], stdin=subprocess.DEVNULL,
                                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        broker = cls(port=port, data_dir=data_dir, process=process)
        broker._wait_listening(timeout_s)
        return broker

    def set_accounts(self, accounts: Sequence[Account]) -> None:
        """Admit exactly ``accounts`` from now on (a broker started with accounts): rewrite
        the files and signal Mosquitto to reload them; clients whose account is gone are
        disconnected."""
        write_account_files(self.data_dir, accounts)
        self.process.send_signal(signal.SIGHUP)

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
