"""The job's side of background work: what a process started with ``--job ID`` records.

The dispatcher has already moved the job to ``running`` and recorded the pid it spawned (the
group leader: torchrun's launcher for distributed training), so the body never writes a pid. It
turns SIGTERM into ``KeyboardInterrupt`` for commands that have no handler of their own, reports
progress, and at the end sets exactly one terminal status, then starts what the queue lets through.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from typing import TYPE_CHECKING, Any

from core.runs.jobs import dispatch, settle_run
from core.runs.records import TERMINAL
from core.runs.store import Store
from core.runs.waiting import ring_job_end

if TYPE_CHECKING:
    from core.workspace import Workspace


class JobBody:
    """Bookkeeping of one job process: ``start()``, ``progress(...)``, ``finish(...)``.

    Under torchrun every rank receives ``--job``; only rank 0 records anything. It writes
    through the workspace's store, which the workspace's owner (the CLI) closes.
    """

    def __init__(self, ws: Workspace, job_id: str):
        self.job_id = job_id
        self.active = os.environ.get("RANK", "0") == "0"
        self.store = ws.store if self.active else None

    def start(self) -> bool:
        """False when the job is no longer running (cancelled before this process got here)."""
        if not self.active:
            return True
        if self.store.get_job(self.job_id).status != "running":
            return False
        try:
            signal.signal(signal.SIGTERM, _interrupt)
        except ValueError:  # not the main thread
            pass
        return True

    def finish(self, code: int, error: str | None = None, result: Any = None,
               status: str | None = None) -> None:
        """Record the outcome: ``status`` if the command knows it (a training run's own status),
        ``cancelled`` after a cancel request, else completed (exit 0) or failed."""
        if not self.active:
            return
        job = self.store.get_job(self.job_id)
        if status not in TERMINAL:
            status = "completed" if code == 0 else "failed"
        if job.cancel_requested and status == "failed":  # stopped by the cancel's SIGTERM
            status, error = "cancelled", "Cancelled."
        if status == "failed" and not error:
            error = f"exited with status {code}"
        if self.store.set_job_status(self.job_id, status, expect=("running",), error=error,
                                     result=result) and status != "completed":
            settle_run(self.store, job, status, error or status)
        dispatch(self.store)  # the slot this job held is free: start the next one
        ring_job_end(self.store, job.run_id)  # whoever waits on it wakes now, not at its tick


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


class JobProgress:
    """``progress(done, total, message="")``: a tqdm bar on stderr and, for a job, its row.

    Store writes are throttled (``every_s``) so progress never slows the work it reports. The
    store is borrowed: whoever opened it closes it.
    """

    def __init__(self, desc: str, store: Store | None = None, job_id: str | None = None,
                 every_s: float = 0.3):
        from tqdm import tqdm

        self.bar = tqdm(desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)
        self.store, self.job_id, self.every_s = store, job_id, every_s
        self._last = 0.0

    def __call__(self, done: int, total: int, message: str = "") -> None:
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()
        now = time.monotonic()
        if self.job_id and (now - self._last >= self.every_s or done >= total):
            self._last = now
            self.store.update_job(self.job_id, done=done, total=total, message=message)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> JobProgress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
