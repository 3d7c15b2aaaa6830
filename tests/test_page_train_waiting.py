"""What the Train page shows between Launch and the first loss point: what the run waits for, in
words, and charts without axes or traces until there is a point to draw (then the curve).

The queue is real: a heavy job holding the only slot (its pid is this test's process, so it counts
as alive) and two training jobs queued behind it, in a real SQLite store; nothing is spawned.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from conftest import open_page

from core.config import RunConfig
from core.runs import set_max_jobs
from core.runs.processes import process_start_time
from core.runs.store import Store
from ui.monitor import starting_phase

PAGE = "pages/train.py"


def queued_run(store: Store, name: str):
    """A run and its training job, queued as ``launch`` leaves them when no slot is free."""
    run = store.create_run(RunConfig().to_dict(), name=name)
    job = store.create_job(run.id, "train", ["-c", "pass"], heavy=True)
    return run, job


def figures(at) -> dict[str, dict]:
    """The page's Plotly figures by their element id's key (``train_loss_chart``, ...)."""
    keys = ("train_loss_chart", "train_acc_chart", "train_lr_chart")
    return {next((k for k in keys if k in chart.proto.id), chart.proto.id):
            json.loads(chart.proto.spec) for chart in at.get("plotly_chart")}


def is_placeholder(fig: dict) -> bool:
    layout = fig["layout"]
    return (not fig["data"] and layout["xaxis"]["visible"] is False
            and layout["yaxis"]["visible"] is False and bool(layout["annotations"]))


def test_a_queued_run_says_it_waits_and_draws_no_axes_until_its_first_point(home: Path):
    store = Store(home)
    set_max_jobs(store, 1)
    busy, _ = queued_run(store, "holds the slot")
    holder = store.claim_next_job(1)
    store.update_job(holder.id, pid=os.getpid(), pid_start=process_start_time(os.getpid()))
    store.set_status(busy.id, "running")
    queued_run(store, "first in line")
    waiting, _ = queued_run(store, "second in line")
    try:
        at = open_page(PAGE, active_run=waiting.id)
        said = " ".join(i.value for i in at.info)
        assert "Queued behind 1 job" in said, said
        assert not at.get("progress")  # no bar sitting at 0%
        charts = figures(at)
        assert set(charts) == {"train_loss_chart", "train_acc_chart"}
        assert all(is_placeholder(f) for f in charts.values())  # no axes, no traces
        assert not any(c.value.startswith("Loss curve:") for c in at.caption)

        # It starts and logs its first step losses: the chart appears, the waiting line goes.
        store.set_status(waiting.id, "running")
        store.update_run(waiting.id, total_steps=100, total_epochs=1, step=20, device="cpu")
        store.log_metrics(waiting.id, [(10, "train/step_loss", 2.3), (20, "train/step_loss", 2.1)])
        at.run()
        assert not at.exception, [e.value for e in at.exception]
        assert not any("Queued" in i.value or "Waiting for" in i.value for i in at.info)
        charts = figures(at)
        loss = charts["train_loss_chart"]
        assert not is_placeholder(loss) and sum(len(t["x"]) for t in loss["data"]) == 2
        assert is_placeholder(charts["train_acc_chart"])  # until the first epoch ends
        assert "Loss curve: 2 points" in [c.value for c in at.caption]
        assert at.get("progress")
    finally:
        for run in store.active_runs():
            store.set_status(run.id, "cancelled")
        for job in store.active_jobs():
            store.set_job_status(job.id, "cancelled")
        store.close()


def test_each_step_before_the_first_point_is_said_plainly(home: Path):
    """Queue, process start, loading, first steps: the words follow the store's state."""
    store = Store(home)
    run, job = queued_run(store, "starting")
    try:
        assert "behind 2 jobs" in starting_phase(run, job, ahead=2)
        assert "starts next" in starting_phase(run, job, ahead=0)
        job = store.claim_next_job(1)  # the dispatcher started its process
        assert "Starting the job's process" in starting_phase(store.get_run(run.id), job, 0)
        store.set_status(run.id, "running")  # the process claimed the run
        assert "Loading" in starting_phase(store.get_run(run.id), job, 0)
        store.update_run(run.id, total_steps=50)  # the trainer is built
        assert "first loss point" in starting_phase(store.get_run(run.id), job, 0)
    finally:
        store.set_status(run.id, "cancelled")
        store.set_job_status(job.id, "cancelled")
        store.close()
