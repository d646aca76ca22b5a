"""A private, throwaway PostgreSQL cluster for tests that must stop and start the server (never the shared
one): initdb into a temporary folder, a free loopback port, trust authentication. As root the server
programs run as the postgres user, like `.ci/run` does. `Cluster(primary=c)` is a streaming standby of c
(pg_basebackup -R), promoted to a primary of its own by `promote()`: a real failover.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile


def server_bin() -> str | None:
    """The folder holding initdb and pg_ctl (the newest installed PostgreSQL), or None."""
    found = sorted(d for d in glob.glob("/usr/lib/postgresql/*/bin") if os.access(os.path.join(d, "initdb"), os.X_OK))
    return found[-1] if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Cluster:
    """initdb + pg_ctl start/stop on a private data folder; `url` names its `convoflow` database. With
    primary, a copy of that cluster's data that follows it as a hot standby (read-only until promoted)."""

    def __init__(self, primary: Cluster | None = None) -> None:
        self.bin = server_bin()
        if self.bin is None:
            raise RuntimeError("PostgreSQL server programs are not installed")
        self.dir = tempfile.mkdtemp(prefix="convoflow-pgtest-")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres")
        if primary is None:
            self._run("initdb", "-D", self.data, "-U", "convoflow", "--auth=trust", "-E", "UTF8")
            self.start()
            self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "convoflow", "convoflow")
        else:  # initdb's trust rules allow replication from 127.0.0.1; -R writes standby.signal + primary_conninfo
            self._run(
                "pg_basebackup",
                "-h",
                "127.0.0.1",
                "-p",
                str(primary.port),
                "-U",
                "convoflow",
                "-D",
                self.data,
                "-R",
                "-X",
                "stream",
                "-c",
                "fast",
            )
            self.start()
        self.url = f"postgresql://convoflow@127.0.0.1:{self.port}/convoflow"

    def _run(self, program: str, *args: str) -> None:
        command = [os.path.join(self.bin, program), *args]
        if os.getuid() == 0:
            command = ["runuser", "-u", "postgres", "--", *command]
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=100"
        self._run("pg_ctl", "-D", self.data, "-l", os.path.join(self.dir, "server.log"), "-w", "-o", options, "start")

    def stop(self, mode: str = "fast") -> None:
        """Stop the server: `fast` ends every session (a restart), `immediate` is a crash."""
        self._run("pg_ctl", "-D", self.data, "-m", mode, "-w", "stop")

    def promote(self) -> None:
        """Make this standby a primary (pg_ctl promote, waiting until it accepts writes)."""
        self._run("pg_ctl", "-D", self.data, "-w", "promote")

    def sql(self, statement: str) -> None:
        """Run one statement as the superuser (outside a transaction, so ALTER SYSTEM works)."""
        self._run(
            "psql",
            "-h",
            "127.0.0.1",
            "-p",
            str(self.port),
            "-U",
            "convoflow",
            "-d",
            "convoflow",
            "-v",
            "ON_ERROR_STOP=1",
            "-c",
            statement,
        )

    def close(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.dir, ignore_errors=True)
