"""Runs and the background work on them: the store, jobs, the queue, processes, metric series.

The public surface: ``Store``; the run lifecycle (``create_run``, ``launch``, ``resume``,
``cancel``, ``delete``); jobs (``submit``, ``dispatch``, ``reconcile``, ``cancel_job``,
``max_jobs``, ``set_max_jobs``) and the typed launchers in :mod:`core.runs.launchers`.
"""

from core.runs.jobs import (
    cancel_job,
    dispatch,
    max_jobs,
    reconcile,
    set_max_jobs,
    submit,
)
from core.runs.lifecycle import cancel, create_run, delete, enqueue_training, launch, resume
from core.runs.records import ACTIVE, RESUMABLE, RUN_KINDS, STATUSES, TERMINAL, Event, Job, Run
from core.runs.store import Store

__all__ = [
    "ACTIVE", "RESUMABLE", "RUN_KINDS", "STATUSES", "TERMINAL", "Event", "Job", "Run", "Store",
    "cancel", "cancel_job", "create_run", "delete", "dispatch", "enqueue_training", "launch",
    "max_jobs", "reconcile", "resume", "set_max_jobs", "submit",
]
