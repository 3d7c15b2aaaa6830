"""A real PostgreSQL server for the tests: Debian's binaries, a temporary folder, 127.0.0.1.

``initdb`` + ``pg_ctl`` run as the ``postgres`` user when the tests run as root (PostgreSQL
refuses to run as root), on a free port bound to the loopback interface only, with the unix
socket in the server's own folder. The server is stopped and its folder removed at the end.
Without Debian's ``postgresql`` package the PostgreSQL tests are skipped with the reason.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import struct
import subprocess
import tempfile
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest


def pg_bin() -> Path | None:
    """The newest installed ``/usr/lib/postgresql/*/bin`` (not relying on PATH)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"),
                   key=lambda p: int(Path(p).parent.parent.name))
    return Path(found[-1]).parent if found else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class PgServer:
    """One throwaway server: ``url`` points at its database; ``stop()``/``start()`` for outages."""

    def __init__(self, bindir: Path):
        self.bindir = bindir
        self.folder = Path(tempfile.mkdtemp(prefix="l2m-pg-"))
        self.data = self.folder / "data"
        self.port = _free_port()
        self._as_postgres = os.geteuid() == 0
        if self._as_postgres:
            shutil.chown(self.folder, "postgres", "postgres")
        self._pg("initdb", "-D", str(self.data), "-A", "trust", "-U", "postgres",
                 "--locale=C.UTF-8", "--encoding=UTF8", "--no-sync")
        self.start()
        self.url = self.database("lab2market")

    def _pg(self, tool: str, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bindir / tool), *args]
        if self._as_postgres:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=120)
        if check and done.returncode != 0:
            raise RuntimeError(f"{tool} failed: {done.stdout}\n{done.stderr}")
        return done

    def start(self) -> None:
        options = (f"-p {self.port} -c listen_addresses=127.0.0.1 "
                   f"-c unix_socket_directories={self.folder} -c max_connections=200 "
                   "-c fsync=off -c synchronous_commit=off -c full_page_writes=off")
        self._pg("pg_ctl", "-D", str(self.data), "-l", str(self.folder / "server.log"),
                 "-o", options, "-w", "-t", "60", "start")

    def stop(self) -> None:
        self._pg("pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "stop", check=False)

    def database(self, name: str) -> str:
        """Create database ``name`` (empty) and return its URL."""
        import psycopg

        with psycopg.connect(self._url("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self._url(name)

    def _url(self, name: str) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{name}"

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)


class CommitDropper:
    """A TCP proxy to the server that can lose one reply: armed with a command tag (``COMMIT``,
    ``INSERT 0 10``), it closes the client's connection instead of forwarding the server's
    CommandComplete for it. The server has done the command; the client never hears of it,
    as when the network drops at the worst moment."""

    def __init__(self, port: int):
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.armed: bytes | None = None
        self.dropped = 0
        threading.Thread(target=self._accept, daemon=True).start()

    def arm(self, tag: str) -> None:
        self.armed = b"C" + struct.pack("!i", 4 + len(tag) + 1) + tag.encode() + b"\0"

    def url(self, server: PgServer, name: str) -> str:
        return server._url(name).replace(f":{server.port}/", f":{self.port}/")

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self.target))
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, from_server: bool) -> None:
        try:
            while data := src.recv(65536):
                if from_server and self.armed and self.armed in data:
                    self.armed, self.dropped = None, self.dropped + 1
                    break  # the reply is lost with the connection
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self.listener.close()


def start_server() -> PgServer:
    bindir = pg_bin()
    if bindir is None:
        pytest.skip("PostgreSQL is not installed (Debian package `postgresql`; .ci/run installs "
                    "it)")
    return PgServer(bindir)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """One PostgreSQL server for the whole test session, started on first use."""
    server = start_server()
    try:
        yield server
    finally:
        server.close()


@pytest.fixture
def pg_url(pg_server: PgServer) -> str:
    """A fresh, empty database on the session's server: one per test."""
    return pg_server.database("t" + uuid.uuid4().hex[:12])
