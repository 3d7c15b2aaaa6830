"""The run store: the one channel between jobs (writers) and the dashboard (readers).

By default one SQLite file (WAL) in the workspace; ``postgresql://...`` (``--store``,
``$LAB2MARKET_STORE``) puts it in PostgreSQL for a team. Each query is written once here, with
``?`` placeholders; what the engines do differently lives in :mod:`core.runs.db`, and the
schema in :mod:`core.runs.migrations`. Every reader is a small query that never blocks a writer,
every writer one short transaction.
"""

from __future__ import annotations

import json
import secrets
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from core.errors import RunNotFound
from core.runs.db import open_database
from core.runs.jobtable import JobTable
from core.runs.migrations import migrate
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
from core.workspace import check_name, resolve_home, resolve_store_url

_RUN_COLUMNS = (
    "id name status dataset model config created_at started_at ended_at pid pid_start heartbeat "
    "device epoch total_epochs step total_steps best_metric error summary kind parent_run"
).split()


def new_run_id() -> str:
    """Sortable and unique: creation time plus random bits."""
    return time.strftime("%Y%m%d-%H%M%S") + "-" + secrets.token_hex(3)


class Store(JobTable):
    """Reads and writes the run store. Cheap to create; one per process or thread.

    ``url``: the engine (default: ``$LAB2MARKET_STORE``, else the workspace's SQLite file);
    ``executor``: where the jobs it queues run (default: ``core.runs.executors.executor_name``).
    A context manager: ``with Store(home) as store: ...`` closes the connection.
    """

    def __init__(self, home: str | Path | None = None, timeout: float = 30.0,
                 url: str | None = None, executor: str | None = None):
        self.home = resolve_home(home)
        self.url = resolve_store_url(url)
        self.executor = executor  # where jobs queued through this store run (None: the setting)
        self._db = open_database(self.url, self.home, timeout, prepare=migrate)
        self.read_only = self._db.read_only
        self.path: Path | None = getattr(self._db, "path", None)  # the SQLite file, if one

    @property
    def dialect(self) -> str:
        """``sqlite`` or ``postgresql``."""
        return self._db.dialect

    @property
    def display_url(self) -> str:
        """Where the store is, for a person (no password)."""
        return self._db.display

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- runs ------------------------------------------------------------------------------------

    def create_run(self, config: dict[str, Any], name: str = "", run_id: str | None = None,
                   kind: str = "trained", parent_run: str | None = None) -> Run:
        run_id = check_name("run", run_id or new_run_id())
        self._db.write(
            "INSERT INTO runs (id, name, status, dataset, model, config, created_at, "
            "total_epochs, kind, parent_run) VALUES (?, ?, 'queued', ?, ?, ?, ?, ?, ?, ?)",
            (run_id, name, config["data"]["dataset"], config["model"]["name"],
             json.dumps(config), time.time(), config["train"]["epochs"], kind, parent_run))
        return self.get_run(run_id)

    def get_run(self, run_id: str) -> Run:
        # An id that cannot be a run id (``..``, a path) is simply not found; no path is built.
        row = self._db.one("SELECT * FROM runs WHERE id = ?", (run_id,))
        if row is None:
            raise RunNotFound(f"No run with id {run_id!r}. `python -m core runs` lists them.")
        return run_from_row(row)

    def run_statuses(self, run_ids: Sequence[str]) -> dict[str, str]:
        """``{id: status}`` of these runs (absent: deleted): a cheap read for frequent polls."""
        if not run_ids:
            return {}
        marks = ", ".join("?" * len(run_ids))
        rows = self._db.query(f"SELECT id, status FROM runs WHERE id IN ({marks})",
                              tuple(run_ids))
        return {r["id"]: r["status"] for r in rows}

    def list_runs(self, limit: int = 50, offset: int = 0, status: str | None = None,
                  search: str = "") -> list[Run]:
        where, args = self._run_filter(status, search)
        rows = self._db.query(
            f"SELECT * FROM runs {where} ORDER BY created_at DESC, id DESC LIMIT ? OFFSET ?",
            (*args, limit, offset))
        return [run_from_row(r) for r in rows]

    def count_runs(self, status: str | None = None, search: str = "") -> int:
        where, args = self._run_filter(status, search)
        return self._db.one(f"SELECT COUNT(*) FROM runs {where}", args)[0]

    def child_runs(self, parent_run: str, kind: str | None = None) -> list[Run]:
        """The runs made under ``parent_run`` (of ``kind``), oldest first."""
        query, args = "SELECT * FROM runs WHERE parent_run = ?", [parent_run]
        if kind is not None:
            query += " AND kind = ?"
            args.append(kind)
        return [run_from_row(r) for r in self._db.query(query + " ORDER BY created_at, id",
                                                        args)]

    def active_runs(self) -> list[Run]:
        rows = self._db.query("SELECT * FROM runs WHERE status IN ('queued', 'running')")
        return [run_from_row(r) for r in rows]

    def update_run(self, run_id: str, **fields: Any) -> None:
        """Set columns of a run; ``summary`` is merged into the stored JSON, not replaced."""
        if not fields:
            return
        unknown = set(fields) - set(_RUN_COLUMNS)
        if unknown:
            raise ValueError(f"unknown run columns: {sorted(unknown)}")
        if "config" in fields:
            fields["config"] = json.dumps(fields["config"])

        def update(tx: Any) -> None:
            values = dict(fields)
            if "summary" in values:  # read-modify-write: the row is locked until the commit
                row = tx.execute(f"SELECT summary FROM runs WHERE id = ?{self._db.for_update}",
                                 (run_id,)).fetchone()
                merged = json.loads(row["summary"]) if row else {}
                merged.update(values["summary"])
                values["summary"] = json.dumps(merged)
            cols = ", ".join(f"{k} = ?" for k in values)
            tx.execute(f"UPDATE runs SET {cols} WHERE id = ?", (*values.values(), run_id))

        self._db.transaction(update)

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
        return self._db.write(query, args) > 0

    def delete_run(self, run_id: str) -> None:
        def delete(tx: Any) -> None:
            for table, col in (("metrics", "run_id"), ("events", "run_id"), ("jobs", "run_id"),
                               ("artifacts", "run_id"), ("runs", "id")):
                tx.execute(f"DELETE FROM {table} WHERE {col} = ?", (run_id,))

        self._db.transaction(delete)

    # -- metrics ---------------------------------------------------------------------------------

    def log_metrics(self, run_id: str, rows: Iterable[tuple[int, str, float]]) -> None:
        """Write many (step, key, value) rows in one transaction (the trainer batches them).

        A (run, key, step) written again is replaced: a resumed run redoes an epoch.
        """
        now = time.time()
        data = [(run_id, int(s), k, float(v), now) for s, k, v in rows]
        if not data:
            return
        self._db.write_many(
            "INSERT INTO metrics (run_id, step, key, value, time) VALUES (?, ?, ?, ?, ?) "
            "ON CONFLICT (run_id, key, step) DO UPDATE SET value = excluded.value, "
            "time = excluded.time", data)

    def metric_keys(self, run_id: str) -> list[str]:
        rows = self._db.query(
            "SELECT DISTINCT key FROM metrics WHERE run_id = ? ORDER BY key", (run_id,))
        return [r[0] for r in rows]

    def get_metrics(self, run_id: str, keys: Iterable[str] | None = None,
                    after_step: int = -1) -> dict[str, list[tuple[int, float]]]:
        """Metric series ``{key: [(step, value), ...]}`` ordered by step, newer than after_step."""
        query = "SELECT key, step, value FROM metrics WHERE run_id = ? AND step > ?"
        args: list[Any] = [run_id, after_step]
        if keys is not None:
            keys = list(keys)
            if not keys:
                return {}
            query += f" AND key IN ({', '.join('?' * len(keys))})"
            args.extend(keys)
        series: dict[str, list[tuple[int, float]]] = {}
        for key, step, value in self._db.query(query + " ORDER BY key, step", args):
            series.setdefault(key, []).append((step, value))
        return series

    def count_metrics(self, run_id: str) -> int:
        return self._db.one("SELECT COUNT(*) FROM metrics WHERE run_id = ?", (run_id,))[0]

    # -- events and artifacts --------------------------------------------------------------------

    def add_event(self, run_id: str, kind: str, message: str, level: str = "info",
                  data: dict[str, Any] | None = None) -> None:
        self._db.write(
            "INSERT INTO events (run_id, time, level, kind, message, data) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (run_id, time.time(), level, kind, message, json.dumps(data or {})))

    def get_events(self, run_id: str, kind: str | None = None, after_id: int = 0) -> list[Event]:
        query = "SELECT * FROM events WHERE run_id = ? AND id > ?"
        args: list[Any] = [run_id, after_id]
        if kind:
            query += " AND kind = ?"
            args.append(kind)
        return [event_from_row(r) for r in self._db.query(query + " ORDER BY id", args)]

    # -- artifacts and settings ------------------------------------------------------------------

    def add_artifact(self, run_id: str, kind: str, path: str) -> None:
        self._db.write(
            "INSERT INTO artifacts (run_id, kind, path, created_at) VALUES (?, ?, ?, ?) "
            "ON CONFLICT (run_id, kind, path) DO UPDATE SET created_at = excluded.created_at",
            (run_id, kind, path, time.time()))

    def get_artifacts(self, run_id: str) -> list[dict[str, Any]]:
        rows = self._db.query(
            "SELECT kind, path, created_at FROM artifacts WHERE run_id = ? ORDER BY created_at",
            (run_id,))
        return [dict(r) for r in rows]

    def get_setting(self, key: str, default: str | None = None) -> str | None:
        row = self._db.one("SELECT value FROM settings WHERE key = ?", (key,))
        return row[0] if row else default

    def set_setting(self, key: str, value: str) -> None:
        self._db.write("INSERT INTO settings (key, value) VALUES (?, ?) "
                       "ON CONFLICT (key) DO UPDATE SET value = excluded.value", (key, value))

    def _run_filter(self, status: str | None, search: str) -> tuple[str, tuple[Any, ...]]:
        clauses, args = [], []
        if status:
            clauses.append("status = ?")
            args.append(status)
        if search:
            like = self._db.like  # case-insensitive on both engines
            clauses.append(f"(id {like} ? OR name {like} ? OR dataset {like} ? "
                           f"OR model {like} ?)")
            args.extend([f"%{search}%"] * 4)
        return ("WHERE " + " AND ".join(clauses)) if clauses else "", tuple(args)
