"""A study as runs: a parent of kind ``study`` that trains nothing, its trials (runs of kind
``trial``, each a normal queued training), and a light driver job (kind ``tune``) that asks Optuna
for trials and tells it how they ended (:mod:`core.tune.driver`).

The study's status *is* its driver's (:func:`study_status`), written to its row by
:func:`sync_study` whenever someone reconciles (every CLI command, the pages), cancels or resumes
it. The store is the contract: nothing here imports Optuna except where a study's Optuna storage
is created, opened or read.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

from core.config import RunConfig
from core.errors import InvalidConfig, InvalidRunState, StudyDamaged, UserError
from core.runs.jobs import cancel_job, dispatch, python_core, reconcile
from core.runs.lifecycle import cancel, create_run, delete, launch
from core.runs.records import ACTIVE, DRIVER_KIND, RESUMABLE, Job, Run
from core.runs.store import Store
from core.tune.space import check_param
from core.tune.spec import StudySpec
from core.workspace import run_dir

log = logging.getLogger(__name__)

STUDY_KIND = "study"
TRIAL_KIND = "trial"
JOURNAL = "optuna.journal"  # the default Optuna storage, in the study's run folder
FINISHED = ("completed", "pruned", "failed")  # trial runs Optuna has (or gets) a verdict on


# -- create ---------------------------------------------------------------------------------------


def objective_config(base: RunConfig, spec: StudySpec) -> RunConfig:
    """The base config every trial starts from: its checkpoint ``best.pt`` and ``best_metric``
    follow the study's first objective."""
    if base.data.cv is not None:
        raise InvalidConfig("A study tunes single runs: drop --cv (cross-validate the promoted "
                            "run instead).")
    raw = base.to_dict()
    raw["train"]["monitor"] = spec.metrics[0]
    raw["train"]["mode"] = "max" if spec.directions[0] == "maximize" else "min"
    return RunConfig.from_dict(raw)


def launch_study(store: Store, base: RunConfig, spec: StudySpec, name: str = "") -> Run:
    """Record the study, create its Optuna study and start its driver; returns the study run."""
    spec.validate()
    if spec.storage is None:  # a PostgreSQL run store keeps the Optuna study in the same database
        from core.runs.db import optuna_url

        spec.storage = optuna_url(store.url)
    base = objective_config(base, spec)
    for param in spec.space:
        check_param(param, base)
    study = create_run(store, base, name or f"tune {base.model.name}", kind=STUDY_KIND)
    store.update_run(study.id, summary={"study": spec.to_dict()}, total_epochs=spec.n_trials)
    if spec.storage is not None:  # a URL may be unreachable: refuse before any driver starts
        _create_or_withdraw(store, study.id, spec)
    store.add_event(study.id, "queued", f"study of {spec.n_trials} trial(s), {spec.sampler} "
                                        f"sampler, {spec.pruner} pruner")
    job = store.create_job(study.id, DRIVER_KIND, python_core("_tune", study.id))
    # A journal study (a file in the study's folder) is created by its driver: this process
    # never imports Optuna (~0.1 s, and ~35 ms more at its exit), and a reader before then sees
    # a study without trials (open_study).
    dispatch(store)
    log.info("Study %s: driver %s", study.id, job.id)
    return sync_study(store, study.id)


def _create_or_withdraw(store: Store, study_id: str, spec: StudySpec) -> None:
    """Create the study's Optuna study (before its driver is queued); when that fails, leave no
    half study."""
    try:
        create_optuna_study(store.home, study_id, spec)
    except Exception as exc:
        store.set_status(study_id, "failed", error=str(exc))
        delete(store, study_id)
        if isinstance(exc, UserError):
            raise
        raise InvalidConfig(f"--storage: cannot create the Optuna study ({type(exc).__name__}: "
                            f"{str(exc).splitlines()[0][:200]}); check the URL.") from None


def optuna_storage(home: Path, study_id: str, url: str | None) -> Any:
    """The study's Optuna storage: ``url`` (an RDB, for workers on other machines), else a
    journal file in its run folder (safe for the driver and the trial processes at once)."""
    if url:
        return url
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend

    try:
        return JournalStorage(JournalFileBackend(str(run_dir(home, study_id) / JOURNAL)))
    except ValueError:  # Optuna replays every line: one that is not JSON stops it
        check_journal(home, study_id)
        raise


def check_journal(home: Path, study_id: str, trim: bool = False) -> None:
    """Refuse a study whose journal Optuna cannot replay, naming the first bad line: a line that
    is not JSON, or one cut short before another. Cheap, Optuna-free: a resume checks before it
    starts a driver that would fail on it.

    A torn last line (a writer killed mid-write, a full disk) Optuna skips, but its next append
    would join it into a damaged line: ``trim`` cuts it off, for a caller that knows nothing else
    writes (a resume, while no driver or trial of the study runs)."""
    path = run_dir(home, study_id) / JOURNAL
    if not path.is_file():
        return
    with open(path, "rb") as fh:
        lines = fh.readlines()
    for number, line in enumerate(lines, start=1):
        if number == len(lines) and not line.endswith(b"\n"):
            if trim:
                log.warning("Study %s: cutting a torn last line off its journal", study_id)
                os.truncate(path, path.stat().st_size - len(line))
            return
        try:
            json.loads(line)
        except ValueError:
            raise StudyDamaged(
                f"Study {study_id}'s Optuna journal ({path.relative_to(home)}) is damaged at "
                f"line {number} of {len(lines)} (not a JSON record); its trial runs are intact. "
                "Restore the file, or remove that line (Optuna then forgets what it "
                "recorded).") from None


def create_optuna_study(home: Path, study_id: str, spec: StudySpec) -> Any:
    import optuna

    return optuna.create_study(study_name=study_id,
                               storage=optuna_storage(home, study_id, spec.storage),
                               directions=spec.directions, sampler=spec.build_sampler(),
                               load_if_exists=True)  # at a URL, its launcher created it


def open_study(store: Store, study_id: str, sampler: bool = True) -> Any:
    """The study's Optuna study, with its sampler (``sampler=False``: a cheap random one, for a
    reader or a trial that only reports) and its pruner. A reader that comes before the driver
    has created a journal study gets an empty one (in memory): no trials yet."""
    import optuna

    run = get_study(store, study_id)
    spec = study_spec(run)
    try:
        return optuna.load_study(
            study_name=study_id, storage=optuna_storage(store.home, study_id, spec.storage),
            sampler=spec.build_sampler() if sampler else optuna.samplers.RandomSampler(),
            pruner=spec.build_pruner(run.config["train"]["epochs"]))
    except KeyError:  # Optuna: no study of that name (yet)
        if sampler or spec.storage is not None:  # the driver creates it before it opens it
            raise
        verbosity = optuna.logging.get_verbosity()  # no "new study created in memory" line
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        try:
            return optuna.create_study(directions=spec.directions)
        finally:
            optuna.logging.set_verbosity(verbosity)


# -- read -----------------------------------------------------------------------------------------


def get_study(store: Store, study_id: str) -> Run:
    run = store.get_run(study_id)
    if run.kind != STUDY_KIND:
        raise InvalidRunState(f"Run {study_id} is a {run.kind} run, not a study; "
                              "`python -m core studies` lists the studies.")
    return run


def study_spec(run: Run) -> StudySpec:
    return StudySpec.from_dict(run.summary["study"])


def list_studies(store: Store, limit: int = 100) -> list[Run]:
    """The studies, newest first."""
    found, offset = [], 0
    while len(found) < limit:
        page = store.list_runs(limit=200, offset=offset)
        found += [r for r in page if r.kind == STUDY_KIND]
        if len(page) < 200:
            break
        offset += 200
    return found[:limit]


def trial_runs(store: Store, study_id: str) -> list[Run]:
    return store.child_runs(study_id, kind=TRIAL_KIND)


def driver_jobs(store: Store, study_id: str) -> list[Job]:
    return [j for j in store.list_jobs(run_id=study_id, limit=10_000) if j.kind == DRIVER_KIND]


def study_status(drivers: list[Job], trials: list[Run]) -> tuple[str, str | None]:
    """A study's (status, error), from its drivers: active while one is, else as the last one to
    end did. A driver that completed without one completed trial leaves a failed study."""
    active = [j for j in drivers if j.is_active]
    if active:
        return ("queued" if all(j.status == "queued" for j in active) else "running"), None
    if not drivers:
        return "queued", None
    last = max(drivers, key=lambda j: (j.ended_at or 0, j.created_at))
    if last.status != "completed":
        return last.status, last.error
    if not any(t.status == "completed" for t in trials):
        counts = {s: sum(t.status == s for t in trials) for s in FINISHED}
        detail = ", ".join(f"{n} {s}" for s, n in counts.items() if n) or "no trial ran"
        return "failed", f"No trial completed ({detail})."
    return "completed", None


def sync_study(store: Store, study_id: str) -> Run:
    """Write the study's status and progress (trials ended / budget, best value) to its row."""
    study = get_study(store, study_id)
    if "study" not in study.summary:  # being created (its settings are written next)
        return study
    trials = trial_runs(store, study_id)
    status, error = study_status(driver_jobs(store, study_id), trials)
    spec = study_spec(study)
    fields = {"epoch": sum(t.status in FINISHED for t in trials), "total_epochs": spec.n_trials,
              "best_metric": _best(trials, spec)}
    if any(getattr(study, k) != v for k, v in fields.items()):
        store.update_run(study_id, **fields)  # only on change: readers poll this
    if status != study.status and store.set_status(study_id, status, error=error,
                                                   expect=(study.status,)):
        store.add_event(study_id, status, f"study {status}" + (f": {error}" if error else ""))
    return store.get_run(study_id)


def _best(trials: list[Run], spec: StudySpec) -> float | None:
    values = [t.best_metric for t in trials if t.status == "completed"
              and t.best_metric is not None]
    if not values:
        return None
    return max(values) if spec.directions[0] == "maximize" else min(values)


# -- cancel, resume, delete -----------------------------------------------------------------------


def cancel_study(store: Store, study_id: str, timeout: float | None = None) -> Run:
    """Stop the driver (no new trial starts), then the trials: queued ones first (a stopping
    trial must not hand its slot to a sibling), then running ones (each checkpoints; resumable)."""
    reconcile(store)
    drivers = [j for j in driver_jobs(store, study_id) if j.is_active]
    trials = [t for t in trial_runs(store, study_id) if t.status in ACTIVE]
    if not drivers and not trials:
        status = sync_study(store, study_id).status
        raise InvalidRunState(f"Study {study_id} is {status}; nothing of it is queued or "
                              "running.")
    for job in drivers:
        try:
            cancel_job(store, job.id)
        except InvalidRunState:  # it ended meanwhile
            pass
    for trial in sorted(trials, key=lambda t: t.status != "queued"):
        try:
            cancel(store, trial.id, timeout)
        except InvalidRunState:
            pass
    return sync_study(store, study_id)


def resume_study(store: Store, study_id: str, trials: int | None = None) -> Run:
    """Start a new driver: it resumes the cancelled or interrupted trials from their checkpoints,
    then asks for trials up to the budget (``trials`` more than before, when given).

    Two concurrent resumes: the driver job is recorded first, then the study's status moves by
    compare-and-set; the loser withdraws its job and is refused.
    """
    reconcile(store)
    study = sync_study(store, study_id)
    if study.is_active:
        raise InvalidRunState(f"Study {study_id} is {study.status}; cancel it before resuming.")
    if study.status not in RESUMABLE and not trials:
        raise InvalidRunState(f"Study {study_id} is {study.status}; add trials with `python -m "
                              f"core resume {study_id} --trials N`.")
    # Else its driver would fail on it. A torn last line is cut off only while no trial writes.
    quiet = not any(t.status in ACTIVE for t in trial_runs(store, study_id))
    check_journal(store.home, study_id, trim=quiet)
    spec = study_spec(study)
    if trials is not None:
        if trials < 1:
            raise InvalidConfig(f"--trials must be >= 1, got {trials}")
        spec.n_trials += trials
        spec.validate()  # a grid has no more points than it has
    job = store.create_job(study_id, DRIVER_KIND, python_core("_tune", study_id))
    if not store.set_status(study_id, "queued", expect=(study.status,)):
        store.set_job_status(job.id, "cancelled", expect=("queued",),
                             error="Another resume of this study won.")
        raise InvalidRunState(f"Study {study_id} was resumed meanwhile; see `python -m core "
                              f"study {study_id}`.")
    store.update_run(study_id, summary={"study": spec.to_dict()})
    store.add_event(study_id, "queued", f"Resume requested (was {study.status}); budget "
                                        f"{spec.n_trials} trial(s)")
    dispatch(store)
    return sync_study(store, study_id)


def delete_trials(store: Store, study_id: str) -> None:
    """Delete a study's trials (each with its files), refused while any is still working."""
    found = trial_runs(store, study_id)
    for trial in found:
        if trial.is_active or store.active_jobs(trial.id):
            raise InvalidRunState(f"Trial {trial.id} of {study_id} is still working; cancel the "
                                  f"study first (`python -m core cancel {study_id}`).")
    for trial in found:
        delete(store, trial.id)


# -- promote --------------------------------------------------------------------------------------


def promote(store: Store, study_id: str, epochs: int | None = None,
            number: int | None = None) -> Run:
    """Queue a normal trained run with the best trial's config (or trial ``number``'s), for
    ``epochs`` if given; returns it. A multi-objective study's best is the Pareto-optimal
    trial with the best first objective."""
    from core.tune.report import best_trial

    get_study(store, study_id)
    chosen = best_trial(open_study(store, study_id, sampler=False), number)
    trial_run = store.get_run(chosen.user_attrs["run_id"])
    raw = trial_run.config
    if epochs is not None:
        if epochs < 1:
            raise InvalidConfig(f"--epochs must be >= 1, got {epochs}")
        raw = {**raw, "train": {**raw["train"], "epochs": epochs}}
    run = launch(store, RunConfig.from_dict(raw), name=f"{get_study(store, study_id).name} "
                                                       f"best (trial {chosen.number})")
    store.update_run(run.id, summary={"promoted_from": {
        "study": study_id, "trial": chosen.number, "trial_run": trial_run.id}})
    store.add_event(study_id, "promoted", f"trial {chosen.number} promoted to run {run.id}")
    return run
