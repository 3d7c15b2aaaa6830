"""Background jobs: launch, cancel, resume, delete, and reconcile after a crash.

A job is a detached process (``core.runs.processes``) running ``python -m core _job RUN``, or
``torchrun`` around it for ``nproc > 1``. The store keeps its pid and the process's start time,
so a pid reused by another program after a crash is not taken for the job. This module never
imports torch.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import time
from pathlib import Path

from core.config import RunConfig
from core.errors import InvalidRunState
from core.runs.processes import is_alive, signal_group, spawn_detached, wait_dead
from core.runs.store import ACTIVE, Run, Store
from core.workspace import run_dir

log = logging.getLogger(__name__)


def create_run(store: Store, config: RunConfig, name: str = "") -> Run:
    """Validate the config, record a queued run and write its ``config.json``."""
    from core.data import get_info  # validates the dataset name (cheap, torch-free)

    config.validate()
    get_info(config.data.dataset, store.home)
    run = store.create_run(config.to_dict(), name=name)
    folder = run_dir(store.home, run.id)
    folder.mkdir(parents=True, exist_ok=True)
    config.save(folder / "config.json")
    return run


def launch(store: Store, config: RunConfig, name: str = "") -> Run:
    """Create a run and start it in the background; returns at once."""
    run = create_run(store, config, name)
    spawn(store, run.id)
    return store.get_run(run.id)


def job_command(run_id: str, home: Path, nproc: int = 1, resume: bool = False) -> list[str]:
    """The arguments after ``python``: the job body, under torchrun when distributed."""
    args = ["-m", "core", "_job", run_id, "--home", str(home)] + (["--resume"] if resume else [])
    if nproc > 1:
        return ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                *args]
    return args


def spawn(store: Store, run_id: str, resume: bool = False) -> int:
    """Start the job process detached from this one; it outlives the UI or the shell."""
    run = store.get_run(run_id)
    nproc = run.config["train"]["nproc"]
    env = {}
    # Two cores shared by several jobs: OpenMP threads that spin-wait for each other make every
    # job several times slower, so a job that is not alone (or is one of N DDP ranks) gets one.
    if nproc > 1 or len(store.active_runs()) > 1:
        env["OMP_NUM_THREADS"] = os.environ.get("OMP_NUM_THREADS", "1")
    pid, start = spawn_detached(job_command(run_id, store.home, nproc, resume),
                                run_dir(store.home, run_id) / "log.txt", env)
    store.update_run(run_id, pid=pid, pid_start=start, heartbeat=time.time())
    return pid


def cancel(store: Store, run_id: str, timeout: float = 20.0) -> Run:
    """SIGTERM the job (it checkpoints and ends ``cancelled``), SIGKILL after ``timeout``."""
    run = store.get_run(run_id)
    if run.status not in ACTIVE:
        raise InvalidRunState(f"Run {run_id} is {run.status}; only queued or running runs can "
                              "be cancelled.")
    if run.pid and is_alive(run.pid, run.pid_start):
        signal_group(run.pid, signal.SIGTERM)
        if not wait_dead(run.pid, run.pid_start, timeout):
            log.warning("Run %s ignored SIGTERM for %.0fs; killing it", run_id, timeout)
            signal_group(run.pid, signal.SIGKILL)
            wait_dead(run.pid, run.pid_start, 5.0)
    # The job sets "cancelled" itself after checkpointing; this covers a job that was killed,
    # never started, or died first.
    if store.set_status(run_id, "cancelled", expect=ACTIVE):
        store.add_event(run_id, "cancelled", "Cancelled")
    return store.get_run(run_id)


def resume(store: Store, run_id: str, detach: bool = True) -> Run:
    """Continue an interrupted or cancelled run from its last checkpoint, in the same run id."""
    reconcile(store)
    run = store.get_run(run_id)
    if run.status not in ("interrupted", "cancelled"):
        raise InvalidRunState(f"Run {run_id} is {run.status}; only interrupted or cancelled "
                              "runs can be resumed (clone a failed run to try again).")
    has_checkpoint = (run_dir(store.home, run_id) / "checkpoints" / "last.pt").is_file()
    store.update_run(run_id, error=None)
    store.set_status(run_id, "queued")
    if detach:
        spawn(store, run_id, resume=has_checkpoint)
    return store.get_run(run_id)


def delete(store: Store, run_id: str) -> None:
    """Remove a finished run with its artifacts; a live run must be cancelled first."""
    reconcile(store)
    run = store.get_run(run_id)
    if run.status in ACTIVE:
        raise InvalidRunState(f"Run {run_id} is {run.status}; stop it before deleting it.")
    shutil.rmtree(run_dir(store.home, run_id), ignore_errors=True)
    store.delete_run(run_id)


def reconcile(store: Store) -> list[str]:
    """Mark runs whose process is gone without a terminal status as ``interrupted``."""
    changed = []
    for run in store.active_runs():
        if run.pid is None:
            # Queued but never spawned (the launcher itself died): stale after a grace period.
            if time.time() - run.created_at < 30:
                continue
        elif is_alive(run.pid, run.pid_start):
            continue
        if store.set_status(run.id, "interrupted", expect=ACTIVE,
                            error="The job's process ended without finishing the run "
                                  "(killed or crashed). Resume it to continue."):
            store.add_event(run.id, "interrupted", "Process gone; marked interrupted",
                            level="warning")
            changed.append(run.id)
    return changed
