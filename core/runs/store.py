"""The run store: one SQLite file (WAL) shared by jobs (writers) and the dashboard (readers).

It is the only channel between a running job and the UI, so every reader here is a small query
that never blocks a writer (WAL), and every writer retries through SQLite's busy timeout.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from core.errors import RunNotFound, workspace_error
from core.runs.jobtable import JOBS_SCHEMA, JobTable
from core.runs.records import (  # noqa: F401  (re-exported: callers import them from the store)
    ACTIVE,
    STATUSES,
    TERMINAL,
    Event,
    Job,
    Run,
    event_from_row,
    run_from_row,
)
from core.workspace import check_name, db_path, resolve_home

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    dataset TEXT NOT NULL,
    model TEXT NOT NULL,
    config TEXT NOT NULL,
    created_at REAL NOT NULL,
    started_at REAL,
    ended_at REAL,
    pid INTEGER,
    pid_start TEXT,
    heartbeat REAL,
    device TEXT,
    epoch INTEGER NOT NULL DEFAULT 0,
    total_epochs INTEGER NOT NULL DEFAULT 0,
    step INTEGER NOT NULL DEFAULT 0,
    total_steps INTEGER NOT NULL DEFAULT 0,
    best_metric REAL,
    error TEXT,
    summary TEXT NOT NULL DEFAULT '{}',
    kind TEXT NOT NULL DEFAULT 'trained',
    parent_run TEXT
);
CREATE INDEX IF NOT EXISTS runs_created ON runs(created_at);
CREATE TABLE IF NOT EXISTS metrics (
    run_id TEXT NOT NULL,
    step INTEGER NOT NULL,
    key TEXT NOT NULL,
    value REAL NOT NULL,
    time REAL NOT NULL,
    PRIMARY KEY (run_id, key, step)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    time REAL NOT NULL,
    level TEXT NOT NULL,
    kind TEXT NOT NULL,
    message TEXT NOT NULL,
    data TEXT NOT NULL DEFAULT '{}'
);
CREATE INDEX IF NOT EXISTS events_run ON events(run_id, id);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, kind, path)
);
CREATE TABLE IF NOT EXISTS settings (
    key TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
"""

# Columns added after the first release: (table, column, definition). Opening an older
# workspace adds them, so its runs stay readable.
_MIGRATIONS = (
    ("runs", "kind", "TEXT NOT NULL DEFAULT 'trained'"),
    ("runs", "parent_run", "TEXT"),
)

_RUN_COLUMNS = (
    "id name status dataset model config created_at started_at ended_at pid pid_start heartbeat "
    "device epoch total_epochs step total_steps best_metric error summary kind parent_run"
).split()


def new_run_id() -> str:
    """Sortable and unique: creation time plus random bits."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


class Store(JobTable):
    """Reads and writes the run store. Cheap to create; one per process or thread.

    A context manager: ``with Store(home) as store: ...`` closes the connection.
    """

    def __init__(self, home: str | Path | None = None, timeout: float = 30.0):
        self.home = resolve_home(home)
        self.path = db_path(self.home)
        self.read_only = False
        self._conn = None
        try:
            self._conn = self._connect("rwc", timeout)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA + JOBS_SCHEMA)  # idempotent
            self._migrate()
        except sqlite3.OperationalError:
            if self._conn is not None:
                self._conn.close()
            # A read-only or full disk: still let `runs` and `status` read what is there.
            # Writes then fail with SQLite's own message, which the CLI and pages turn into
            # one line ("the workspace is read-only / full").
            if not self.path.is_file() or self.path.stat().st_size == 0:
                raise  # nothing to read: no fallback to an empty, table-less file
            self._conn = self._open_read_only(timeout)
            self.read_only = True

    def _connect(self, mode: str, timeout: float, extra: str = "") -> sqlite3.Connection:
        conn = sqlite3.connect(f"{self.path.as_uri()}?mode={mode}{extra}", uri=True,
                               timeout=timeout, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        return conn

    def _open_read_only(self, timeout: float) -> sqlite3.Connection:
        conn = self._connect("ro", timeout)
        try:
            conn.execute("SELECT COUNT(*) FROM runs").fetchone()
            return conn
        except sqlite3.OperationalError:
            # WAL readers need the -shm file; on read-only media it cannot be created, and
            # `immutable` (nobody else writes a read-only disk) reads without it.
            conn.close()
            return self._connect("ro", timeout, "&immutable=1")

    def _migrate(self) -> None:
        for table, column, definition in _MIGRATIONS:
            have = {r[1] for r in self._conn.execute(f"PRAGMA table_info({table})")}
            if column not in have:
                self._conn.execute(f"ALTER TABLE {table} ADD COLUMN {column} {definition}")

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front, so a writer waits (busy timeout) at the
        # start instead of failing half-way with "database is locked" on lock upgrade.
        try:
            self._conn.execute("BEGIN IMMEDIATE")
        except sqlite3.OperationalError as exc:
            raise self._unavailable(exc) from exc
        try:
            yield self._conn
            self._conn.execute("COMMIT")
        except BaseException as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            if isinstance(exc, sqlite3.OperationalError):
                raise self._unavailable(exc) from exc
            raise

    def _unavailable(self, exc: sqlite3.OperationalError) -> Exception:
        """A full or read-only workspace as one line (a UserError); other errors as they are."""
        return workspace_error(exc, self.home) or exc

    # -- runs ------------------------------------------------------------------------------------

    def create_run(self, config: dict[str, Any], name: str = "", run_id: str | None = None,
                   kind: str = "trained", parent_run: str | None = None) -> Run:
        run_id = check_name("run", run_id or new_run_id())
        with self._write() as conn:
            conn.execute(
                "INSERT INTO runs (id, name, status, dataset, model, config, created_at, "
                "total_epochs, kind, parent_run) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
                (run_id, name, config["data"]["dataset"], config["model"]["name"],
                 json.dumps(config), time.time(), config["train"]["epochs"], kind, parent_run),
            )
        return self.get_run(run_id)

    def get_run(self, run_id: str) -> Run:
        # An id that cannot be a run id (``..``, a path) is simply not found; no path is built.
        row = self._conn.execute("SELECT * FROM runs WHERE id = ?", (run_id,)).fetchone()
        if row is None:
            raise RunNotFound(f"No run with id {run_id!r}. `python -m core runs` lists them.")
        return run_from_row(row)

    def list_runs(self, limit: int = 50, offset: int = 0, status: str | None = None,
                  search: str = "") -> list[Run]:
        where, args = _run_filter(status, search)
        rows = self._conn.execute(
            f"SELECT * FROM runs {where} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
            (*args, limit, offset),
        ).fetchall()
        return [run_from_row(r) for r in rows]

    def count_runs(self, status: str | None = None, search: str = "") -> int:
        where, args = _run_filter(status, search)
        return self._conn.execute(f"SELECT COUNT(*) FROM runs {where}", args).fetchone()[0]

    def child_runs(self, parent_run: str, kind: str | None = None) -> list[Run]:
        """The runs made under ``parent_run`` (of ``kind``), oldest first."""
        query, args = "SELECT * FROM runs WHERE parent_run = ?", [parent_run]
        if kind is not None:
            query += " AND kind = ?"
            args.append(kind)
        rows = self._conn.execute(query + " ORDER BY created_at, id", args).fetchall()
        return [run_from_row(r) for r in rows]

    def active_runs(self) -> list[Run]:
        rows = self._conn.execute(
            "SELECT * FROM runs WHERE status IN ('queued', 'running')").fetchall()
        return [run_from_row(r) for r in rows]

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set columns of a run; ``summary`` is merged into the stored JSON, not replaced."""
        if not fields:
            return
        unknown = set(fields) - set(_RUN_COLUMNS)
        if unknown:
            raise ValueError(f"unknown run columns: {sorted(unknown)}")
        with self._write() as conn:
            if "summary" in fields:
                row = conn.execute("SELECT summary FROM runs WHERE id = ?", (run_id,)).fetchone()
                merged = json.loads(row["summary"]) if row else {}
                merged.update(fields["summary"])
                fields["summary"] = json.dumps(merged)
            if "config" in fields:
                fields["config"] = json.dumps(fields["config"])
            cols = ", ".join(f"{k} = ?" for k in fields)
            conn.execute(f"UPDATE runs SET {cols} WHERE id = ?", (*fields.values(), run_id))

    def set_status(self, run_id: str, status: str, error: str | None = None,
                   expect: Iterable[str] | None = None) -> bool:
        """Move a run to ``status``; with ``expect``, only from one of those statuses.

        Returns whether the row changed, so two actors racing (a job ending, reconciliation,
        cancel) settle on exactly one terminal status. Without ``expect`` a terminal status is
        still never overwritten: the move is only from an active status.
        """
        if expect is None:
            expect = ACTIVE if status in TERMINAL or status == "pruned" else None
        if status not in STATUSES:
            raise ValueError(f"unknown status {status!r}")
        now = time.time()
        sets = ["status = ?"]
        args: list[Any] = [status]
        if status == "running":
            sets += ["started_at = COALESCE(started_at, ?)", "ended_at = NULL", "error = NULL"]
            args.append(now)
        elif status in TERMINAL:
            sets.append("ended_at = ?")
            args.append(now)
        if error is not None:
            sets.append("error = ?")
            args.append(error)
        query = f"UPDATE runs SET {', '.join(sets)} WHERE id = ?"
        args.append(run_id)
        if expect is not None:
            expect = tuple(expect)
            query += f" AND status IN ({', '.join('?' * len(expect))})"
            args.extend(expect)
        with self._write() as conn:
            return conn.execute(query, args).rowcount > 0

    def delete_run(self, run_id: str) -> None:
        with self._write() as conn:
            for table, col in (("metrics", "run_id"), ("events", "run_id"), ("jobs", "run_id"),
                               ("artifacts", "run_id"), ("runs", "id")):
                conn.execute(f"DELETE FROM {table} WHERE {col} = ?", (run_id,))

    # -- metrics ---------------------------------------------------------------------------------

    def log_metrics(self, run_id: str, rows: Iterable[tuple[int, str, float]]) -> None:
        """Write many (step, key, value) rows in one transaction (the trainer batches them)."""
        now = time.time()
        data = [(run_id, int(s), k, float(v), now) for s, k, v in rows]
        if not data:
            return
        with self._write() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO metrics (run_id, step, key, value, time) "
                "VALUES (?, ?, ?, ?, ?)", data)

    def metric_keys(self, run_id: str) -> list[str]:
        rows = self._conn.execute(
            "SELECT DISTINCT key FROM metrics WHERE run_id = ? ORDER BY key", (run_id,))
        return [r[0] for r in rows]

    def get_metrics(self, run_id: str, keys: Iterable[str] | None = None,
                    after_step: int = -1) -> dict[str, list[tuple[int, float]]]:
        """Metric series ``{key: [(step, value), ...]}`` ordered by step, newer than after_step."""
        query = "SELECT key, step, value FROM metrics WHERE run_id = ? AND step > ?"
        args: list[Any] = [run_id, after_step]
        if keys is not None:
            keys = list(keys)
            query += f" AND key IN ({', '.join('?' * len(keys))})"
            args.extend(keys)
        series: dict[str, list[tuple[int, float]]] = {}
        for key, step, value in self._conn.execute(query + " ORDER BY key, step", args):
            series.setdefault(key, []).append((step, value))
        return series

    def count_metrics(self, run_id: str) -> int:
        return self._conn.execute(
            "SELECT COUNT(*) FROM metrics WHERE run_id = ?", (run_id,)).fetchone()[0]

    # -- events and artifacts --------------------------------------------------------------------

    def add_event(self, run_id: str, kind: str, message: str, level: str = "info",
                  data: dict[str, Any] | None = None) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT INTO events (run_id, time, level, kind, message, data) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (run_id, time.time(), level, kind, message, json.dumps(data or {})))

    def get_events(self, run_id: str, kind: str | None = None, after_id: int = 0) -> list[Event]:
        query = "SELECT * FROM events WHERE run_id = ? AND id > ?"
        args: list[Any] = [run_id, after_id]
        if kind:
            query += " AND kind = ?"
            args.append(kind)
        rows = self._conn.execute(query + " ORDER BY id", args).fetchall()
        return [event_from_row(r) for r in rows]

    # -- artifacts and settings ------------------------------------------------------------------

    def add_artifact(self, run_id: str, kind: str, path: str) -> None:
        with self._write() as conn:
            conn.execute(
                "INSERT OR REPLACE INTO artifacts (run_id, kind, path, created_at) "
                "VALUES (?, ?, ?, ?)", (run_id, kind, path, time.time()))

    def get_artifacts(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._conn.execute(
            "SELECT kind, path, created_at FROM artifacts WHERE run_id = ? ORDER BY created_at",
            (run_id,)).fetchall()
        return [dict(r) for r in rows]


    def get_setting(self, key: str, default: str | None = None) -> str | None:
        row = self._conn.execute("SELECT value FROM settings WHERE key = ?", (key,)).fetchone()
        return row[0] if row else default

    def set_setting(self, key: str, value: str) -> None:
        with self._write() as conn:
            conn.execute("INSERT OR REPLACE INTO settings (key, value) VALUES (?, ?)",
                         (key, value))


def _run_filter(status: str | None, search: str) -> tuple[str, tuple[Any, ...]]:
    clauses, args = [], []
    if status:
        clauses.append("status = ?")
        args.append(status)
    if search:
        clauses.append("(id LIKE ? OR name LIKE ? OR dataset LIKE ? OR model LIKE ?)")
        args.extend([f"%{search}%"] * 4)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", tuple(args)
