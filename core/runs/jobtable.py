"""The store's jobs table: every piece of background work, whatever its kind.

Every status change is a compare-and-set in one write transaction, so actors that race (a job
ending, reconciliation, a cancel, two clicks, the dispatcher in two processes) settle on exactly
one outcome, and a terminal status is never overwritten.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from core.errors import RunNotFound
from core.runs.records import ACTIVE, TERMINAL, Job, job_from_row

if TYPE_CHECKING:
    from core.runs.db import Database

_PROGRESS_FIELDS = frozenset({"done", "total", "message", "result", "pid", "pid_start"})


class JobTable:
    """Job methods of :class:`core.runs.store.Store` (a mixin over its connection)."""

    _db: Database  # provided by Store: the engine, behind the dialect seam

    def create_job(self, run_id: str, kind: str, argv: Sequence[str], key: str = "",
                   heavy: bool = False, executor: str = "local") -> Job:
        from core.runs.store import new_run_id

        job_id = "j" + new_run_id()
        now = time.time()
        self._db.write(
            "INSERT INTO jobs (id, run_id, kind, key, heavy, argv, status, created_at, "
            "updated_at, executor) VALUES (?, ?, ?, ?, ?, ?, 'queued', ?, ?, ?)",
            (job_id, run_id, kind, key, int(heavy), json.dumps(list(argv)), now, now, executor))
        return self.get_job(job_id)

    def get_job(self, job_id: str) -> Job:
        row = self._db.one("SELECT * FROM jobs WHERE id = ?", (job_id,))
        if row is None:
            raise RunNotFound(f"No job with id {job_id!r}. `python -m core jobs` lists them.")
        return job_from_row(row)

    def latest_job(self, run_id: str, kind: str, key: str | None = None) -> Job | None:
        query = "SELECT * FROM jobs WHERE run_id = ? AND kind = ?"
        args: list[Any] = [run_id, kind]
        if key is not None:
            query += " AND key = ?"
            args.append(key)
        row = self._db.one(query + " ORDER BY created_at DESC, id DESC LIMIT 1", args)
        return job_from_row(row) if row else None

    def list_jobs(self, statuses: Iterable[str] | None = None, run_id: str | None = None,
                  limit: int = 100) -> list[Job]:
        """Jobs oldest first (queue order), optionally of some statuses or of one run."""
        clauses, args = [], []
        if statuses is not None:
            statuses = tuple(statuses)
            clauses.append(f"status IN ({', '.join('?' * len(statuses))})")
            args.extend(statuses)
        if run_id is not None:
            clauses.append("run_id = ?")
            args.append(run_id)
        where = ("WHERE " + " AND ".join(clauses)) if clauses else ""
        rows = self._db.query(f"SELECT * FROM jobs {where} ORDER BY created_at, id LIMIT ?",
                              (*args, limit))
        return [job_from_row(r) for r in rows]

    def active_job_ids(self) -> frozenset[str]:
        """The ids of the queued and running jobs: a cheap read for frequent polls."""
        rows = self._db.query("SELECT id FROM jobs WHERE status IN "
                              f"({', '.join('?' * len(ACTIVE))})", tuple(ACTIVE))
        return frozenset(r["id"] for r in rows)

    def active_jobs(self, run_id: str | None = None) -> list[Job]:
        return self.list_jobs(ACTIVE, run_id=run_id, limit=10_000)

    def update_job(self, job_id: str, **fields: Any) -> None:
        """Progress and bookkeeping only (done, total, message, result, pid); never the status.

        Writes to a job that has ended are dropped: a late progress report cannot touch it.
        """
        unknown = set(fields) - _PROGRESS_FIELDS
        if unknown:
            raise ValueError(f"not progress fields: {sorted(unknown)} (use set_job_status)")
        if "result" in fields:
            fields["result"] = json.dumps(fields["result"], default=str)
        fields["updated_at"] = time.time()
        cols = ", ".join(f"{k} = ?" for k in fields)
        self._db.write(f"UPDATE jobs SET {cols} WHERE id = ? AND status IN ('queued', "
                       "'running')", (*fields.values(), job_id))

    def set_job_status(self, job_id: str, status: str, *, expect: Iterable[str] = ACTIVE,
                       error: str | None = None, result: Any = None) -> bool:
        """Move a job to ``status`` only from one of ``expect``; True if this call moved it."""
        now = time.time()
        sets, args = ["status = ?", "updated_at = ?"], [status, now]
        if status == "running":
            sets.append("started_at = ?")
            args.append(now)
        elif status in TERMINAL:
            sets.append("ended_at = ?")
            args.append(now)
        if error is not None:
            sets.append("error = ?")
            args.append(error)
        if result is not None:
            sets.append("result = ?")
            args.append(json.dumps(result, default=str))
        expect = tuple(expect)
        query = (f"UPDATE jobs SET {', '.join(sets)} WHERE id = ? "
                 f"AND status IN ({', '.join('?' * len(expect))})")
        return self._db.write(query, (*args, job_id, *expect)) > 0

    def request_cancel(self, job_id: str) -> None:
        self._db.write("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))

    def claim_next_job(self, slots: int) -> Job | None:
        """Mark the next due queued job ``running`` and return it (None when nothing is due).

        Light jobs are always due; a heavy one only while fewer than ``slots`` heavy jobs run.
        Queue order is creation order. One short write transaction under the ``queue`` lock
        (SQLite: its write lock; PostgreSQL: an advisory lock, so two dispatchers never overfill
        the slots), the row taken with ``FOR UPDATE SKIP LOCKED`` on PostgreSQL: a job another
        transaction holds (a cancel) is passed over, never waited for.
        """
        def claim(tx: Any) -> str | None:
            self._db.lock(tx, "queue")
            running = tx.execute(
                "SELECT COUNT(*) FROM jobs WHERE status = 'running' AND heavy = 1").fetchone()[0]
            query = "SELECT id FROM jobs WHERE status = 'queued'"
            if running >= slots:
                query += " AND heavy = 0"
            row = tx.execute(query + " ORDER BY created_at, id LIMIT 1"
                             + self._db.skip_locked).fetchone()
            if row is None:
                return None
            now = time.time()
            tx.execute("UPDATE jobs SET status = 'running', started_at = ?, updated_at = ? "
                       "WHERE id = ?", (now, now, row[0]))
            return row[0]

        job_id = self._db.transaction(claim)
        return self.get_job(job_id) if job_id is not None else None

    def queue_position(self, job_id: str) -> int:
        """How many heavy jobs are queued before this one (0: it starts next)."""
        job = self.get_job(job_id)
        return self._db.one(
            "SELECT COUNT(*) FROM jobs WHERE status = 'queued' AND heavy = 1 AND "
            "(created_at < ? OR (created_at = ? AND id < ?))",
            (job.created_at, job.created_at, job.id))[0]
