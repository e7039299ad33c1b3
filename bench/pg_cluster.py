"""A private PostgreSQL cluster for tests and benches: Debian's server binaries, a data
directory in a temporary folder, listening on 127.0.0.1 and a free port only, stopped and
removed afterwards.

``initdb`` refuses to run as root, so when started by root the cluster runs as the
``postgres`` system user (its folder is handed to that user). Durability settings are left
at PostgreSQL's defaults (fsync on, synchronous_commit on): what a test or bench measures
is what a deployment gets.
"""

from __future__ import annotations

import contextlib
import dataclasses
import glob
import os
import pathlib
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator

from gateway.broker import free_port

SUPERUSER = "pmp"  # the cluster's superuser (trust authentication on 127.0.0.1 and its socket only)
START_TIMEOUT_S = 60.0


class ClusterError(RuntimeError):
    """The private cluster could not be set up; ``reason`` NO_SERVER (no Debian PostgreSQL
    binaries) or START (initdb or the server failed: the message holds their output)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


def server_bin_dir() -> pathlib.Path:
    """The newest /usr/lib/postgresql/*/bin holding initdb; ClusterError NO_SERVER if none."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[4]))
    if not found:
        raise ClusterError("NO_SERVER", "no PostgreSQL server: apt-get install postgresql (scripts/install does)")
    return pathlib.Path(found[-1]).parent


@dataclasses.dataclass
class PrivateCluster:
    """A running private cluster; ``url(dbname)`` is a libpq URL of one of its databases."""

    folder: pathlib.Path
    port: int
    bin_dir: pathlib.Path
    owner: str | None  # the system user the server runs as (None: whoever started it)

    @property
    def data(self) -> pathlib.Path:
        return self.folder / "data"

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}@127.0.0.1:{self.port}/{dbname}"

    @classmethod
    def start(cls) -> PrivateCluster:
        """initdb into a new temporary folder and start the server; return once it accepts
        connections. ClusterError if it cannot."""
        bin_dir = server_bin_dir()
        folder = pathlib.Path(tempfile.mkdtemp(prefix="pmp-pg-"))
        owner = "postgres" if os.geteuid() == 0 else None
        if owner is not None:
            entry = pwd.getpwnam(owner)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        cluster = cls(folder=folder, port=free_port(), bin_dir=bin_dir, owner=owner)
        try:
            cluster._run("initdb", "-D", str(cluster.data), "-U", SUPERUSER, "--auth=trust", "-E", "UTF8",
                         "--locale=C.UTF-8")
            options = (f"-c listen_addresses=127.0.0.1 -c port={cluster.port} "
                       f"-c unix_socket_directories={folder} -c max_connections=100")
            cluster._run("pg_ctl", "start", "-D", str(cluster.data), "-w", "-t", str(int(START_TIMEOUT_S)),
                         "-l", str(folder / "server.log"), "-o", options)
        except ClusterError:
            cluster.remove()
            raise
        return cluster

    def _run(self, program: str, *args: str) -> None:
        command = [str(self.bin_dir / program), *args]
        if self.owner is not None:
            command = ["runuser", "-u", self.owner, "--", *command]
        done = subprocess.run(command, capture_output=True, text=True, cwd=self.folder, timeout=START_TIMEOUT_S * 2)
        if done.returncode != 0:
            log = self.folder / "server.log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise ClusterError("START", f"{program} failed ({done.returncode}): {done.stdout}{done.stderr}{tail}")

    def create_database(self, name: str, template: str = "template0") -> str:
        """CREATE DATABASE ``name`` from ``template``; return its URL."""
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}" TEMPLATE "{template}"')
        return self.url(name)

    def stop(self) -> None:
        """Stop the server (fast: connections are closed) and remove its folder."""
        with contextlib.suppress(ClusterError, subprocess.TimeoutExpired):
            self._run("pg_ctl", "stop", "-D", str(self.data), "-m", "fast", "-w")
        self.remove()

    def remove(self) -> None:
        shutil.rmtree(self.folder, ignore_errors=True)


@contextlib.contextmanager
def private_cluster() -> Iterator[PrivateCluster]:
    """A started PrivateCluster, stopped and removed on exit."""
    cluster = PrivateCluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()

