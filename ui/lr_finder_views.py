"""The learning-rate finder on the Train page.

"Find a learning rate" starts a range test (``core.train.lr_finder``) of the form's config as a
background job; its run (kind ``lr_find``) becomes the active run, watched here while it runs,
then drawn from the store: loss against LR with the suggested rate marked, and buttons that put a
rate into the form's learning-rate field.
"""

from __future__ import annotations

import streamlit as st

from core.errors import UserError
from core.runs.jobs import active_job
from core.runs.store import Run, Store
from core.train.lr_finder import KEYS, KIND, lr_find_figure, start_lr_find
from ui import state
from ui.batch_finder_views import render_batch_find, render_batch_find_button
from ui.format import plain
from ui.jobs import render_job, watch_job
from ui.train_form import state_to_config


def is_lr_find(run: Run) -> bool:
    return run.kind == KIND


def render_lr_find_button() -> None:
    """The finders under the form: an LR range test (its run becomes the active run) and the
    batch-size finder (drawn here, under the buttons)."""
    c = st.columns(2)
    with c[1]:
        render_batch_find_button()
    with c[0]:
        _render_lr_button()
    render_batch_find(state.store())


def _render_lr_button() -> None:
    """Start a range test of the dataset, model and options of the form."""
    if not st.button("Find a learning rate", key="train_lr_find", icon=":material/search:",
                     help="A short range test (about 200 steps, nothing saved): the loss as the "
                          "learning rate grows, with a suggested rate you can put in the form. "
                          "Uses the dataset and model above and the form's last options."):
        return
    try:
        job = start_lr_find(state.store(), state_to_config())
    except UserError as exc:
        st.error(str(exc))
        return
    state.set_active_run(job.run_id)
    state.flash(f"Started an LR range test ({job.run_id}); it is the active run below.", "info")
    st.rerun()


def render_lr_find(s: Store, run: Run) -> None:
    """An LR range test run: live progress, else its curve and the buttons."""
    st.markdown(f"**LR range test** · {plain(run.dataset)}/{plain(run.model)} · `{run.id}`")
    if run.is_active:
        job = active_job(s, run.id)
        if job is not None:
            watch_job(job.id, "LR range test")
        else:
            st.info("Waiting for the job to start...")
        return
    if run.status != "completed":
        render_job(s.latest_job(run.id, KIND), "The LR range test")
        if run.error:
            st.error(f"The LR range test {run.status}: {plain(run.error)}")
        return
    readings = run.summary.get("lr_find", {})
    curve = s.get_metrics(run.id, keys=KEYS)
    lrs, losses, smoothed = ([v for _, v in curve.get(k, [])] for k in KEYS)
    if len(lrs) != len(smoothed) or not lrs:
        st.warning("This range test recorded no usable curve.")
        return
    st.plotly_chart(lr_find_figure(lrs, losses, smoothed, readings.get("steepest"),
                                   readings.get("min_over_10")), key="train_lr_find_chart")
    st.caption(f"{len(lrs)} steps; {plain(readings.get('stop_reason', ''))}. Minimum / 10 of "
               "the smoothed loss is the suggestion; the steepest descent is lower, where the "
               "rate starts to matter (often too slow for a short run).")
    render_use_buttons(readings)


def render_use_buttons(readings: dict) -> None:
    suggestion, steepest = readings.get("suggestion"), readings.get("steepest")
    if suggestion is None:
        st.warning("The loss never fell over this range: no rate to suggest. Try a wider range "
                   "(`python -m core lr-find --start-lr ... --end-lr ...`).")
        return
    c = st.columns(2)
    c[0].button(f"Use {suggestion:.2e} (suggested: minimum / 10)", key="train_use_lr",
                type="primary", icon=":material/input:", on_click=use_lr, args=(suggestion,),
                width="stretch")
    if steepest is not None and steepest != suggestion:
        c[1].button(f"Use {steepest:.2e} (steepest descent)", key="train_use_lr_steepest",
                    icon=":material/input:", on_click=use_lr, args=(steepest,), width="stretch")


def use_lr(lr: float) -> None:
    """Callback: the form's learning rate takes ``lr`` (written before the form is drawn)."""
    st.session_state["train_lr"] = float(f"{lr:.3g}")
    state.flash(f"Learning rate {lr:.3g} is in the form above; launch a run with it.", "info")
