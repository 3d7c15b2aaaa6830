"""The embedded engine: one SQLite file (WAL) in the workspace, the default.

Readers never block a writer (WAL); every write transaction starts with ``BEGIN IMMEDIATE`` and
waits through SQLite's busy timeout. A workspace on a read-only or full disk still opens for
reading; a write there fails as one line (``WorkspaceUnavailable``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from core.errors import workspace_error
from core.runs.db.base import Database, T


class SqliteDatabase(Database):
    dialect = "sqlite"
    types = {"real": "REAL", "key": "TEXT", "serial": "INTEGER PRIMARY KEY AUTOINCREMENT",
             "without_rowid": " WITHOUT ROWID"}

    def __init__(self, path: Path, home: Path, url: str | None = None, timeout: float = 30.0,
                 prepare: Callable[[Database], Any] | None = None):
        """Open ``path`` and ``prepare`` it (the migrations); on a read-only or full disk, fall
        back to reading what is there."""
        self.path, self.home, self.url, self.timeout = path, home, url, timeout
        self.display = url or str(path)
        self._conn: sqlite3.Connection | None = None
        try:
            self._conn = self._connect("rwc")
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            if prepare is not None:
                prepare(self)
        except sqlite3.OperationalError:
            if self._conn is not None:
                self._conn.close()
            # A read-only or full disk: still let `runs` and `status` read what is there.
            # Writes then fail with SQLite's own message, which the CLI and pages turn into
            # one line ("the workspace is read-only / full").
            if not self.path.is_file() or self.path.stat().st_size == 0:
                raise  # nothing to read: no fallback to an empty, table-less file
            self._conn = self._open_read_only()
            self.read_only = True

    def _connect(self, mode: str, extra: str = "") -> sqlite3.Connection:
        conn = sqlite3.connect(f"{self.path.as_uri()}?mode={mode}{extra}", uri=True,
                               timeout=self.timeout, isolation_level=None,
                               check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={int(self.timeout * 1000)}")
        return conn

    def _open_read_only(self) -> sqlite3.Connection:
        conn = self._connect("ro")
        try:
            conn.execute("SELECT COUNT(*) FROM runs").fetchone()
            return conn
        except sqlite3.OperationalError:
            # WAL readers need the -shm file; on read-only media it cannot be created, and
            # `immutable` (nobody else writes a read-only disk) reads without it.
            conn.close()
            return self._connect("ro", "&immutable=1")

    @property
    def connection(self) -> sqlite3.Connection:
        assert self._conn is not None
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()

    def query(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        return self.connection.execute(sql, args).fetchall()

    def transaction(self, fn: Callable[[_Tx], T]) -> T:
        conn = self.connection
        # BEGIN IMMEDIATE takes the write lock up front, so a writer waits (busy timeout) at
        # the start instead of failing half-way with "database is locked" on lock upgrade.
        try:
            conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise self._unavailable(exc) from exc
        try:
            result = fn(_Tx(conn))
            conn.execute("COMMIT")
            return result
        except BaseException as exc:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise self._unavailable(exc) from exc
            raise

    def _unavailable(self, exc: sqlite3.OperationalError) -> Exception:
        """A full or read-only workspace as one line (a UserError); other errors as they are."""
        return workspace_error(exc, self.home) or exc

    def has_table(self, name: str) -> bool:
        return self.one("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                        (name,)) is not None

    def columns(self, tx: _Tx, table: str) -> set[str]:
        return {r[1] for r in tx.execute(f"PRAGMA table_info({table})").fetchall()}


class _Tx:
    """The connection inside ``BEGIN IMMEDIATE``: SQLite takes ``?`` as it is."""

    def __init__(self, conn: sqlite3.Connection):
        self._conn = conn

    def execute(self, sql: str, args: Sequence[Any] = ()) -> sqlite3.Cursor:
        return self._conn.execute(sql, args)

    def executemany(self, sql: str, rows: Iterable[Sequence[Any]]) -> None:
        self._conn.executemany(sql, rows)
