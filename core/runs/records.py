"""The records the run store hands out: runs, jobs and events, with JSON columns decoded.

A **run** is a model being made (trained, a tuning trial, pruned, distilled, an ensemble, a CV
fold), with its lineage (``kind``, ``parent_run``). A **job** is one piece of background work on a
run — training it, evaluating, explaining, exporting, serving — with the same statuses, progress,
result and error whatever its kind.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

ACTIVE = ("queued", "running")
# "pruned": a tuning trial its study stopped early (a verdict on its settings, not resumable).
TERMINAL = ("completed", "failed", "cancelled", "interrupted", "pruned")
STATUSES = (*ACTIVE, *TERMINAL)
RESUMABLE = ("interrupted", "cancelled")

# How a run came to be (its lineage); shown in the runs table and in `status RUN`. A ``cv`` run is
# the parent of its ``cv_fold`` runs: it trains nothing itself and has no model of its own.
RUN_KINDS = ("trained", "trial", "pruned", "distilled", "ensemble", "cv_fold", "cv",
             "lr_find",  # lr_find: a learning-rate range test (a curve, no model)
             "study")  # study: the parent of its ``trial`` runs (core.tune), like ``cv``
# Jobs that hold a slot of the workspace queue. Everything else (evaluate, explain, predict,
# export, bench, serve) is light and never waits behind a training job.
HEAVY_KINDS = frozenset({"train", "trial", "prune", "distill", "ensemble", "cv", "lr_find",
                         "batch_find"})  # batch_find: a job about a dataset, no run
# A study's driver (core.tune): a light job that waits on its trials (it must not hold a queue
# slot) and spends a few ms on Optuna between them.
DRIVER_KIND = "tune"
# Jobs that mostly wait: no company when a job's thread count is chosen (core.runs.jobs).
WAITING_KINDS = frozenset({DRIVER_KIND})


@dataclass
class Run:
    """One row of the runs table, with JSON columns decoded."""

    id: str
    name: str
    status: str
    dataset: str
    model: str
    config: dict[str, Any]
    created_at: float
    started_at: float | None = None
    ended_at: float | None = None
    pid: int | None = None
    pid_start: str | None = None
    heartbeat: float | None = None
    device: str | None = None
    epoch: int = 0
    total_epochs: int = 0
    step: int = 0
    total_steps: int = 0
    best_metric: float | None = None
    error: str | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    kind: str = "trained"
    parent_run: str | None = None

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    @property
    def duration(self) -> float | None:
        """Seconds from start to end (or to now while running)."""
        if self.started_at is None:
            return None
        return (self.ended_at or time.time()) - self.started_at

    @property
    def progress(self) -> float:
        return min(1.0, self.step / self.total_steps) if self.total_steps else 0.0

    def eta(self) -> float | None:
        """Seconds left, extrapolated from the steps done so far in this process."""
        rate = self.summary.get("steps_per_s")
        if not self.is_active or not rate or not self.total_steps:
            return None
        return max(0.0, (self.total_steps - self.step) / rate)


@dataclass
class Event:
    id: int
    run_id: str
    time: float
    level: str
    kind: str
    message: str
    data: dict[str, Any]


@dataclass
class Job:
    """One piece of background work on a run, with its progress and outcome."""

    id: str
    run_id: str
    kind: str  # train, evaluate, explain, export, bench, serve, ...
    key: str  # what the job is about within its kind (a split, an input hash, a format)
    heavy: bool  # holds a slot of the workspace queue while it runs
    argv: list[str]  # the process's arguments after `python`
    status: str
    done: int
    total: int
    message: str
    error: str | None
    result: Any
    pid: int | None
    pid_start: str | None
    cancel_requested: bool
    created_at: float
    started_at: float | None
    ended_at: float | None
    updated_at: float
    executor: str = "local"  # where its process runs (core.runs.executors)

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    @property
    def progress(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0


def run_from_row(row: Mapping[str, Any]) -> Run:
    values = dict(row)
    values["config"] = json.loads(values["config"])
    values["summary"] = json.loads(values["summary"] or "{}")
    return Run(**values)


def job_from_row(row: Mapping[str, Any]) -> Job:
    values = dict(row)
    values["result"] = json.loads(values["result"]) if values["result"] else None
    values["argv"] = json.loads(values["argv"])
    values["heavy"] = bool(values["heavy"])
    values["cancel_requested"] = bool(values["cancel_requested"])
    return Job(**values)


def event_from_row(row: Mapping[str, Any]) -> Event:
    return Event(**{**dict(row), "data": json.loads(row["data"])})
