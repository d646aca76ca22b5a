"""A private, throwaway PostgreSQL cluster for tests that must stop and start the server (never the shared
one): initdb into a temporary folder, a free loopback port, trust authentication. As root the server
programs run as the postgres user, like `.ci/run` does.
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
    """initdb + pg_ctl start/stop on a private data folder; `url` names its `convoflow` database."""

    def __init__(self) -> None:
        self.bin = server_bin()
        if self.bin is None:
            raise RuntimeError("PostgreSQL server programs are not installed")
        self.dir = tempfile.mkdtemp(prefix="convoflow-pgtest-")
        self.data = os.path.join(self.dir, "data")
        self.port = free_port()
        if os.getuid() == 0:
            shutil.chown(self.dir, "postgres")
        self._run("initdb", "-D", self.data, "-U", "convoflow", "--auth=trust", "-E", "UTF8")
        self.start()
        self._run("createdb", "-h", "127.0.0.1", "-p", str(self.port), "-U", "convoflow", "convoflow")
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

    def close(self) -> None:
        try:
            self.stop("immediate")
        except subprocess.CalledProcessError:
            pass  # already stopped
        shutil.rmtree(self.dir, ignore_errors=True)
