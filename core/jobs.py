"""Background jobs: launch, cancel, resume, delete, and reconcile after a crash.

A job is a detached process (its own session and process group) running
``python -m core _job RUN``, or ``torchrun`` around it for ``nproc > 1``. The store keeps its
pid and the process's start time, so a pid reused by another program after a crash is not taken
for the job. This module never imports torch.
"""

from __future__ import annotations

import logging
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from core.config import RunConfig
from core.errors import InvalidRunState
from core.store import ACTIVE, Run, Store
from core.workspace import run_dir

log = logging.getLogger(__name__)
PROJECT_ROOT = Path(__file__).resolve().parent.parent


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
    args = ["-m", "core", "_job", run_id, "--home", str(home)] + (["--resume"] if resume else [])
    if nproc > 1:
        launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                    f"--nproc_per_node={nproc}"]
        return launcher + args
    return [sys.executable, *args]


def spawn(store: Store, run_id: str, resume: bool = False) -> int:
    """Start the job process detached from this one; it outlives the UI or the shell."""
    run = store.get_run(run_id)
    folder = run_dir(store.home, run_id)
    folder.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "PYTHONPATH": _pythonpath()}
    # Two cores shared by several jobs: OpenMP threads that spin-wait for each other make every
    # job several times slower, so a job that is not alone (or is one of N DDP ranks) gets one.
    if run.config["train"]["nproc"] > 1 or len(store.active_runs()) > 1:
        env["OMP_NUM_THREADS"] = env.get("OMP_NUM_THREADS", "1")
    with open(folder / "log.txt", "ab") as out:
        proc = subprocess.Popen(
            job_command(run_id, store.home, run.config["train"]["nproc"], resume),
            cwd=PROJECT_ROOT, env=env, stdin=subprocess.DEVNULL, stdout=out,
            stderr=subprocess.STDOUT, start_new_session=True, close_fds=True)
    store.update_run(run_id, pid=proc.pid, pid_start=process_start_time(proc.pid),
                     heartbeat=time.time())
    return proc.pid


def cancel(store: Store, run_id: str, timeout: float = 20.0) -> Run:
    """SIGTERM the job (it checkpoints and ends ``cancelled``), SIGKILL after ``timeout``."""
    run = store.get_run(run_id)
    if run.status not in ACTIVE:
        raise InvalidRunState(f"Run {run_id} is {run.status}; only queued or running runs can "
                              "be cancelled.")
    if run.pid and is_alive(run.pid, run.pid_start):
        _signal_group(run.pid, signal.SIGTERM)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and is_alive(run.pid, run.pid_start):
            time.sleep(0.1)
        if is_alive(run.pid, run.pid_start):
            log.warning("Run %s ignored SIGTERM for %.0fs; killing it", run_id, timeout)
            _signal_group(run.pid, signal.SIGKILL)
            _wait_dead(run.pid, run.pid_start, 5.0)
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


# -- processes -------------------------------------------------------------------------------


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None where unknown."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # Field 2 (comm) may contain spaces; fields after the closing parenthesis are fixed.
    fields = stat[stat.rindex(")") + 2 :].split()
    return fields[19]


def is_alive(pid: int, start: str | None = None) -> bool:
    """True when ``pid`` runs and is the same process that was recorded (not a reused pid)."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return start is None  # no /proc (not Linux): trust the kill(0) check
    state = stat[stat.rindex(")") + 2 :].split()[0]
    if state in ("Z", "X"):
        return False
    return start is None or process_start_time(pid) == start


def _reap(pid: int) -> None:
    """Collect the exit status of our own finished children so they do not linger as zombies."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass


def _signal_group(pid: int, sig: int) -> None:
    try:
        os.killpg(os.getpgid(pid), sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def _wait_dead(pid: int, start: str | None, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and is_alive(pid, start):
        time.sleep(0.05)


def _pythonpath() -> str:
    existing = os.environ.get("PYTHONPATH", "")
    return str(PROJECT_ROOT) + (os.pathsep + existing if existing else "")
