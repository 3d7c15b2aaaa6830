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

from core.errors import RunNotFound
from core.runs.records import (  # noqa: F401  (re-exported: callers import them from the store)
    ACTIVE,
    STATUSES,
    TERMINAL,
    Event,
    Run,
    Task,
    run_from_row,
    task_from_row,
)
from core.workspace import db_path, resolve_home

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
    summary TEXT NOT NULL DEFAULT '{}'
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
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    key TEXT NOT NULL DEFAULT '',
    status TEXT NOT NULL,
    done INTEGER NOT NULL DEFAULT 0,
    total INTEGER NOT NULL DEFAULT 0,
    message TEXT NOT NULL DEFAULT '',
    error TEXT,
    result TEXT,
    pid INTEGER,
    pid_start TEXT,
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS tasks_run ON tasks(run_id, kind, key, created_at);
CREATE TABLE IF NOT EXISTS artifacts (
    run_id TEXT NOT NULL,
    kind TEXT NOT NULL,
    path TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, kind, path)
);
"""

_RUN_COLUMNS = (
    "id name status dataset model config created_at started_at ended_at pid pid_start heartbeat "
    "device epoch total_epochs step total_steps best_metric error summary"
).split()


def new_run_id() -> str:
    """Sortable and unique: creation time plus random bits."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


class Store:
    """Reads and writes the run store. Cheap to create; one per process or thread."""

    def __init__(self, home: str | Path | None = None, timeout: float = 30.0):
        self.home = resolve_home(home)
        self.path = db_path(self.home)
        self._conn = sqlite3.connect(self.path, timeout=timeout, isolation_level=None,
                                     check_same_thread=False)
        self._conn.row_factory = sqlite3.Row
        self._conn.execute(f"PRAGMA busy_timeout={int(timeout * 1000)}")
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)  # idempotent; executescript manages its transaction

    def close(self) -> None:
        self._conn.close()

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        # BEGIN IMMEDIATE takes the write lock up front, so a writer waits (busy timeout) at the
        # start instead of failing half-way with "database is locked" on lock upgrade.
        self._conn.execute("BEGIN IMMEDIATE")
        try:
            yield self._conn
        except BaseException:
            self._conn.execute("ROLLBACK")
            raise
        self._conn.execute("COMMIT")

    # -- runs ------------------------------------------------------------------------------------

    def create_run(self, config: dict[str, Any], name: str = "", run_id: str | None = None) -> Run:
        run_id = run_id or new_run_id()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO runs (id, name, status, dataset, model, config, created_at, "
                "total_epochs) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?)",
                (run_id, name, config["data"]["dataset"], config["model"]["name"],
                 json.dumps(config), time.time(), config["train"]["epochs"]),
            )
        return self.get_run(run_id)

    def get_run(self, run_id: str) -> Run:
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
        cancel) settle on exactly one terminal status.
        """
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
            for table, col in (("metrics", "run_id"), ("events", "run_id"), ("tasks", "run_id"),
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
        return [Event(**{**dict(r), "data": json.loads(r["data"])}) for r in rows]

    # -- tasks -----------------------------------------------------------------------------------

    def create_task(self, run_id: str, kind: str, key: str = "") -> Task:
        task_id = new_run_id()
        now = time.time()
        with self._write() as conn:
            conn.execute(
                "INSERT INTO tasks (id, run_id, kind, key, status, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, 'queued', ?, ?)", (task_id, run_id, kind, key, now, now))
        return self.get_task(task_id)

    def update_task(self, task_id: str, **fields: Any) -> None:
        if "result" in fields:
            fields["result"] = json.dumps(fields["result"], default=str)
        fields["updated_at"] = time.time()
        cols = ", ".join(f"{k} = ?" for k in fields)
        with self._write() as conn:
            conn.execute(f"UPDATE tasks SET {cols} WHERE id = ?", (*fields.values(), task_id))

    def get_task(self, task_id: str) -> Task:
        row = self._conn.execute("SELECT * FROM tasks WHERE id = ?", (task_id,)).fetchone()
        if row is None:
            raise RunNotFound(f"No task with id {task_id!r}.")
        return task_from_row(row)

    def latest_task(self, run_id: str, kind: str, key: str | None = None) -> Task | None:
        query = "SELECT * FROM tasks WHERE run_id = ? AND kind = ?"
        args: list[Any] = [run_id, kind]
        if key is not None:
            query += " AND key = ?"
            args.append(key)
        row = self._conn.execute(query + " ORDER BY created_at DESC, id DESC LIMIT 1",
                                 args).fetchone()
        return task_from_row(row) if row else None

    def active_tasks(self) -> list[Task]:
        rows = self._conn.execute(
            "SELECT * FROM tasks WHERE status IN ('queued', 'running')").fetchall()
        return [task_from_row(r) for r in rows]

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


def _run_filter(status: str | None, search: str) -> tuple[str, tuple[Any, ...]]:
    clauses, args = [], []
    if status:
        clauses.append("status = ?")
        args.append(status)
    if search:
        clauses.append("(id LIKE ? OR name LIKE ? OR dataset LIKE ? OR model LIKE ?)")
        args.extend([f"%{search}%"] * 4)
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", tuple(args)
