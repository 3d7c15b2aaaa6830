"""The records the run store hands out: runs, tasks and events, with JSON columns decoded."""

from __future__ import annotations

import json
import sqlite3
import time
from dataclasses import dataclass, field
from typing import Any

ACTIVE = ("queued", "running")
TERMINAL = ("completed", "failed", "cancelled", "interrupted")
STATUSES = ACTIVE + TERMINAL


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
class Task:
    """A background piece of work on a run (evaluate, explain, export, ...), with progress."""

    id: str
    run_id: str
    kind: str
    key: str
    status: str  # queued | running | completed | failed | interrupted
    done: int
    total: int
    message: str
    error: str | None
    result: Any
    pid: int | None
    pid_start: str | None
    created_at: float
    updated_at: float

    @property
    def is_active(self) -> bool:
        return self.status in ACTIVE

    @property
    def progress(self) -> float:
        return min(1.0, self.done / self.total) if self.total else 0.0



def run_from_row(row: sqlite3.Row) -> Run:
    values = dict(row)
    values["config"] = json.loads(values["config"])
    values["summary"] = json.loads(values["summary"] or "{}")
    return Run(**values)


def task_from_row(row: sqlite3.Row) -> Task:
    values = dict(row)
    values["result"] = json.loads(values["result"]) if values["result"] else None
    return Task(**values)


