"""One model of background work: submit, the queue, reconcile, cancel.

Every long action is a job: a detached process (``core.runs.processes``) running
``python ARGV --home HOME --job ID``, whose row in the store carries its status, progress, result
and error. A workspace **queue** caps how many *heavy* jobs (training and the like) run at once;
light ones (evaluate, explain, export, serve) start at once. The queue lives in the store, so it
survives the app and the machine: whoever calls :func:`reconcile` (the pages, every CLI command, a
job that ends) starts what is due. This module never imports torch.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path

from core.errors import InvalidConfig, InvalidRunState
from core.runs.executors import executor_name, get_executor, job_env
from core.runs.processes import is_alive
from core.runs.records import ACTIVE, HEAVY_KINDS, WAITING_KINDS, Job
from core.runs.store import Store
from core.workspace import run_dir

log = logging.getLogger(__name__)

MAX_JOBS_ENV = "LAB2MARKET_MAX_JOBS"
MAX_JOBS_SETTING = "max_jobs"
CANCEL_GRACE_S = 20.0  # SIGTERM, then this long to checkpoint and exit, then SIGKILL
START_GRACE_S = 30.0  # a claimed job may take this long to record its pid
DATASET_SUBJECT = "dataset:"  # a job about a dataset rather than a run: "dataset:NAME"


# -- the queue -----------------------------------------------------------------------------------


def default_max_jobs() -> int:
    """One heavy job per GPU, else one: on CPU two trainings only slow each other down."""
    gpus = Path("/proc/driver/nvidia/gpus")  # torch-free: no CUDA initialisation in the UI
    try:
        return max(1, sum(1 for _ in gpus.iterdir()))
    except OSError:
        return 1


def max_jobs(store: Store) -> tuple[int, str]:
    """How many heavy jobs may run at once, and where that number comes from."""
    env = os.environ.get(MAX_JOBS_ENV)
    if env:
        return _check_max_jobs(env, MAX_JOBS_ENV), MAX_JOBS_ENV
    stored = store.get_setting(MAX_JOBS_SETTING)
    if stored:
        return int(stored), "workspace setting"
    return default_max_jobs(), "default"


def set_max_jobs(store: Store, value: int | str) -> int:
    """Store the workspace's cap (the page control and ``queue --max-jobs``), then start what
    the new cap lets through."""
    value = _check_max_jobs(value, "max jobs")
    store.set_setting(MAX_JOBS_SETTING, str(value))
    dispatch(store)
    return value


def _check_max_jobs(value: int | str, what: str) -> int:
    try:
        number = int(value)
    except (TypeError, ValueError):
        number = 0
    if not 1 <= number <= 64:
        raise InvalidConfig(f"{what} must be a whole number from 1 to 64, got {value!r}.")
    return number


def submit(store: Store, run_id: str, kind: str, argv: Sequence[str], key: str = "") -> Job:
    """Queue a job (``argv``: the arguments after ``python``) and start it if it is due.

    ``run_id`` names what the job is about: a run, or a dataset as ``dataset:NAME`` (its
    health check), whose caller has checked that it exists."""
    if not run_id.startswith(DATASET_SUBJECT):
        store.get_run(run_id)  # a clear error for an unknown run, before anything is queued
    job = store.create_job(run_id, kind, argv, key=key, heavy=kind in HEAVY_KINDS,
                           executor=executor_name(store))
    dispatch(store)
    return store.get_job(job.id)


def dispatch(store: Store) -> list[str]:
    """Start every queued job that is due; returns their ids."""
    slots, _ = max_jobs(store)
    started = []
    while (job := store.claim_next_job(slots)) is not None:
        try:
            _spawn(store, job)
        except OSError as exc:  # cannot even start (no disk for the log, fork failed)
            store.set_job_status(job.id, "failed", error=f"could not start: {exc}")
            settle_run(store, job, "failed", f"could not start: {exc}")
            continue
        started.append(job.id)
    return started


def thread_env(store: Store, job: Job) -> dict[str, str]:
    """One OpenMP thread for a job that is not alone (or is a DDP launcher): on two cores, threads
    of several jobs spin-waiting for each other make every job several times slower. A study's
    driver, which waits, is no company: its trial at parallel 1 trains on every core."""
    company = [j for j in store.active_jobs() if j.id != job.id and j.kind not in WAITING_KINDS]
    if company or "torch.distributed.run" in job.argv:
        return {"OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1")}
    return {}


def _spawn(store: Store, job: Job) -> None:
    env = {**job_env(store), **thread_env(store, job)}  # the same store for the jobs it queues
    if job.run_id.startswith(DATASET_SUBJECT):  # no run folder: the workspace's jobs/ folder
        log = store.home / "jobs" / f"{job.id}.log"
    else:
        log = run_dir(store.home, job.run_id) / (
            "log.txt" if job.kind == "train" else f"job-{job.kind}.log")
    get_executor(job.executor).spawn(store, job, env, log)


# -- reconcile -----------------------------------------------------------------------------------


def reconcile(store: Store) -> list[str]:
    """Settle work whose process is gone, then start what is due. Cheap: active rows only.

    A job (or a run) whose process ended without a terminal status becomes ``interrupted``; a
    training job's run with it, so it can be resumed.
    """
    if store.read_only:  # a read-only workspace can be read, not settled
        return []
    changed = []
    now = time.time()
    for job in store.active_jobs():
        if job.status == "queued":
            continue
        if (job.executor == "local" and job.pid is None
                and now - (job.started_at or now) < START_GRACE_S):
            continue
        if get_executor(job.executor).is_alive(store, job) is not False:  # or cannot tell
            continue
        message = "The job's process ended without finishing (killed or crashed)."
        if store.set_job_status(job.id, "interrupted", error=message):
            changed.append(job.id)
            settle_run(store, job, "interrupted", message + " Resume it to continue.")
    changed += _reconcile_orphan_runs(store, now)
    dispatch(store)
    return changed


def _reconcile_orphan_runs(store: Store, now: float) -> list[str]:
    """Active runs with no active job: started by hand (``train --create-only`` + torchrun)."""
    busy = {j.run_id for j in store.active_jobs() if j.kind in HEAVY_KINDS}
    changed = []
    for run in store.active_runs():
        if run.kind == "cv":  # a cross-validation parent: its status is its folds'
            from core.runs.cv import sync
            sync(store, run.id)
            continue
        if run.kind == "study":  # a tuning study: its status is its driver job's (core.tune)
            from core.tune.study import sync_study
            sync_study(store, run.id)
            continue
        if run.id in busy:
            continue
        if run.pid is None and now - run.created_at < START_GRACE_S:
            continue
        if run.pid is not None and is_alive(run.pid, run.pid_start):
            continue
        if store.set_status(run.id, "interrupted", expect=ACTIVE,
                            error="The run's process ended without finishing the run "
                                  "(killed or crashed). Resume it to continue."):
            store.add_event(run.id, "interrupted", "Process gone; marked interrupted",
                            level="warning")
            changed.append(run.id)
    return changed


def settle_run(store: Store, job: Job, status: str, message: str) -> None:
    """A training job's outcome is also its run's, unless the run already ended itself (a job
    cancelled before its trainer started, or killed, leaves the run active otherwise)."""
    if job.kind not in HEAVY_KINDS:
        return
    if store.set_status(job.run_id, status, expect=ACTIVE, error=message):
        store.add_event(job.run_id, status, message, level="warning")


# -- cancel --------------------------------------------------------------------------------------


def cancel_job(store: Store, job_id: str, grace: float = CANCEL_GRACE_S) -> Job:
    """Stop a job: a queued one never starts; a running one gets SIGTERM (its process group),
    ``grace`` seconds to finish cleanly (a training job checkpoints), then SIGKILL.

    The status says which happened: ``cancelled`` when it stopped cleanly, ``interrupted`` when
    it had to be killed (work since its last checkpoint is lost). A job that already ended keeps
    its status (InvalidRunState).
    """
    job = store.get_job(job_id)
    if not job.is_active:
        raise InvalidRunState(f"Job {job_id} is {job.status}; only queued or running jobs can "
                              "be cancelled.")
    if store.set_job_status(job_id, "cancelled", expect=("queued",),
                            error="Cancelled before it started."):
        settle_run(store, job, "cancelled", "Cancelled before it started.")
        return store.get_job(job_id)
    store.request_cancel(job_id)
    job = store.get_job(job_id)
    if get_executor(job.executor).stop(store, job, grace):  # it had to be killed
        message = (f"Killed: it did not stop within {grace:.0f} s of the cancel request; "
                   "work since its last checkpoint is lost.")
        store.set_job_status(job_id, "interrupted", error=message)
        settle_run(store, job, "interrupted", message)
    elif store.set_job_status(job_id, "cancelled", error="Cancelled."):
        # The process was already gone (or never recorded its pid) without a terminal status.
        settle_run(store, job, "cancelled", "Cancelled.")
    dispatch(store)
    return store.get_job(job_id)


def active_job(store: Store, run_id: str, kinds: Sequence[str] | None = None) -> Job | None:
    """The run's oldest active job (of ``kinds``), if any."""
    found = [j for j in store.active_jobs(run_id) if kinds is None or j.kind in kinds]
    return found[0] if found else None


def python_core(*args: str) -> list[str]:
    """``-m core ARGS``: the argv of a job that runs a CLI command."""
    return ["-m", "core", *args]
