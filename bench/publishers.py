"""Bench publishers: one process publishing a prebuilt stream of tonometer readings at QoS 1.

    python -m bench.publishers SPEC_JSON

encodes every MQTT 3.1.1 PUBLISH packet first (msgpack payloads, untimed), connects,
prints ``ready``, waits for a line ``go`` on stdin, publishes, and prints one JSON line:
``{"sent", "acked", "first_s", "last_ack_s", "last_seq", "error"}`` (times on the system-wide
monotonic clock, seconds, so the parent compares them with its own ``time.monotonic()``;
``last_seq`` the highest seq sent per device). A line ``stop`` (or end of file) on stdin
ends the sending early; what was sent is still waited for.

The client is a plain socket, not paho: sending prebuilt packets and counting 4-byte
PUBACKs costs next to nothing, so the broker and the gateway are what is measured (paho
publishers topped out at ~27k messages/s for 2-4 processes on this 2-core machine, below the
broker's ceiling). At most ``inflight`` messages are un-acked at any time; the run ends by
itself after ``messages_per_device`` messages per device or ``timeout_s`` seconds.

SPEC keys: ``port``, ``client_id``, ``devices`` (ids), ``messages_per_device``,
``per_message`` (readings per message: 1 sends one map, more send an array of maps),
``t0_ms`` (measurement time of seq 0, ms UTC; seq n is measured at t0_ms + n * STEP_MS),
``rate`` (messages/s, 0 = as fast as the broker acks), ``inflight`` (at most 65,535),
``timeout_s``.
"""

from __future__ import annotations

import json
import select
import socket
import struct
import subprocess
import sys
import time

import msgpack

HOST = "127.0.0.1"
STEP_MS = 1_000  # measurement interval of consecutive readings of one device
PUBACK = 0x40  # MQTT 3.1.1 PUBACK: 0x40 0x02 id-hi id-lo, 4 bytes


def reading(seq: int, t0_ms: int) -> dict:
    """A normal home BP reading (no alert rule fires) of sequence number ``seq``."""
    return {"seq": seq, "t": t0_ms + seq * STEP_MS, "type": "bp", "sys": 112 + seq % 17, "dia": 68 + seq % 11,
            "pul": 62 + seq % 19}


def stream(spec: dict) -> list[tuple[str, bytes]]:
    """Every (topic, payload) of the run, devices interleaved, each device's seqs in order."""
    per, t0 = spec["per_message"], spec["t0_ms"]
    out = []
    for j in range(spec["messages_per_device"]):
        for device in spec["devices"]:
            maps = [reading(j * per + i, t0) for i in range(per)]
            out.append((f"pmp/v1/dev/{device}/m", msgpack.packb(maps if per > 1 else maps[0])))
    return out


def _remaining_length(n: int) -> bytes:
    out = bytearray()
    while True:
        n, digit = divmod(n, 128)
        out.append(digit | (0x80 if n else 0))
        if not n:
            return bytes(out)


def _string(text: str) -> bytes:
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def connect_packet(client_id: str, keepalive_s: int) -> bytes:
    """CONNECT, MQTT 3.1.1, clean session."""
    body = _string("MQTT") + bytes([4, 0x02]) + struct.pack("!H", keepalive_s) + _string(client_id)
    return b"\x10" + _remaining_length(len(body)) + body


def publish_packet(topic: str, payload: bytes, packet_id: int) -> bytes:
    """PUBLISH at QoS 1, not retained."""
    body = _string(topic) + struct.pack("!H", packet_id) + payload
    return b"\x32" + _remaining_length(len(body)) + body


def open_socket(spec: dict) -> socket.socket:
    """A connected socket after a successful CONNACK."""
    sock = socket.create_connection((HOST, spec["port"]), timeout=10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.sendall(connect_packet(spec["client_id"], keepalive_s=int(spec["timeout_s"]) + 60))
    connack = sock.recv(4)
    if connack != b"\x20\x02\x00\x00":
        raise SystemExit(f"bench.publishers: CONNACK {connack!r} from {HOST}:{spec['port']}")
    sock.settimeout(spec["timeout_s"])
    return sock


def last_seqs(spec: dict, sent: int) -> dict[str, int]:
    """The highest seq of each device among the first ``sent`` messages of ``stream(spec)``."""
    devices, per = spec["devices"], spec["per_message"]
    counts = {d: (sent - k + len(devices) - 1) // len(devices) for k, d in enumerate(devices)}
    return {d: n * per - 1 for d, n in counts.items() if n}


def publish(sock: socket.socket, packets: list[bytes], spec: dict, control) -> dict:
    """Send ``packets`` keeping at most ``inflight`` un-acked, paced at ``rate`` if set, until
    all are acked, ``timeout_s`` passed, or ``control`` (stdin) says stop."""
    inflight, rate, total = spec["inflight"], spec["rate"], len(packets)
    sent = acked = 0
    last_ack = 0.0
    pending = b""
    watched = [sock, control]
    first = time.monotonic()
    deadline = first + spec["timeout_s"]
    error = ""
    try:
        while acked < total and (now := time.monotonic()) < deadline:
            allowed = min(total, int((now - first) * rate) + 1) if rate else total
            window = min(allowed, acked + inflight)
            if window > sent:
                sock.sendall(b"".join(packets[sent:window]))
                sent = window
            wait = (first + allowed / rate - now) if rate and sent == allowed < total else 0.05
            ready = select.select(watched, [], [], max(0.0, min(wait, deadline - now)))[0]
            if control in ready:
                control.readline()  # "stop" or end of file: send no more
                total = sent
                watched = [sock]
            if sock not in ready:
                continue
            data = pending + sock.recv(65536)
            if not data:
                raise ConnectionError("broker closed the connection")
            whole = len(data) - len(data) % 4
            if any(b != PUBACK for b in data[0:whole:4]):
                raise ConnectionError(f"unexpected packet from the broker: {data[:8]!r}")
            acked += whole // 4
            pending = data[whole:]
            last_ack = time.monotonic()
        sock.sendall(b"\xe0\x00")  # DISCONNECT
    except OSError as failure:
        error = f"{type(failure).__name__}: {failure}"
    return {"sent": sent, "acked": acked, "first_s": first, "last_ack_s": last_ack,
            "last_seq": last_seqs(spec, sent), "error": error}


def main() -> int:
    spec = json.loads(sys.argv[1])
    packets = [publish_packet(topic, payload, i % 65_535 + 1) for i, (topic, payload) in enumerate(stream(spec))]
    control = sys.stdin.buffer.raw  # unbuffered: select() sees every line not yet read
    with open_socket(spec) as sock:
        print("ready", flush=True)
        if control.readline().strip() != b"go":
            return 1
        summary = publish(sock, packets, spec, control)
    print(json.dumps(summary), flush=True)
    return 0


class Publishers:
    """Several publisher processes over ``devices`` (split evenly), started ready and ended
    by PID in ``stop`` (also when the run failed)."""

    def __init__(self, port: int, devices: list[str], *, processes: int, messages_per_device: int,
                 per_message: int, t0_ms: int, rate: float = 0.0, inflight: int = 500, timeout_s: float = 60.0,
                 name: str = "pub") -> None:
        self.procs: list[subprocess.Popen] = []
        shares = [devices[i::processes] for i in range(processes)]
        try:
            for i, share in enumerate(s for s in shares if s):
                spec = {"port": port, "client_id": f"bench-{name}-{i}", "devices": share,
                        "messages_per_device": messages_per_device, "per_message": per_message, "t0_ms": t0_ms,
                        "rate": rate / processes, "inflight": inflight, "timeout_s": timeout_s}
                self.procs.append(subprocess.Popen([sys.executable, "-m", "bench.publishers", json.dumps(spec)],
                                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True))
            for proc in self.procs:
                if proc.stdout.readline().strip() != "ready":
                    raise RuntimeError(f"bench publisher {proc.pid} did not get ready (exit {proc.poll()})")
        except BaseException:
            self.stop()
            raise
        self.timeout_s = timeout_s

    def go(self) -> float:
        """Start every publisher; return the monotonic time just before the first was told."""
        started = time.monotonic()
        for proc in self.procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        return started

    def stop_sending(self) -> None:
        """Tell every publisher to send no more (each still waits for its PUBACKs)."""
        for proc in self.procs:
            proc.stdin.write("stop\n")
            proc.stdin.flush()

    def results(self) -> list[dict]:
        """Each publisher's summary once it finished (bounded by its own timeout)."""
        out = []
        for proc in self.procs:
            line = proc.stdout.readline()
            proc.wait(self.timeout_s + 10)
            if not line:
                raise RuntimeError(f"bench publisher {proc.pid} exited with {proc.returncode} and no summary")
            out.append(json.loads(line))
        return out

    def stop(self) -> None:
        """End every publisher still running (by PID) and close its pipes."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None:
                    pipe.close()

    def __enter__(self) -> Publishers:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


if __name__ == "__main__":
    sys.exit(main())
