"""Background tasks on a run: any CLI command, detached, with its progress in the store.

A page never evaluates a large split or runs a heavy explanation in the Streamlit script; it
calls ``launch_task(store, run_id, "evaluate", ["evaluate", run_id, "--split", "test"])`` and
reads ``store.latest_task(run_id, "evaluate")`` back (status, done/total, message, result). The
command itself reports through ``Progress``, which also draws a tqdm bar on stderr.
"""

from __future__ import annotations

import signal
import sys
import time
from collections.abc import Sequence

from core.runs.processes import is_alive, signal_group, spawn_detached
from core.runs.store import ACTIVE, Store, Task
from core.workspace import run_dir


def launch_task(store: Store, run_id: str, kind: str, argv: Sequence[str],
                key: str = "") -> Task:
    """Start ``python -m core ARGV --task ID`` detached; returns the queued task."""
    store.get_run(run_id)  # a clear error for an unknown run, before anything starts
    task = store.create_task(run_id, kind, key)
    pid, start = spawn_detached(
        ["-m", "core", *argv, "--home", str(store.home), "--task", task.id],
        run_dir(store.home, run_id) / f"task-{kind}.log")
    store.update_task(task.id, pid=pid, pid_start=start)
    return store.get_task(task.id)


def reconcile_tasks(store: Store) -> None:
    """A task whose process is gone without finishing becomes ``interrupted``."""
    for task in store.active_tasks():
        if task.pid is None and time.time() - task.created_at < 30:
            continue
        if task.pid is not None and is_alive(task.pid, task.pid_start):
            continue
        store.update_task(task.id, status="interrupted",
                          error="The task's process ended before it finished.")


def cancel_task(store: Store, task_id: str) -> None:
    task = store.get_task(task_id)
    if task.status in ACTIVE and task.pid and is_alive(task.pid, task.pid_start):
        signal_group(task.pid, signal.SIGKILL)
    store.update_task(task_id, status="interrupted", error="Cancelled")


class Progress:
    """``progress(done, total, message="")``: a tqdm bar on stderr and, for a task, the store.

    Store writes are throttled (``every_s``) so progress never slows the work it reports.
    """

    def __init__(self, desc: str, store: Store | None = None, task_id: str | None = None,
                 every_s: float = 0.3):
        from tqdm import tqdm

        self.bar = tqdm(desc=desc, file=sys.stderr, leave=False, dynamic_ncols=True)
        self.store, self.task_id, self.every_s = store, task_id, every_s
        self._last = 0.0

    def __call__(self, done: int, total: int, message: str = "") -> None:
        self.bar.total = total
        self.bar.n = done
        self.bar.refresh()
        now = time.monotonic()
        if self.task_id and (now - self._last >= self.every_s or done >= total):
            self._last = now
            self.store.update_task(self.task_id, done=done, total=total, message=message)

    def close(self) -> None:
        self.bar.close()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
