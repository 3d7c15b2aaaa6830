"""Ensemble: combine runs of one dataset into one model, and see why it helps or does not.

Building is a background job (``python -m core ensemble RUN RUN ... --method M``: fit on val,
evaluate on val and test); the diversity view reads the stored test predictions: the members'
pairwise disagreement and each member's accuracy next to the ensemble's.
"""

from __future__ import annotations

import streamlit as st

from core.analyze import ENSEMBLE_METHODS
from core.analyze.ensemble import read_combiner
from core.errors import UserError
from core.runs.launchers import start_ensemble
from core.runs.store import Run, Store
from ui import state
from ui.clicks import act_once
from ui.ensemble_views import (
    BUILD_JOB,
    METHOD_HELP,
    adopt_build,
    build_problem,
    current_build,
    default_members,
    ensemble_runs,
    load_diversity,
    member_labels,
    member_options,
    render_diversity,
)
from ui.evaluate_views import ensure_predictions
from ui.format import plain
from ui.jobs import render_job, watch_job
from ui.router import require_router
from ui.runs import pick_run, run_label

PAGES = {"Evaluate": ("pages/evaluate.py", ":material/analytics:"),
         "Predict": ("pages/predict.py", ":material/online_prediction:"),
         "Explain": ("pages/explain.py", ":material/psychology:"),
         "Deploy": ("pages/deploy.py", ":material/cloud_upload:")}


def pick_members(s: Store, runs: list[Run]) -> list[Run]:
    """The members multiselect: starts on recent runs of the active run's dataset."""
    by_id = {r.id: r for r in runs}
    if "ensemble_members" not in st.session_state:
        st.session_state["ensemble_members"] = default_members(runs, s)
    else:  # a run deleted meanwhile is no longer an option
        st.session_state["ensemble_members"] = [
            i for i in st.session_state["ensemble_members"] if i in by_id]
    ids = st.multiselect("Members", list(by_id), key="ensemble_members",
                         format_func=lambda i: run_label(by_id[i]),
                         help="Completed runs with a checkpoint, all of one dataset (any model; "
                              "image members may use different input sizes).")
    return [by_id[i] for i in ids]


def render_build(s: Store) -> None:
    st.subheader("Build an ensemble")
    job = current_build(s)
    if job is not None and job.is_active:
        watch_job(job.id, "Building the ensemble")
        return
    if job is not None:
        made = adopt_build(job)
        if made:
            st.success(f"Built the ensemble {plain(made)}: it is the active run now.")
        elif job.status != "completed":
            render_job(job, "The last ensemble build")
    runs = member_options(s)
    if len(runs) < 2:
        st.info("An ensemble needs at least two completed runs with a checkpoint: train them "
                "on the Train page first.")
        return
    chosen = pick_members(s, runs)
    method = st.radio("Method", ENSEMBLE_METHODS, key="ensemble_method", horizontal=True,
                      captions=[METHOD_HELP[m] for m in ENSEMBLE_METHODS],
                      help="Weights and stacking are fitted on the validation split only; "
                           "the test split is used only to report.")
    name = st.text_input("Name (optional)", key="ensemble_name", max_chars=80)
    problem = build_problem(chosen)
    if st.button("Build ensemble", key="ensemble_build", type="primary",
                 icon=":material/join_inner:", disabled=problem is not None, help=problem):
        try:
            members = [r.id for r in chosen]
            job = act_once("ensemble", (members, method, name.strip()),
                           lambda: start_ensemble(s, members, method, name.strip()))
        except UserError as exc:
            st.error(str(exc))
            return
        st.session_state[BUILD_JOB] = job.id
        st.rerun()
    if problem:
        st.caption(plain(problem))


def render_links(run: Run) -> None:
    """Open the ensemble on Evaluate, Predict, Explain or Deploy, as the active run."""
    cols = st.columns(len(PAGES) + 2)
    for col, (title, (page, icon)) in zip(cols, PAGES.items(), strict=False):
        if col.button(title, key=f"ensemble_open_{title.lower()}", icon=icon, width="stretch"):
            state.set_active_run(run.id)
            st.switch_page(page)


def render_view(s: Store) -> None:
    st.subheader("Diversity: why the ensemble helps, or does not")
    ensembles = ensemble_runs(s)
    if not ensembles:
        st.caption("No ensemble yet: build one above.")
        return
    run = pick_run(ensembles, "ensemble_view", "Ensemble",
                   help="The one you pick becomes the active run.")
    if run is None:
        return
    render_links(run)
    ws = state.workspace()
    try:
        members = read_combiner(ws, run.id)["members"]  # refused if a member changed since
        # Members first: the ensemble's own evaluation would predict them all again.
        ready = [ensure_predictions(s, s.get_run(m), "test") for m in members]
        if any(p is None for p in ready):
            return
        if ensure_predictions(s, run, "test") is None:
            return
        found = load_diversity(ws, run, members)
    except UserError as exc:
        st.error(str(exc))
        return
    render_diversity(run, found, member_labels(s, members))


require_router()
st.title("Ensemble")
st.caption("Combine runs of one dataset into one model. Weights and stacking are fitted on the "
           "validation split; the test split only reports.")
state.render_flashes()
s = state.reconciled_store()
render_build(s)
st.divider()
render_view(s)
