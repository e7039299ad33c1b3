"""broker.accounts: what does a fleet's worth of broker accounts cost Mosquitto at start
and at each reload (the broker serves no one meanwhile)?

value    seconds until Mosquitto with N device accounts listens, with our files: the
         password file (mosquitto_passwd hashes) and the ACL of ``pattern`` lines (the same
         four lines for any N): what ``pmpgw run`` starts and reloads at every change;
baseline seconds for the same broker with a ``user`` block per account in its ACL instead,
         the obvious alternative, at N_PER_USER accounts only: its parse time grows with
         the square of the users (the note gives both sizes, so the growth shows).

The files are written first (untimed); the broker's configuration is ``gateway.broker``'s.
"""

from __future__ import annotations

import pathlib
import signal
import socket
import subprocess
import tempfile
import time

from bench._harness import Result
from gateway import broker_accounts
from gateway.broker import config_text, free_port, mosquitto_binary, write_account_files


def _accounts(n: int) -> list[broker_accounts.Account]:
    password_hash = broker_accounts.hash_password(broker_accounts.new_password())  # parsing costs the same
    return [broker_accounts.Account(f"tono-{i:07d}", "device", password_hash) for i in range(n)]


def _per_user_acl(accounts: list[broker_accounts.Account]) -> str:
    return "".join(f"user {a.username}\ntopic write pmp/v1/dev/{a.username}/m\ntopic read pmp/v1/dev/{a.username}/ack\n\n"
                   for a in accounts)


def _listening_after_s(n: int, *, per_user: bool, timeout_s: float = 600.0) -> float:
    """Seconds from starting Mosquitto on n accounts to its accepting a connection."""
    accounts = _accounts(n)
    with tempfile.TemporaryDirectory(prefix="pmp-bench-accounts-") as tmp:
        folder = pathlib.Path(tmp)
        write_account_files(folder, accounts)
        if per_user:
            (folder / "acl").write_text(_per_user_acl(accounts))
        port = free_port()
        (folder / "mosquitto.conf").write_text(config_text(port, folder, secured=True))
        start = time.perf_counter()
        process = subprocess.Popen([mosquitto_binary(), "-c", str(folder / "mosquitto.conf")],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while time.perf_counter() - start < timeout_s and process.poll() is None:
                try:
                    socket.create_connection(("127.0.0.1", port), timeout=0.1).close()
                    return time.perf_counter() - start
                except OSError:
                    time.sleep(0.005)
            raise RuntimeError(f"mosquitto with {n} accounts did not listen within {timeout_s} s")
        finally:
            process.send_signal(signal.SIGTERM)
            process.wait(30)


def run(quick: bool) -> list[Result]:
    n, per_user = (50_000, (5_000, 10_000)) if quick else (200_000, (10_000, 20_000))
    ours = _listening_after_s(n, per_user=False)
    small, large = (_listening_after_s(k, per_user=True) for k in per_user)
    note = (f"{n:,} accounts with our pattern ACL vs {large:,.2f} s for {per_user[1]:,} accounts with a user block "
            f"each ({small:.2f} s for {per_user[0]:,}: x{large / small:.1f} for x2 users)")
    return [Result("broker.accounts_start", "s", ours, f"per-user ACL, {per_user[1]:,} accounts", large, note=note)]
