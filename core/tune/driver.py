"""The study driver: the body of a ``tune`` job (``python -m core _tune STUDY``).

Optuna's ask-and-tell over the run store. Each pass it tells Optuna how the trials that ended did
(completed: their values; pruned; anything else: FAIL, so one bad trial never stops the study),
then asks for new trials until ``parallel`` are in flight, each a trial run with a queued training
job (the workspace queue decides when it runs). It stops asking at the budget or the time limit
and ends when its last trial has. A cancel (SIGTERM) stops it between two passes; trials left
running are the canceller's to stop (:func:`core.tune.study.cancel_study`). On start it resumes the
trials a cancel or a crash left unfinished, and tells Optuna about trials that ended while no
driver ran. A lock file in the study's folder keeps a second driver out.
"""

from __future__ import annotations

import fcntl
import logging
import math
import signal
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from core.errors import InvalidRunState, RunNotFound, UserError
from core.progress import ProgressFn
from core.runs.jobs import reconcile
from core.runs.lifecycle import create_run, enqueue_training, resume
from core.runs.records import RESUMABLE, Run
from core.runs.store import Store
from core.runs.waiting import any_run_ended, bell, child_ended, wait_until
from core.tune.report import study_summary
from core.tune.space import apply_params, suggest
from core.tune.spec import StudySpec
from core.tune.study import TRIAL_KIND, create_optuna_study, get_study, open_study, study_spec
from core.workspace import Workspace

log = logging.getLogger(__name__)
# A full pass (reconcile, tell Optuna, ask) at least this often: a trial whose process died
# is noticed within it. A trial's end is noticed within core.runs.waiting.TICK_S.
PASS_S = 1.0


def drive(ws: Workspace, study_id: str, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Run the study to its budget; returns ``{"status": completed|cancelled, "asked": N}``."""
    store = ws.store
    get_study(store, study_id)  # a clear error for a run that is not a study, before any file
    stop = _Stop()
    with _driver_lock(ws.run_dir(study_id) / "driver.lock"), stop.on_signals(), \
            bell(store, child_ended(study_id)) as trial_bell:
        spec = study_spec(store.get_run(study_id))
        create_optuna_study(ws.home, study_id, spec)  # if its launcher has not yet (journal)
        study = open_study(store, study_id)
        study.sampler = spec.build_sampler(asked=len(study.get_trials(deepcopy=False)))
        _catch_up(store, study, spec)
        started = time.monotonic()
        asked = 0
        while not stop.requested:
            reconcile(store)  # a trial whose process died is interrupted, the queue moves on
            run = store.get_run(study_id)
            spec = study_spec(run)  # re-read: a resume may have raised the budget meanwhile
            frozen = study.get_trials(deepcopy=False)
            in_flight = _settle(store, study, frozen, spec)
            active, asked = len(in_flight), len(frozen)
            timed_out = spec.timeout is not None and time.monotonic() - started >= spec.timeout
            while (not timed_out and not stop.requested and asked < spec.n_trials
                   and active < spec.parallel):
                launched = _launch_trial(store, study, run, spec)
                if launched is not None:
                    in_flight.append(launched)
                asked, active = asked + 1, active + 1
            if progress is not None:
                ended = sum(t.state.is_finished() for t in frozen)
                progress(ended, spec.n_trials, f"{ended} of {spec.n_trials} trials ended, "
                                               f"{active} in flight")
            if active == 0 and (timed_out or asked >= spec.n_trials):
                break
            if in_flight:  # the next trial is asked for as soon as one ends
                trial_ended = any_run_ended(store, in_flight)
                wait_until(lambda check=trial_ended: stop.requested or check(), PASS_S,
                           bell=trial_bell)
        # The study as it ends, for whoever waits on it (core.tune.report.reported_summary).
        summary = study_summary(store, study_id, study)
    return {"study_id": study_id, "status": "cancelled" if stop.requested else "completed",
            "asked": asked, "summary": summary}


def _catch_up(store: Store, study: Any, spec: StudySpec) -> None:
    """Resume the trials a cancel or a crash left unfinished (from their checkpoints), and queue
    a trial whose run a killed driver recorded but never queued."""
    from optuna.trial import TrialState

    for trial in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        run = _run_of(store, trial)
        if run is not None and run.status == "queued" and not store.active_jobs(run.id):
            enqueue_training(store, run.id)  # a driver died between recording it and queueing it
            continue
        if run is None or run.status not in RESUMABLE:
            continue  # settled by the first pass
        try:
            resume(store, run.id)
        except UserError as exc:  # e.g. its dataset changed since: that trial cannot go on
            log.warning("Trial %s (run %s) cannot be resumed: %s", trial.number, run.id, exc)
            _fail(study, trial.number, f"cannot be resumed: {exc}")


def _settle(store: Store, study: Any, frozen: list[Any], spec: StudySpec) -> list[str]:
    """Tell Optuna about every trial whose run has ended; returns the runs still in flight."""
    from optuna.trial import TrialState

    active = []
    for trial in frozen:
        if trial.state != TrialState.RUNNING:
            continue
        run = _run_of(store, trial)
        if run is None:
            _fail(study, trial.number, "its run was never recorded (its driver was stopped "
                                       "while asking for it), or was deleted")
        elif run.is_active:
            active.append(run.id)
        elif run.status == "completed":
            values = objective_values(run, spec)
            if values is None:
                _fail(study, trial.number, f"run {run.id} has no finite {spec.metrics}")
            else:
                _tell(study, trial.number, values=values)
        elif run.status == "pruned":
            _tell(study, trial.number, state=TrialState.PRUNED)
        else:  # failed (a bad config, a crash), or cancelled/interrupted while the study ran
            _fail(study, trial.number, f"run {run.id} {run.status}: {run.error or ''}")
    return active


def objective_values(run: Run, spec: StudySpec) -> list[float] | None:
    """A completed trial's values: its best epoch metric, then the measured model metrics."""
    measured = run.summary.get("objectives", {})
    values = [run.best_metric, *(measured.get(m) for m in spec.metrics[1:])]
    if any(v is None or not math.isfinite(v) for v in values):
        return None
    return [float(v) for v in values]


def _launch_trial(store: Store, study: Any, parent: Run, spec: StudySpec) -> str | None:
    """Ask Optuna for a trial, record it as a run (params applied to the base config), queue it;
    returns the run's id (None: the config refused these params, the trial failed)."""
    from optuna.trial import TrialState

    trial = study.ask()
    params = suggest(trial, spec.space)
    try:
        config = apply_params(parent.config, params, spec.space)
        run = create_run(store, config, f"{parent.name} trial {trial.number}", kind=TRIAL_KIND,
                         parent_run=parent.id)
    except UserError as exc:  # a combination the config refuses: that trial fails, not the study
        log.warning("Trial %s: %s", trial.number, exc)
        _tell(study, trial.number, state=TrialState.FAIL)
        return None
    store.update_run(run.id, summary={"trial": {
        "study": parent.id, "number": trial.number, "trial_id": trial._trial_id,
        "params": params}})
    trial.set_user_attr("run_id", run.id)
    enqueue_training(store, run.id)
    log.info("Trial %s: run %s %s", trial.number, run.id, params)
    return run.id


def _run_of(store: Store, trial: Any) -> Run | None:
    run_id = trial.user_attrs.get("run_id")
    if run_id is None:
        return None
    try:
        return store.get_run(run_id)
    except RunNotFound:
        return None


def _fail(study: Any, number: int, reason: str) -> None:
    from optuna.trial import TrialState

    log.warning("Trial %s failed: %s", number, reason)
    _tell(study, number, state=TrialState.FAIL)


def _tell(study: Any, number: int, **outcome: Any) -> None:
    """``study.tell``, for a driver outside ``optimize``: the grid sampler calls ``study.stop()``
    once its last point is told, which Optuna refuses outside ``optimize`` *after* storing the
    verdict. The budget already stops this driver, so that refusal is dropped."""
    try:
        study.tell(number, skip_if_finished=True, **outcome)
    except RuntimeError as exc:
        if "Study.stop" not in str(exc):
            raise


class _Stop:
    """SIGTERM (a cancel) and SIGINT set a flag the loop reads between passes, so a trial is
    never half-recorded (asked, but no run; a run, but no job)."""

    def __init__(self) -> None:
        self.requested = False

    @contextmanager
    def on_signals(self) -> Iterator[None]:
        previous = {}
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                previous[sig] = signal.signal(sig, self._set)
            except ValueError:  # not the main thread (a test calling drive in a thread)
                pass
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)

    def _set(self, *_: object) -> None:
        self.requested = True


@contextmanager
def _driver_lock(path: Any) -> Iterator[None]:
    """An exclusive lock held while the driver lives (the OS drops it when it dies, -9 too)."""
    with open(path, "a") as fh:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise InvalidRunState(f"Another driver is running this study ({path.parent.name}); "
                                  "this one stops.") from None
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)
