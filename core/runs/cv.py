"""K-fold cross-validation as runs: one parent of kind ``cv`` and K runs of kind ``cv_fold``.

Each fold is a normal run with a queued training job (``data.fold`` set in its config, so its
``config.json`` reproduces it), so the workspace's queue cap applies to folds like to any
training. The parent trains nothing and has no job: its status *is* its folds'
(:func:`parent_status`), written to its row by :func:`sync` whenever someone reconciles (every
CLI command, the pages), cancels or resumes it, so the runs table and ``status`` agree with the
folds without the jobs having to know about parents.
"""

from __future__ import annotations

from core.config import RunConfig
from core.errors import InvalidConfig, InvalidRunState
from core.runs.lifecycle import cancel, create_run, enqueue_training, resume
from core.runs.records import ACTIVE, RESUMABLE, TERMINAL, Run
from core.runs.store import Store
from core.workspace import Workspace

CV_KIND = "cv"
FOLD_KIND = "cv_fold"
# A parent that did not complete says so with the most serious of its folds' outcomes:
# one failed fold makes the estimate incomplete however the others ended.
_SEVERITY = ("failed", "interrupted", "cancelled")


def launch_cv(store: Store, config: RunConfig, name: str = "") -> tuple[Run, list[Run]]:
    """Record a CV parent and its ``config.data.cv`` fold runs, then queue the folds' training.

    Returns the parent and the folds (fold order). Every fold is recorded before any is queued,
    so a fold never starts while its siblings are still missing.
    """
    from core.data import get_info

    k = config.data.cv
    if k is None or config.data.fold is not None:
        raise InvalidConfig("launch_cv needs data.cv = K and no data.fold")
    config.validate()
    counts = get_info(Workspace.of(store), config.data.dataset).split_counts
    pool = counts.get("train", 0) + counts.get("val", 0)
    if k > pool:
        raise InvalidConfig(f"cv {k}: {config.data.dataset} has {pool} train+val samples; "
                            f"use at most --cv {pool}.")
    parent = create_run(store, config, name or f"cv{k}", kind=CV_KIND)
    folds = []
    for i in range(k):
        raw = config.to_dict()
        raw["data"]["fold"] = i
        folds.append(create_run(store, RunConfig.from_dict(raw), f"{parent.name} fold {i}",
                                kind=FOLD_KIND, parent_run=parent.id))
    store.add_event(parent.id, "queued", f"{k}-fold cross-validation: "
                                         + ", ".join(f.id for f in folds))
    for fold in folds:
        enqueue_training(store, fold.id)
    return sync(store, parent.id), fold_runs(store, parent.id)


def fold_runs(store: Store, parent_id: str) -> list[Run]:
    """The parent's fold runs, in fold order."""
    runs = store.child_runs(parent_id, kind=FOLD_KIND)
    return sorted(runs, key=lambda r: r.config["data"].get("fold") or 0)


def is_cv_parent(run: Run) -> bool:
    return run.kind == CV_KIND


def parent_status(statuses: list[str]) -> str:
    """What a parent's status is, given its folds': ``queued`` while all wait, ``running``
    while any is active, ``completed`` when all completed, else the most serious outcome."""
    if not statuses:
        return "failed"  # a parent whose folds were never recorded (or were deleted)
    if any(s in ACTIVE for s in statuses):
        return "queued" if all(s == "queued" for s in statuses) else "running"
    if all(s == "completed" for s in statuses):
        return "completed"
    return next(s for s in _SEVERITY if s in statuses)


def sync(store: Store, parent_id: str) -> Run:
    """Write the parent's status (and its folds' summed progress) from its folds; returns it."""
    parent = store.get_run(parent_id)
    folds = fold_runs(store, parent_id)
    status = parent_status([f.status for f in folds])
    progress = {name: sum(getattr(f, name) for f in folds)
                for name in ("epoch", "total_epochs", "step", "total_steps")}
    if any(getattr(parent, name) != value for name, value in progress.items()):
        store.update_run(parent_id, **progress)  # only on change: readers poll this
    if status != parent.status:
        error = _error(folds) if status in TERMINAL and status != "completed" else None
        # Compare-and-set from the status read above: a concurrent sync changes nothing twice.
        if store.set_status(parent_id, status, error=error, expect=(parent.status,)):
            store.add_event(parent_id, status, _describe(folds))
    return store.get_run(parent_id)


def cancel_cv(store: Store, parent_id: str, timeout: float | None = None) -> Run:
    """Cancel the parent's active folds: the queued ones first (so a running fold that stops
    does not hand its slot to a sibling), then the running ones (each checkpoints and stops)."""
    folds = [f for f in fold_runs(store, parent_id) if f.status in ACTIVE]
    if not folds:
        status = sync(store, parent_id).status
        raise InvalidRunState(f"Run {parent_id} is {status}; none of its folds is queued or "
                              "running.")
    for fold in sorted(folds, key=lambda f: f.status != "queued"):
        try:
            cancel(store, fold.id, timeout)
        except InvalidRunState:  # it ended meanwhile: nothing to cancel
            pass
    return sync(store, parent_id)


def resume_cv(store: Store, parent_id: str) -> Run:
    """Resume the parent's interrupted or cancelled folds (each from its last checkpoint)."""
    folds = [f for f in fold_runs(store, parent_id) if f.status in RESUMABLE]
    if not folds:
        status = sync(store, parent_id).status
        raise InvalidRunState(f"Run {parent_id} is {status}; none of its folds is interrupted "
                              "or cancelled.")
    for fold in folds:
        try:
            resume(store, fold.id)
        except InvalidRunState:  # resumed meanwhile by someone else
            pass
    return sync(store, parent_id)


# -- the final model --------------------------------------------------------------------------


def best_epochs(folds: list[Run]) -> list[float]:
    """The best epoch (by the monitored metric) of each completed fold that recorded one."""
    epochs = [f.summary.get("best_epoch", {}).get("epoch") for f in folds
              if f.status == "completed"]
    return [float(e) for e in epochs if e is not None]


def final_epochs(folds: list[Run]) -> int | None:
    """The final model's epochs: the folds' mean best epoch, rounded (None without one)."""
    epochs = best_epochs(folds)
    return max(1, round(sum(epochs) / len(epochs))) if epochs else None


def final_config(parent_config: dict, epochs: int) -> RunConfig:
    """The parent's config as one run on all of train+val for ``epochs`` epochs: no folds, no
    validation split, so no early stopping on it (``data.train_on_val``)."""
    raw = RunConfig.from_dict(parent_config).to_dict()
    raw["data"].update(cv=None, fold=None, train_on_val=True)
    raw["train"].update(epochs=epochs, patience=None)
    return RunConfig.from_dict(raw)


def final_runs(store: Store, parent_id: str) -> list[Run]:
    """The final models trained from the parent, oldest first."""
    return store.child_runs(parent_id, kind="trained")


def launch_final(store: Store, parent_id: str, epochs: int | None = None) -> Run:
    """Queue the final model of CV ``parent_id``: a normal run (kind ``trained``, parent the CV)
    on all of train+val for ``epochs`` epochs (default: the folds' mean best epoch)."""
    from core.data.folds import TRAIN_ON_VAL_NOTE, check_train_on_val

    parent = store.get_run(parent_id)
    if not is_cv_parent(parent):
        raise InvalidRunState(f"Run {parent_id} is not a cross-validation (its kind is "
                              f"{parent.kind}): give the id `train --cv K` printed.")
    parent, folds = sync(store, parent_id), fold_runs(store, parent_id)
    if parent.is_active:
        raise InvalidRunState(f"Cross-validation {parent_id} is {parent.status}: wait until "
                              "its folds have ended, so their best epochs are known.")
    busy = [r.id for r in final_runs(store, parent_id) if r.is_active]
    if busy:
        raise InvalidRunState(f"The final model {busy[0]} of {parent_id} is already training: "
                              "wait for it, or cancel it first.")
    epochs = epochs or final_epochs(folds)
    if epochs is None:
        raise InvalidRunState(f"No fold of {parent_id} completed with a best epoch: give the "
                              "epochs (--epochs N), or resume the cross-validation first.")
    config = final_config(parent.config, epochs)
    check_train_on_val(Workspace.of(store), config.data)
    run = create_run(store, config, f"{parent.name or parent.id} final", parent_run=parent.id)
    store.add_event(run.id, "queued", f"Final model of cross-validation {parent_id}: "
                                      f"{epochs} epoch(s). {TRAIN_ON_VAL_NOTE}")
    enqueue_training(store, run.id)
    return store.get_run(run.id)


def _describe(folds: list[Run]) -> str:
    counts: dict[str, int] = {}
    for fold in folds:
        counts[fold.status] = counts.get(fold.status, 0) + 1
    return "folds: " + ", ".join(f"{n} {status}" for status, n in sorted(counts.items()))


def _error(folds: list[Run]) -> str:
    bad = [f for f in folds if f.status in _SEVERITY]
    first = bad[0]
    detail = f": {first.error}" if first.error else ""
    return (f"{len(bad)} of {len(folds)} folds did not complete (fold "
            f"{first.config['data'].get('fold')} {first.status}{detail})")
