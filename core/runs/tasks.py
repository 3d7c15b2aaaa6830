"""Transitional: the old task names over :mod:`core.runs.jobs` (removed with their callers)."""

from __future__ import annotations

from collections.abc import Sequence

from core.runs.body import JobProgress as Progress  # noqa: F401
from core.runs.jobs import cancel_job, python_core, reconcile, submit
from core.runs.records import Job as Task  # noqa: F401
from core.runs.store import Store


def launch_task(store: Store, run_id: str, kind: str, argv: Sequence[str],
                key: str = "") -> Task:
    return submit(store, run_id, kind, python_core(*argv), key=key)


def reconcile_tasks(store: Store) -> None:
    reconcile(store)


def cancel_task(store: Store, task_id: str) -> None:
    try:
        cancel_job(store, task_id, grace=5.0)
    except Exception:  # noqa: BLE001 - transitional: the old call never raised
        pass
