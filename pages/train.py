"""Train: launch a run (or a cross-validation) from a form, act on runs (stop, resume, delete,
clone), watch one live."""

from __future__ import annotations

import streamlit as st

from core import runs
from core.errors import UserError
from core.runs.cv import is_cv_parent, launch_cv
from core.runs.store import Run, Store
from core.tune import STUDY_KIND, TRIAL_KIND
from ui import state
from ui.clicks import act_once
from ui.components import render_delete_confirmation, render_runs_table
from ui.cv_views import render_cv
from ui.format import plain
from ui.lr_finder_views import is_lr_find, render_lr_find, render_lr_find_button
from ui.monitor import render_monitor
from ui.router import require_router
from ui.runs import newest_running
from ui.train_form import prefill_from, render_new_run_form
from ui.tune_views import render_tune_link


def render_launch(s: Store, infos: dict) -> None:
    """The new-run form; Launch starts a background job (or, with cross-validation on, queues
    the folds under a parent) and makes it the active run."""
    with st.container(border=True):
        st.subheader("New run")
        try:
            submitted = render_new_run_form(infos)
            render_lr_find_button()
            if submitted is None:
                return
            config, name = submitted
            with st.spinner("Starting the job..."):
                request = (config.to_dict(), name)
                if config.data.cv:
                    run, folds = act_once("train", request, lambda: launch_cv(s, config, name))
                    what = f"{len(folds)}-fold cross-validation {run.id}"
                else:
                    run = act_once("train", request, lambda: runs.launch(s, config, name=name))
                    what = f"run {run.id}"
        except UserError as exc:
            st.error(str(exc))
            return
    state.set_active_run(run.id)
    state.flash(f"Launched {what} ({plain(run.dataset)} / {plain(run.model)}) in the "
                "background.")
    st.rerun()


def render_run_actions(s: Store, run: Run, infos: dict) -> None:
    """Stop, Resume, Clone and Delete (with a confirmation) for the active run."""
    c = st.columns(4)
    try:
        if c[0].button("Stop", key="train_stop", icon=":material/stop:",
                       disabled=not run.is_active, width="stretch"):
            with st.spinner("Stopping (a training saves a checkpoint first)..."):
                act_once("train_stop", run.id, lambda: runs.cancel(s, run.id))
            state.flash(f"Stopped run {run.id}.", "info")
            st.rerun()
        if c[1].button("Resume", key="train_resume", icon=":material/replay:",
                       disabled=run.status not in ("interrupted", "cancelled") or is_lr_find(run),
                       width="stretch"):
            act_once("train_resume", run.id, lambda: runs.resume(s, run.id))
            state.flash(f"Resumed run {run.id} from its last checkpoint.", "info")
            st.rerun()
        c[2].button("Clone", key="train_clone", icon=":material/content_copy:", width="stretch",
                    on_click=prefill_from, args=(run.config, run.name or run.id, infos),
                    disabled=run.kind == "ensemble",  # made by `ensemble`, not by this form
                    help="Prefill the form above with this run's config.")
        if c[3].button("Delete", key="train_delete", icon=":material/delete:",
                       disabled=run.is_active, width="stretch"):
            st.session_state["train_confirm_delete"] = run.id
        if st.session_state.get("train_confirm_delete") == run.id:
            confirm_delete(s, run)
    except UserError as exc:
        st.error(str(exc))


def adopt_newest_running(s: Store) -> None:
    """With no active run, a run started from the CLI or another tab is the one to watch: it
    becomes the active run, and the page is redrawn so the sidebar agrees."""
    run = newest_running(s)
    if run is not None:
        state.set_active_run(run.id)
        st.rerun()


def render_all_runs(s: Store) -> None:
    st.subheader("All runs")
    render_runs_table(s, key="train_runs")


def confirm_delete(s: Store, run: Run) -> None:
    def delete() -> str:
        runs.delete(s, run.id)
        state.set_active_run(None)
        return f"Deleted run {run.id}."

    render_delete_confirmation("train", f"Delete run {run.id} with its checkpoints, logs and "
                                        "metrics? This cannot be undone.", delete)


require_router()
st.title("Train")
state.render_flashes()
s = state.reconciled_store()
infos = state.dataset_infos()

render_launch(s, infos)

st.subheader("Active run")
run = state.active_run(s)
if run is None:
    adopt_newest_running(s)
    st.info("Launch a run above, or pick one in the table below or in the sidebar.")
    render_all_runs(s)
else:
    render_run_actions(s, run, infos)  # on a CV parent, Stop and Resume act on its folds
    if run.kind in (STUDY_KIND, TRIAL_KIND):
        render_tune_link(run)
    if is_cv_parent(run):
        render_cv(run, below=render_all_runs)
    elif run.kind == STUDY_KIND:  # no curves of its own: its trials have them
        render_all_runs(s)
    elif is_lr_find(run):
        render_lr_find(s, run)
        render_all_runs(s)
    else:
        render_monitor(run, below=render_all_runs)  # the table refreshes with the live monitor
