"""The learning-rate range test (Smith, 2015): train a few hundred steps while the learning rate
grows exponentially, and read a good rate off the loss curve.

The model, optimizer and data come from the run's config (the very ``Trainer.setup`` a training
uses); the model and optimizer are thrown away afterwards, nothing is saved. The test stops early
when the smoothed loss explodes (``diverge`` times its minimum) or is not finite. Two readings of
the curve, both on the smoothed loss: **minimum / 10** (a tenth of the rate at the lowest loss,
the classic rule: the suggestion) and the **steepest descent** (where the loss falls fastest per
decade of LR).

The readings are taken on a zero-lag smoothing (the bias-corrected moving average run forward,
then backward), not on the running average the stop rule needs: a running average lags ~1/smooth
steps behind the loss, so its features sat a fixed number of *steps* to the right, i.e. more
decades of LR the fewer steps the test took (on digits, steepest descent 2.8e-3 at 100 steps,
8.7e-4 at 200; minimum / 10 2.4e-2 and 1.1e-2). Without the lag both readings stay put (about
5e-4 and 2.6e-3 at either length). Minimum / 10 is the suggestion because the steepest descent
is where the rate *starts* to matter (on a small dataset the test spans several epochs and the
loss falls from learning at low rates): on digits it is below the default 1e-3 and a 5-epoch run
with it ends below the default's accuracy, while minimum / 10 ends above it.

``run_lr_find`` records a range test as a run of kind ``lr_find``: the curve as metrics
(``lr_find/lr``, ``lr_find/loss``, ``lr_find/smoothed`` by step) and the readings in its summary,
so the Train page draws it from the store like any other curve.
"""

from __future__ import annotations

import copy
import logging
import math
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from core.config import RunConfig
from core.errors import InvalidConfig
from core.progress import ProgressFn, no_progress

if TYPE_CHECKING:
    from core.runs.records import Job, Run
    from core.runs.store import Store
    from core.workspace import Workspace

log = logging.getLogger(__name__)
KIND = "lr_find"
KEYS = ("lr_find/lr", "lr_find/loss", "lr_find/smoothed")


@dataclass
class LRFindResult:
    lrs: list[float]
    losses: list[float]
    smoothed: list[float] = field(default_factory=list)
    suggestion: float | None = None  # the rate to use: minimum / 10
    min_over_10: float | None = None  # a tenth of the rate at the smoothed loss's minimum
    steepest: float | None = None  # where the smoothed loss falls fastest per decade of LR
    stop_reason: str = ""

    def readings(self) -> dict[str, Any]:
        """What a page or ``--json`` shows (the curve itself lives in the metrics)."""
        return {k: v for k, v in asdict(self).items() if k not in ("lrs", "losses", "smoothed")}


def range_test(ws: Workspace, config: RunConfig, start_lr: float = 1e-7, end_lr: float = 10.0,
               steps: int = 200, smooth: float = 0.05, diverge: float = 4.0,
               progress: ProgressFn = no_progress) -> LRFindResult:
    """Train ``steps`` steps at exponentially growing rates from ``start_lr`` to ``end_lr``."""
    from core.train.trainer import Trainer

    check_options(start_lr, end_lr, steps)
    cfg = copy.deepcopy(config)
    # One optimizer step per batch, at the rate this test sets, not a schedule's.
    cfg.train.grad_accum, cfg.train.scheduler, cfg.train.lr = 1, "none", start_lr
    trainer = Trainer(ws, cfg, ws.home / "tmp")
    trainer.setup()
    trainer.model.train()
    lrs, losses = [], []
    avg, best = 0.0, math.inf
    reason = f"reached {end_lr:g}"
    for i, (x, y) in enumerate(_batches(trainer, steps)):
        lr = start_lr * (end_lr / start_lr) ** (i / (steps - 1))
        for group in trainer.optimizer.param_groups:
            group["lr"] = lr
        sums = trainer.forward_backward(x, y, sync=True)
        trainer.optimizer_step()
        loss = (sums[0] / sums[2]).item()
        avg = smooth * loss + (1 - smooth) * avg
        # Bias-corrected, as in Adam. Causal, so it can stop the test; it lags, so the
        # readings use zero_lag instead.
        value = avg / (1 - (1 - smooth) ** (i + 1))
        lrs.append(lr)
        losses.append(loss)
        progress(i + 1, steps, f"lr {lr:.2e} loss {loss:.4f}")
        if not math.isfinite(value) or value > diverge * best:
            reason = f"loss exploded at lr {lr:.2e}"
            break
        best = min(best, value)
    smoothed = zero_lag(losses, smooth)
    result = LRFindResult(lrs, losses, smoothed, stop_reason=reason)
    result.steepest, result.min_over_10 = suggest(lrs, smoothed)
    result.suggestion = result.min_over_10
    return result


def zero_lag(losses: list[float], smooth: float) -> list[float]:
    """The bias-corrected moving average run forward then backward (no lag); a loss after the
    first non-finite one is left out (nan: the curve ends there)."""
    finite = next((i for i, v in enumerate(losses) if not math.isfinite(v)), len(losses))

    def ema(values: list[float]) -> list[float]:
        out, avg = [], 0.0
        for i, v in enumerate(values):
            avg = smooth * v + (1 - smooth) * avg
            out.append(avg / (1 - (1 - smooth) ** (i + 1)))
        return out

    return ema(ema(losses[:finite])[::-1])[::-1] + [math.nan] * (len(losses) - finite)


def check_options(start_lr: float, end_lr: float, steps: int) -> None:
    if not 0 < start_lr < end_lr:
        raise InvalidConfig(f"The LR range must grow: got {start_lr:g} -> {end_lr:g}.")
    if not 10 <= steps <= 10_000:
        raise InvalidConfig(f"An LR range test takes 10 to 10000 steps, got {steps}.")


def _batches(trainer: Any, steps: int):
    """``steps`` non-empty training batches, epoch after epoch."""
    done, epoch = 0, 0
    while done < steps:
        trainer.train_loader.sampler.set_epoch(epoch)
        yielded = False
        for x, y, _, _ in trainer.train_loader:
            if not len(y):
                continue
            yield x, y
            yielded, done = True, done + 1
            if done >= steps:
                return
        if not yielded:
            raise InvalidConfig("The training split has no readable sample.")
        epoch += 1


def suggest(lrs: list[float], smoothed: list[float]) -> tuple[float | None, float | None]:
    """(steepest descent, minimum / 10) of a smoothed loss-vs-LR curve."""
    import numpy as np

    finite = [(lr, v) for lr, v in zip(lrs, smoothed, strict=True) if math.isfinite(v)]
    if len(finite) < 5:
        return None, None
    x = np.log10([lr for lr, _ in finite])
    y = np.array([v for _, v in finite])
    low = int(np.argmin(y))
    min_over_10 = float(10 ** x[low] / 10)
    # The steepest fall before the minimum; the first tenth is warm-up noise of the smoothing.
    skip = max(1, len(y) // 10)
    if low - skip < 2:
        return min_over_10, min_over_10
    slope = np.gradient(y[: low + 1], x[: low + 1])
    steepest = skip + int(np.argmin(slope[skip:]))
    return float(10 ** x[steepest]), min_over_10


# -- as a run ------------------------------------------------------------------------------------


def create_lr_find(store: Store, config: RunConfig, name: str = "") -> Run:
    """Record an LR range test of ``config`` as a queued run of kind ``lr_find``."""
    from core.runs.lifecycle import create_run

    return create_run(store, config, name=name or "LR range test", kind=KIND)


def start_lr_find(store: Store, config: RunConfig, steps: int = 200, start_lr: float = 1e-7,
                  end_lr: float = 10.0) -> Job:
    """The range test as a background job (heavy: it trains); the page watches its run."""
    from core.runs.jobs import python_core, submit

    check_options(start_lr, end_lr, steps)
    run = create_lr_find(store, config)
    argv = python_core("lr-find", "--run", run.id, "--steps", str(int(steps)),
                       "--start-lr", repr(float(start_lr)), "--end-lr", repr(float(end_lr)))
    return submit(store, run.id, KIND, argv)


def run_lr_find(ws: Workspace, run_id: str, progress: ProgressFn = no_progress,
                **options: Any) -> dict[str, Any]:
    """Run the range test of an ``lr_find`` run and record it (status, curve, readings)."""
    store = ws.store
    run = store.get_run(run_id)
    if run.kind != KIND:
        raise InvalidConfig(f"Run {run_id} is a {run.kind} run, not an LR range test.")
    if not store.set_status(run_id, "running", expect=("queued",)):
        raise InvalidConfig(f"Run {run_id} is {store.get_run(run_id).status}; an LR range "
                            "test runs once. Start a new one.")
    try:
        result = range_test(ws, RunConfig.from_dict(run.config), progress=progress, **options)
    except Exception as exc:
        from core.train.batch_finder import is_out_of_memory, out_of_memory_message

        message = out_of_memory_message(RunConfig.from_dict(run.config)) \
            if is_out_of_memory(exc) else str(exc) or type(exc).__name__
        store.set_status(run_id, "failed", error=message, expect=("running",))
        raise
    rows = [(i, key, value) for i, point in enumerate(zip(
        result.lrs, result.losses, result.smoothed, strict=True))
        for key, value in zip(KEYS, point, strict=True) if math.isfinite(value)]
    store.log_metrics(run_id, rows)
    readings = result.readings()
    store.update_run(run_id, summary={"lr_find": readings}, step=len(result.lrs),
                     total_steps=len(result.lrs))
    store.set_status(run_id, "completed", expect=("running",))
    store.add_event(run_id, "completed", _describe(readings))
    return {"run_id": run_id, "status": "completed", **readings, "steps": len(result.lrs)}


def _describe(readings: dict[str, Any]) -> str:
    def fmt(value: float | None) -> str:
        return "-" if value is None else f"{value:.2e}"
    return (f"suggested lr {fmt(readings['suggestion'])} (minimum / 10), steepest descent "
            f"{fmt(readings['steepest'])}; {readings['stop_reason']}")


def lr_find_figure(lrs: list[float], losses: list[float], smoothed: list[float],
                   steepest: float | None = None, min_over_10: float | None = None):
    """Loss against LR (log axis), raw and smoothed, with both readings marked. Torch-free:
    the Train page draws it from the stored curve."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.add_trace(go.Scatter(x=lrs, y=losses, name="loss", mode="lines",
                             line={"color": "#1f77b4", "width": 1}, opacity=0.35))
    fig.add_trace(go.Scatter(x=lrs, y=smoothed, name="smoothed loss", mode="lines",
                             line={"color": "#1f77b4", "width": 2}))
    marks = (("steepest descent", steepest, "#d62728"),
             ("minimum / 10 (suggested)", min_over_10, "#2ca02c"))
    for label, lr, color in marks:
        if lr is None or not lrs:
            continue
        y = _at(lrs, smoothed, lr)
        fig.add_trace(go.Scatter(x=[lr], y=[y], name=f"{label}: {lr:.2e}", mode="markers",
                                 marker={"color": color, "size": 12, "symbol": "x"}))
        fig.add_vline(x=lr, line={"color": color, "dash": "dot", "width": 1})
    finite = [v for v in smoothed if math.isfinite(v)]
    fig.update_layout(title={"text": "Learning-rate range test", "font": {"size": 14}},
                      height=360, margin={"l": 10, "r": 10, "t": 40, "b": 10},
                      xaxis_title="learning rate (log)", yaxis_title="training loss",
                      legend={"orientation": "h", "y": -0.25}, hovermode="x unified")
    fig.update_xaxes(type="log", exponentformat="e")
    if finite:  # the exploding tail would squash the useful part of the curve
        top = min(max(finite), 2 * finite[0] if finite[0] > 0 else max(finite))
        fig.update_yaxes(range=[min(finite) * 0.95, top * 1.05])
    return fig


def _at(lrs: list[float], values: list[float], lr: float) -> float:
    """The value at the logged rate nearest ``lr``."""
    nearest = min(range(len(lrs)), key=lambda i: abs(math.log(lrs[i]) - math.log(lr)))
    return values[nearest]
