"""The live monitor of a run: curves that grow while it trains, progress, ETA, epoch table, error.

While the run is active the monitor is a fragment that reruns twice a second on its own (the
rest of the page stays still) and reads only the metric rows newer than the last step it holds;
the series it already read live in session state. A finished run is drawn once, without polling.

Until its first loss point a run says what it is waiting for (the queue, its process starting,
the data loading) and for how long, instead of a progress bar at zero; a chart with no point yet
is a placeholder that says when it fills, without axes.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable

import pandas as pd
import streamlit as st

from core import runs
from core.errors import RunNotFound
from core.runs.records import Job
from core.runs.series import Series, count_points, epoch_rows, last_step, merge
from core.runs.store import Run, Store
from core.workspace import Workspace, run_dir
from ui import format as fmt
from ui.charts import Overlay, curves_figure, has_points, waiting_figure
from ui.components import render_status_badge
from ui.format import plain
from ui.runs import monitored_metric, run_label
from ui.state import active_run_id, store

LOSS_KEYS = ("train/step_loss", "train/loss", "val/loss")
ACC_KEYS = ("train/acc", "val/acc")
OVERLAY_KEYS = ("train/loss", "val/loss", "train/acc", "val/acc")
# The machine beside the curves (core.train.monitor): chart title, y axis, the keys' suffix.
RESOURCE_CHARTS = (("CPU (100 = one core)", "%", "sys/cpu_percent"),
                   ("RAM of the job's processes", "MB", "sys/ram_mb"),
                   ("GPU utilisation", "%", "/util"), ("GPU memory used", "MB", "/mem_used_mb"),
                   ("GPU temperature", "°C", "/temp_c"), ("GPU power", "W", "/power_w"))
CACHE_KEY = "train_series"  # session state: {run_id: {"pid": ..., "series": {...}}}
MAX_CACHED_RUNS = 4
REFRESH = 0.5  # seconds: a new metric row reaches the chart well within 2 s
WAITING = {"loss": ("Loss", "The loss curve appears with the first step."),
           "acc": ("Accuracy", "Accuracy appears when the first epoch ends.")}


def read_series(s: Store, run: Run) -> dict[str, Series]:
    """The run's series held by this session, topped up with the rows newer than its last step.

    The window re-reads the last step itself: the trainer writes an epoch's metrics at the step
    of its last batch, possibly after that batch's step loss was read; ``merge`` drops repeats.
    A resumed run (new process) is re-read from the start, as it may rewrite later steps.
    """
    cache: OrderedDict = st.session_state.setdefault(CACHE_KEY, OrderedDict())
    entry = cache.get(run.id)
    if entry is None or entry["pid"] != run.pid:
        entry = {"pid": run.pid, "series": {}}
    cache[run.id] = entry
    cache.move_to_end(run.id)
    while len(cache) > MAX_CACHED_RUNS:
        cache.popitem(last=False)
    series = entry["series"]
    merge(series, s.get_metrics(run.id, after_step=last_step(series) - 1))
    return series


@st.cache_data(ttl=30, max_entries=64, show_spinner=False)
def overlay_series(home: str, run_id: str, marker: tuple) -> dict[str, Series]:
    """Epoch-level series of another run, to compare (``marker`` changes when it progresses)."""
    with Workspace.open(home) as ws:
        rows = ws.store.get_metrics(run_id, keys=OVERLAY_KEYS)
    series: dict[str, Series] = {}
    merge(series, rows)
    return series


def render_monitor(run: Run, below: Callable[[Store], None] | None = None) -> None:
    """The monitor of ``run``: live while it is queued or running, drawn once otherwise.

    ``below(store)`` draws what must stay in step with the monitor (the Train page's runs table)
    in the same fragment, so it refreshes with the curves instead of going stale.
    """
    if run.is_active:
        _live_monitor(run.id, below)
    else:
        _static_monitor(run.id, below)


@st.fragment(run_every=REFRESH)
def _live_monitor(run_id: str, below: Callable[[Store], None] | None) -> None:
    _leave_if_switched(run_id)
    s = store()
    runs.reconcile(s)  # a job killed meanwhile shows as interrupted, not as running forever
    run = _get(s, run_id)
    if run is not None:
        _render_body(s, run)
    if below is not None:
        below(s)
    if run is not None and not run.is_active:
        st.rerun()  # the whole page switches to the finished view and the polling stops


@st.fragment
def _static_monitor(run_id: str, below: Callable[[Store], None] | None) -> None:
    _leave_if_switched(run_id)
    s = store()
    run = _get(s, run_id)
    if run is not None:
        _render_body(s, run)
    if below is not None:
        below(s)


def _leave_if_switched(run_id: str) -> None:
    """A widget in this fragment (a row picked in the runs table) changed the active run: a
    fragment rerun would keep drawing the old one, so the whole page is redrawn."""
    if active_run_id() != run_id:
        st.rerun()


def _get(s: Store, run_id: str) -> Run | None:
    try:
        return s.get_run(run_id)
    except RunNotFound:
        st.info(f"Run {run_id} no longer exists.")
        return None


def _render_body(s: Store, run: Run) -> None:
    series = read_series(s, run)
    if run.is_active and not count_points(series, LOSS_KEYS):
        render_starting(s, run)
    else:
        render_progress(run, series)
    render_outcome(s, run)
    overlays = render_compare_picker(s, run)
    render_curves(run, series, overlays)
    render_epoch_table(series)
    render_events(s, run)


def render_head(run: Run) -> None:
    head = st.columns([3, 1])
    head[0].markdown(f"**{plain(run_label(run))}**" + (f" · `{run.id}`" if run.name else ""))
    with head[1]:
        render_status_badge(run, key="train_run_status")


def training_job(s: Store, run: Run) -> Job | None:
    """The active job that trains ``run`` (a heavy one), else any active job of it."""
    jobs = s.active_jobs(run.id)
    return next((j for j in jobs if j.heavy), jobs[0] if jobs else None)


def starting_phase(run: Run, job: Job | None, ahead: int) -> str:
    """What an active run with no loss point yet is waiting for, in plain words.

    ``ahead``: heavy jobs queued before its job (``Store.queue_position``)."""
    if job is None or job.status == "queued":
        if ahead:
            return (f"Queued behind {ahead} job{'s' if ahead > 1 else ''}: it starts when a "
                    "slot frees (Home sets how many trainings run at once).")
        return "Queued: the job starts next."
    if run.status == "queued":
        return "Starting the job's process..."
    if not run.total_steps:
        return "Loading PyTorch, the data and the model..."
    return "Training: the first loss point is on its way..."


def render_starting(s: Store, run: Run) -> None:
    """An active run before its first loss point: what it waits for and for how long (the
    whole wait since Launch, or since the resume), no bar at zero and no empty axes."""
    render_head(run)
    job = training_job(s, run)
    queued = job is not None and job.status == "queued" and job.heavy
    phase = starting_phase(run, job, s.queue_position(job.id) if queued else 0)
    since = job.created_at if job is not None else run.created_at
    with st.container(key="train_starting"):
        st.info(f"{phase} Waiting for {fmt.duration(time.time() - since)}.",
                icon=":material/hourglass_top:")


def render_progress(run: Run, series: dict[str, Series]) -> None:
    render_head(run)
    eta = run.eta()
    text = (f"epoch {run.epoch}/{run.total_epochs} · step {run.step}/{run.total_steps or '?'}"
            + (f" · ETA {fmt.duration(eta)}" if eta is not None else ""))
    st.progress(1.0 if run.status == "completed" else run.progress, text=text)
    throughput = series.get("throughput", ([], []))[1]
    c = st.columns(5)
    c[0].metric("Throughput", f"{throughput[-1]:.0f}/s" if throughput else "—",
                help="Training samples per second in the last epoch.")
    c[1].metric("Device", run.device or "—")
    c[2].metric("Training time", fmt.duration(run.duration),
                help="Since the job's process began training (the wait in the queue and its "
                     "start are not counted).")
    c[3].metric("ETA", fmt.duration(eta) if run.is_active else "—")
    c[4].metric(f"Best {monitored_metric(run)}", fmt.number(run.best_metric))


def render_outcome(s: Store, run: Run) -> None:
    """The error of a failed run (with its log), or why a run stopped."""
    summary = run.summary
    if run.status == "failed":
        st.error(f"This run failed: {run.error or 'unknown error'}")
        log = run_dir(s.home, run.id) / "log.txt"
        if log.is_file():
            with st.expander("Log (last 60 lines)"):
                st.code("\n".join(log.read_text(errors="replace").splitlines()[-60:]),
                        language=None)
    elif run.status == "interrupted":
        st.warning(run.error or "The job stopped without finishing. Resume it to continue.")
    elif run.status == "cancelled":
        st.info("Cancelled. Resume it to continue from its last checkpoint.")
    if summary.get("stop_reason"):
        st.info(f"Stopped early: {summary['stop_reason']}")
    if summary.get("skipped_images"):
        st.warning(f"{summary['skipped_images']} unreadable image(s) were skipped.")
    if summary.get("starvation"):  # core.train.monitor.StarvationHint
        st.warning(summary["starvation"], icon=":material/hourglass_empty:")
    if run.status == "running" and run.heartbeat:
        silent = time.time() - run.heartbeat
        if silent > 60:
            st.warning(f"No heartbeat from the job for {fmt.duration(silent)}.")


def render_compare_picker(s: Store, run: Run) -> list[Overlay]:
    """Other runs whose epoch curves are overlaid (dashed) on this run's charts."""
    others = [r for r in s.list_runs(limit=30) if r.id != run.id]
    labels = {r.id: run_label(r) for r in others}
    if "train_compare" in st.session_state:  # forget runs deleted (or scrolled out) meanwhile
        st.session_state["train_compare"] = [
            i for i in st.session_state["train_compare"] if i in labels]
    chosen = st.multiselect("Compare with", list(labels), key="train_compare",
                            format_func=lambda i: labels.get(i, i),
                            placeholder="Overlay the curves of other runs",
                            help="Epoch-level train/val curves of the runs you pick, dashed.")
    overlays = []
    for other in (r for r in others if r.id in chosen):
        marker = (other.status, other.step, other.epoch)
        overlays.append(Overlay(other.name or other.id,
                                overlay_series(str(s.home), other.id, marker)))
    return overlays


def render_curves(run: Run, series: dict[str, Series], overlays: list[Overlay]) -> None:
    """The loss and accuracy charts (a placeholder without axes until a chart has a point),
    then the learning rate and the machine."""
    figures = _figures(run, series, overlays)
    if not run.is_active and "loss" not in figures and "acc" not in figures:
        st.caption("This run logged no loss or accuracy: there is nothing to draw.")
        return
    left, right = st.columns(2)
    with left:
        if "loss" in figures:
            st.plotly_chart(figures["loss"], key="train_loss_chart")
            with st.container(key="train_loss_points"):
                st.caption(f"Loss curve: {count_points(series, LOSS_KEYS)} points")
        elif run.is_active:  # the same key: the chart replaces its placeholder in place
            st.plotly_chart(waiting_figure(*WAITING["loss"]), key="train_loss_chart")
    with right:
        if "acc" in figures:
            st.plotly_chart(figures["acc"], key="train_acc_chart")
        elif run.is_active:
            st.plotly_chart(waiting_figure(*WAITING["acc"]), key="train_acc_chart")
    if "lr" in figures:
        st.plotly_chart(figures["lr"], key="train_lr_chart")
    render_resources(run, series, figures)


def render_resources(run: Run, series: dict[str, Series], figures: dict) -> None:
    """CPU, RAM and GPU curves of the job, two a row; GPUs the job never saw are said absent."""
    charts = [key for key in figures if key.startswith("res:")]
    if not charts:
        if run.config.get("train", {}).get("resource_every", 0):
            st.caption("Machine use appears here a few seconds after the job starts.")
        return
    st.markdown("**Machine** · sampled by the job every "
                f"{run.config['train'].get('resource_every', 5):g} s")
    for i in range(0, len(charts), 2):
        row = st.columns(2)
        for col, key in zip(row, charts[i:i + 2], strict=False):
            col.plotly_chart(figures[key], key=f"train_{key}_chart")
    if not any(k.startswith("gpu") for k in series) and run.summary.get("gpus_seen") == 0:
        st.caption("GPU: none seen by this job (no NVIDIA driver or no GPU): CPU only.")
    gpu_total = [k for k in series if k.endswith("/mem_total_mb")]
    if gpu_total:
        st.caption(" · ".join(f"{k.split('/')[0]}: {series[k][1][-1]:,.0f} MB in all"
                              for k in sorted(gpu_total)))


def _figures(run: Run, series: dict[str, Series], overlays: list[Overlay]) -> dict:
    """The run's figures, rebuilt only when a point was added (most refreshes add none)."""
    signature = (run.id, count_points(series), tuple(
        (o.label, count_points(o.series)) for o in overlays))
    held = st.session_state.get("train_figures")
    if held is not None and held[0] == signature:
        return held[1]
    figures = {}
    if has_points(series, LOSS_KEYS, overlays):
        figures["loss"] = curves_figure(series, LOSS_KEYS, "Loss", "loss", overlays,
                                        revision=run.id)
    if has_points(series, ACC_KEYS, overlays):
        figures["acc"] = curves_figure(series, ACC_KEYS, "Accuracy", "accuracy", overlays,
                                       revision=run.id)
    if "lr" in series:
        figures["lr"] = curves_figure(series, ("lr",), "Learning rate", "lr", revision=run.id,
                                      height=240, from_zero=True)
    for title, unit, suffix in RESOURCE_CHARTS:
        keys = sorted(k for k in series if k.endswith(suffix) and "/" in k
                      and k.split("/")[0] in ("sys", *_gpus(series)))
        if keys:
            figures[f"res:{suffix}"] = curves_figure(series, keys, title, unit, revision=run.id,
                                                     height=220, from_zero=True)
    st.session_state["train_figures"] = (signature, figures)
    return figures


def render_epoch_table(series: dict[str, Series]) -> None:
    rows = epoch_rows(series)
    if not rows:
        st.caption("The epoch table appears when the first epoch ends.")
        return
    frame = pd.DataFrame(rows).set_index("epoch")
    columns = [c for c in ("train/loss", "train/acc", "val/loss", "val/acc", "lr",
                           "throughput", "epoch_time", "step") if c in frame]
    st.dataframe(frame[columns], width="stretch", key="train_epoch_table",
                 column_config={c: st.column_config.NumberColumn(format="%.4g")
                                for c in columns if c != "step"})


def render_events(s: Store, run: Run) -> None:
    events = s.get_events(run.id)[-20:]
    if not events:
        return
    with st.expander(f"Events ({len(events)})"):
        for e in reversed(events):
            st.text(f"{fmt.timestamp(e.time)}  {e.level:7}  {e.kind}: {e.message}")


def _gpus(series: dict[str, Series]) -> set[str]:
    return {k.split("/")[0] for k in series if k.startswith("gpu") and "/" in k}
