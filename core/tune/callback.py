"""The trial's side: a trainer callback that reports each epoch's value to its Optuna trial and
stops the run when the study's pruner says so (the run then ends ``pruned``).

A trial run is a normal training job; ``_job`` adds :func:`trial_callbacks` when the run's kind is
``trial``. Under torchrun only rank 0 reports and asks; the trainer makes every rank agree to stop.
"""

from __future__ import annotations

import logging
import math
import os
import time
from typing import TYPE_CHECKING, Any

from core.train.callbacks import Callback

if TYPE_CHECKING:
    from core.runs.store import Store
    from core.train.trainer import Trainer
    from core.workspace import Workspace

log = logging.getLogger(__name__)
LATENCY_REPEATS = 20


class TrialReporter(Callback):
    """``trial.report(value, epoch)`` after each epoch, then ``should_prune()``.

    The last epoch is reported but never pruned (nothing is left to save). A non-finite value is
    not reported: the trainer's early stopping already ends a diverging run, which Optuna then
    hears about as a completed (poor) or failed trial.
    """

    def __init__(self, trial: Any, metric: str, store: Store, run_id: str,
                 model_metrics: list[str], prune: bool = True):
        self.trial, self.metric, self.prune = trial, metric, prune
        self.store, self.run_id, self.model_metrics = store, run_id, model_metrics
        self.pruned_at: int | None = None
        self.reason: str | None = None  # the trainer's summary shows it as the stop reason

    def on_epoch_end(self, trainer: Trainer, epoch: int, metrics: dict[str, float]) -> None:
        value = metrics.get(self.metric)
        if not self.prune or value is None or not math.isfinite(value):
            return
        self.trial.report(value, epoch)
        if epoch + 1 < trainer.config.train.epochs and self.trial.should_prune():
            self.pruned_at = epoch + 1
            self.reason = (f"pruned by the study after epoch {epoch + 1} ({self.metric} "
                           f"{value:.4g})")
            trainer.should_stop = True

    def on_fit_end(self, trainer: Trainer, summary: dict[str, Any]) -> None:
        # The trainer's summary is the run's outcome: a pruned trial ends "pruned", not
        # "completed" (a cancel that came after the pruning keeps "cancelled").
        if self.pruned_at is not None and summary["status"] == "completed":
            summary["status"] = "pruned"
        if self.model_metrics and summary["status"] == "completed":
            measured = measure(trainer, self.model_metrics)
            self.store.update_run(self.run_id, summary={"objectives": measured})


def measure(trainer: Trainer, names: list[str]) -> dict[str, float]:
    """The model metrics of a multi-objective study: size (millions of parameters) and latency
    (median ms for one validation sample on the run's device)."""
    import torch

    model = trainer.raw_model
    found: dict[str, float] = {}
    if "size" in names:
        found["size"] = sum(p.numel() for p in model.parameters()) / 1e6
    if "latency" in names:
        x = next(iter(trainer.val_loader))[0][:1].to(trainer.device)
        model.eval()
        times = []
        with torch.no_grad():
            for i in range(LATENCY_REPEATS + 3):
                t0 = time.perf_counter()
                model(x)
                if trainer.device.type == "cuda":
                    torch.cuda.synchronize(trainer.device)
                if i >= 3:  # the first passes warm caches and allocators up
                    times.append(time.perf_counter() - t0)
        found["latency"] = sorted(times)[len(times) // 2] * 1000
    return found


def trial_callbacks(ws: Workspace, run_id: str) -> list[Callback]:
    """The callbacks a trial run trains with: its :class:`TrialReporter` (rank 0 only)."""
    if os.environ.get("RANK", "0") != "0":
        return []
    from optuna.trial import Trial, TrialState

    from core.tune.study import open_study, study_spec

    store = ws.store
    run = store.get_run(run_id)
    info = run.summary.get("trial")
    if not info or not run.parent_run:
        return []
    study = open_study(store, run.parent_run, sampler=False)
    spec = study_spec(store.get_run(run.parent_run))
    frozen = study._storage.get_trial(info["trial_id"])
    # Resumed by hand after its study gave up on it: it trains as a plain run, reporting nothing.
    prune = frozen.state == TrialState.RUNNING and not spec.multi_objective
    if frozen.state != TrialState.RUNNING:
        log.warning("Trial %s of study %s has ended (%s); this run reports nothing to it",
                    info["number"], run.parent_run, frozen.state.name)
    trial = Trial(study, info["trial_id"]) if frozen.state == TrialState.RUNNING else None
    return [TrialReporter(trial, spec.metrics[0], store, run_id, spec.metrics[1:], prune)]
