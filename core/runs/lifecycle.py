"""A run's life: create it, train it (queued as a heavy job), cancel, resume, delete.

Every transition is a compare-and-set on the run's status, so two clicks, two terminals or a
click racing a job's end settle on one outcome, and the loser changes nothing.
"""

from __future__ import annotations

import shutil
import uuid

from core.config import RunConfig
from core.errors import InvalidRunState
from core.runs.jobs import active_job, cancel_job, python_core, reconcile, submit
from core.runs.records import ACTIVE, HEAVY_KINDS, RESUMABLE, RUN_KINDS, Job, Run
from core.runs.store import Store
from core.workspace import Workspace, run_dir


def create_run(store: Store, config: RunConfig, name: str = "", kind: str = "trained",
               parent_run: str | None = None) -> Run:
    """Validate the config, record a queued run, its dataset's fingerprint and ``config.json``."""
    from core import data  # validates the dataset name (cheap, torch-free)

    config.validate()
    if kind not in RUN_KINDS:
        raise ValueError(f"unknown run kind {kind!r}")
    data.get_info(Workspace.of(store), config.data.dataset)
    if parent_run is not None:
        store.get_run(parent_run)
    run = store.create_run(config.to_dict(), name=name, kind=kind, parent_run=parent_run)
    folder = run_dir(store.home, run.id)
    folder.mkdir(parents=True, exist_ok=True)
    config.save(folder / "config.json")
    # What the run learns from: evaluate, explain and resume refuse a dataset that changed since.
    store.update_run(run.id, summary={
        "dataset_fingerprint": data.fingerprint(Workspace.of(store), config.data.dataset)})
    return store.get_run(run.id)


def train_argv(run: Run, resume: bool = False) -> list[str]:
    """The training job's arguments after ``python``: under torchrun when distributed."""
    args = python_core("_job", run.id, *(["--resume"] if resume else []))
    nproc = run.config["train"]["nproc"]
    if nproc > 1:
        return ["-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}",
                *args]
    return args


def launch(store: Store, config: RunConfig, name: str = "", kind: str = "trained",
           parent_run: str | None = None) -> Run:
    """Create a run and queue its training; returns at once (it starts when a slot is free)."""
    run = create_run(store, config, name, kind=kind, parent_run=parent_run)
    enqueue_training(store, run.id)
    return store.get_run(run.id)


# The job that trains a run is named for what it does: a pruned run's prunes, a distilled one's
# distills (each fine-tunes or trains like any training job).
TRAINING_JOB = {"pruned": "prune", "distilled": "distill"}


def enqueue_training(store: Store, run_id: str, resume: bool = False) -> Job:
    run = store.get_run(run_id)
    return submit(store, run_id, TRAINING_JOB.get(run.kind, "train"), train_argv(run, resume))


def resume(store: Store, run_id: str) -> Run:
    """Continue an interrupted or cancelled run from its last checkpoint, in the same run id.

    Only one of several concurrent resumes wins (``interrupted|cancelled -> queued`` is a
    compare-and-set); the others are refused and change nothing.
    """
    from core.data import check_fingerprint

    reconcile(store)
    run = store.get_run(run_id)
    if run.kind == "cv":  # a cross-validation parent has no training of its own: its folds do
        from core.runs.cv import resume_cv
        return resume_cv(store, run_id)
    if run.kind == "study":  # a tuning study: a new driver resumes its trials (core.tune)
        from core.tune.study import resume_study
        return resume_study(store, run_id)
    if run.status in RESUMABLE:  # training on changed data would mix two datasets in one run
        check_fingerprint(Workspace.of(store), run.summary.get("dataset_fingerprint"),
                          run.dataset, run_id=run_id)
    if not store.set_status(run_id, "queued", expect=RESUMABLE):
        status = store.get_run(run_id).status
        raise InvalidRunState(f"Run {run_id} is {status}; only interrupted or cancelled runs "
                              "can be resumed (clone a failed run to try again).")
    store.add_event(run_id, "queued", f"Resume requested (was {run.status})")
    has_checkpoint = (run_dir(store.home, run_id) / "checkpoints" / "last.pt").is_file()
    enqueue_training(store, run_id, resume=has_checkpoint)
    return store.get_run(run_id)


def cancel(store: Store, run_id: str, timeout: float | None = None) -> Run:
    """Stop a run's training (queued: it never starts; running: it checkpoints and stops)."""
    reconcile(store)
    run = store.get_run(run_id)
    if run.kind == "cv":  # a cross-validation parent has no job of its own: its folds do
        from core.runs.cv import cancel_cv
        return cancel_cv(store, run_id, timeout)
    if run.kind == "study":  # a tuning study: its driver, then its trials (core.tune)
        from core.tune.study import cancel_study
        return cancel_study(store, run_id, timeout)
    if run.status not in ACTIVE:
        raise InvalidRunState(f"Run {run_id} is {run.status}; only queued or running runs can "
                              "be cancelled.")
    job = active_job(store, run_id, HEAVY_KINDS)
    if job is not None:
        cancel_job(store, job.id, **({"grace": timeout} if timeout is not None else {}))
    elif store.set_status(run_id, "cancelled", expect=ACTIVE):  # a run started by hand
        store.add_event(run_id, "cancelled", "Cancelled")
    return store.get_run(run_id)


def delete(store: Store, run_id: str) -> None:
    """Remove a finished run with its files. Refused while the run or any job on it is active
    (an export or evaluation would lose its folder half-way): stop them first."""
    reconcile(store)
    run = store.get_run(run_id)
    if run.status in ACTIVE:
        raise InvalidRunState(f"Run {run_id} is {run.status}; stop it before deleting it.")
    if run.kind == "cv":  # a cross-validation parent goes with its folds (each checked first)
        folds = store.child_runs(run_id, kind="cv_fold")
        for fold in folds:
            if fold.is_active or store.active_jobs(fold.id):
                raise InvalidRunState(f"Fold {fold.id} of {run_id} is still working; cancel "
                                      f"the cross-validation first (`python -m core cancel "
                                      f"{run_id}`).")
        for fold in folds:
            delete(store, fold.id)
    if run.kind == "study":  # a tuning study goes with its trials (each checked first)
        from core.tune.study import delete_trials
        delete_trials(store, run_id)
    busy = store.active_jobs(run_id)
    if busy:
        kinds = ", ".join(sorted({j.kind for j in busy}))
        raise InvalidRunState(f"Run {run_id} has work in progress ({kinds}); cancel it "
                              f"(`python -m core cancel {busy[0].id}`) before deleting the run.")
    folder = run_dir(store.home, run_id)
    if folder.exists():
        # Rename first: a half-deleted folder is never taken for a run.
        trash = folder.with_name(f".deleting-{run_id}-{uuid.uuid4().hex[:6]}")
        folder.rename(trash)
        shutil.rmtree(trash, ignore_errors=True)
    store.delete_run(run_id)
