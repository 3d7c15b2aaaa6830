"""Runs and the background work on them: the store, jobs, the queue, processes, metric series.

The public surface: ``Store``; the run lifecycle (``create_run``, ``launch``, ``resume``,
``cancel``, ``delete``); jobs (``submit``, ``dispatch``, ``reconcile``, ``cancel_job``,
``max_jobs``, ``set_max_jobs``) and the typed launchers in :mod:`core.runs.launchers`.

Each name is imported from its module on first use (PEP 562): ``python -m core`` imports
``core.runs.warm`` before anything else, to hand the command to a warm process, and must not pay
for the store and the job table (~15 ms) when one answers.
"""

from __future__ import annotations

import importlib
from typing import Any

_HOMES = {
    "core.runs.jobs": ("cancel_job", "dispatch", "max_jobs", "reconcile", "set_max_jobs",
                       "submit"),
    "core.runs.lifecycle": ("cancel", "create_run", "delete", "enqueue_training", "launch",
                            "resume"),
    "core.runs.records": ("ACTIVE", "RESUMABLE", "RUN_KINDS", "STATUSES", "TERMINAL", "Event",
                          "Job", "Run"),
    "core.runs.store": ("Store",),
}
_LAZY = {name: module for module, names in _HOMES.items() for name in names}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'core.runs' has no attribute {name!r}")


__all__ = sorted(_LAZY)
