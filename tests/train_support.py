"""A completed run trained in this process: the tests (through conftest) and the benchmarks
share it. Plain Python, no pytest, so a benchmark can import it (with ``tests/`` on its path)."""

from __future__ import annotations

from typing import Any

from core.workspace import Workspace


def train_run(ws: Workspace, **sections: dict[str, Any]) -> str:
    """A completed run trained in-process in the workspace ``ws``; returns its id.

    RunConfig's defaults (digits, the small CNN, batch 64, seed 0) for one epoch, each section
    then updated from ``sections``, e.g. ``train_run(ws, train={"epochs": 2})``.
    """
    from core.config import RunConfig
    from core.runs import create_run
    from core.train import execute_run

    raw = RunConfig().to_dict()
    raw["train"].update(epochs=1, batch_size=64)
    for section, values in sections.items():
        raw[section].update(values)
    run = create_run(ws.store, RunConfig.from_dict(raw))
    summary = execute_run(ws, run.id)
    assert summary["status"] == "completed", summary
    return run.id
