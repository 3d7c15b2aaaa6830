"""Explain: why does the model predict what it predicts for *this* input?

Pick an input (a test-split example, an upload, or the sample sent from Evaluate), a target class
and the methods. A light method (Grad-CAM, IG, SHAP at their default budgets: the rule of
``core.explain.light``) is computed here with the dashboard's warm model, its map drawn as soon as
it exists; a heavy one (image LIME, larger budgets) runs as a background job, its progress drawn
here. Both store the same result in the run's explanation cache, read back side by side with its
trust checks. This page imports no torch itself: ``ui.explain_views`` loads the model on demand.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np
import streamlit as st

from core.analyze.predict import read_rows
from core.errors import UserError
from core.explain import effective_params, find_explanation, list_explainers
from core.explain.cache import SUMMARY_INPUT, read_prediction, save_input_image, save_input_row
from core.explain.ensemble import find_results
from core.explain.plots import beeswarm_figure
from core.runs import launchers
from ui import state
from ui.explain_cards import sharp_preview
from ui.explain_views import (
    describe_prediction,
    explain_here,
    explains_here,
    png_bytes,
    render_results_side_by_side,
    run_dataset_info,
)
from ui.format import plain
from ui.jobs import render_job, watch_job
from ui.router import require_router
from ui.runs import pick_run_with_checkpoint

REQUEST = "explain_request"  # set by Evaluate: {"run_id", "split", "index", "sample_id"}
SOURCES = ("Dataset example", "Upload")
BUDGET = {  # the parameters this page lets one change: (method, key) -> (label, min, max, step)
    ("ig", "n_steps"): ("Integrated Gradients steps", 4, 256, 4),
    ("shap", "nsamples"): ("SHAP samples", 8, 1024, 8),
    ("lime", "num_samples"): ("LIME samples", 50, 5000, 50),
    ("lime", "n_segments"): ("LIME superpixels", 4, 400, 4),
}
SUMMARY_ROWS = 100


def adopt_request() -> None:
    """A new request from Evaluate: make its run active and pre-select its sample."""
    request = st.session_state.get(REQUEST)
    if not request or request == st.session_state.get("_explain_seen"):
        return
    st.session_state["_explain_seen"] = dict(request)
    state.set_active_run(request["run_id"])
    st.session_state["explain_source"] = SOURCES[0]
    st.session_state["explain_split"] = request.get("split", "test")
    st.session_state["explain_index"] = int(request.get("index", 0))


def pick_input(run, info):
    """Returns (sha256, path) of the saved input, or None; draws the input."""
    ws = state.workspace()
    st.session_state.setdefault("explain_source", SOURCES[0])
    source = st.radio("Input", SOURCES, key="explain_source", horizontal=True)
    if source == "Upload":
        kinds = ["csv"] if info.modality == "tabular" else ["png", "jpg", "jpeg", "webp", "bmp"]
        upload = st.file_uploader("A file to explain", type=kinds, key="explain_upload")
        if upload is None:
            return None
        if info.modality == "tabular":
            row = read_rows(upload.getvalue(), info.feature_names, upload.name)[0]
            saved = save_input_row(ws, run.id, row, info.feature_names)
            render_row(info, row, f"{upload.name}, first row")
            return saved
        saved = save_input_image(ws, run.id, upload.getvalue(), info.channels, upload.name)
        st.image(sharp_preview(saved[1]), width=160, caption=plain(upload.name))
        return saved
    left, right = st.columns([1, 2])
    st.session_state.setdefault("explain_split", "test")
    split = left.selectbox("Split", ["test", "val"], key="explain_split")
    size = info.split_counts.get(split, 0)
    if size == 0:
        st.info(f"The {split} split is empty.")
        return None
    st.session_state["explain_index"] = min(st.session_state.get("explain_index", 0), size - 1)
    index = int(right.number_input(f"Example (0 to {size - 1})", 0, size - 1,
                                   key="explain_index"))
    dataset = state.load_dataset(info.name, str(ws.home))
    label = info.classes[int(dataset.labels(split)[index])]
    raw = dataset.raw(split, index)
    caption = f"{plain(dataset.ids(split)[index])} · true class {plain(label)}"
    if info.modality == "tabular":
        render_row(info, raw, caption)
        return save_input_row(ws, run.id, raw, info.feature_names)
    st.image(sharp_preview(raw), width=160, caption=caption)
    return save_input_image(ws, run.id, png_bytes(raw), info.channels)


def render_row(info, row, caption: str) -> None:
    st.dataframe({name: [float(v)] for name, v in zip(info.feature_names, row, strict=True)},
                 hide_index=True, key="explain_row")
    st.caption(caption)


def pick_target(run, info, sha: str) -> tuple[int | None, int]:
    """(the target class, or None while the prediction is unknown; the widget's choice)."""
    probs = read_prediction(state.workspace(), run.id, sha)
    choice = st.selectbox("Target class", [-1, *range(len(info.classes))], key="explain_target",
                          format_func=lambda k: "The predicted class" if k < 0
                          else f"{k}: {info.classes[k]}")
    st.caption(f"Predicted: {plain(describe_prediction(probs, info.classes))}",
               help="Known once an explanation of this input has run.")
    if choice >= 0:
        return choice, choice
    return (int(np.argmax(probs)) if probs is not None else None), choice


def pick_methods(info) -> tuple[list[str], dict[str, dict]]:
    specs = {s.name: s for s in list_explainers(info.modality)}
    methods = st.multiselect("Methods", list(specs), default=list(specs)[:1],
                             key="explain_methods", format_func=lambda m: specs[m].display_name)
    params: dict[str, dict] = {m: {} for m in specs}
    with st.expander("Compute budget"):
        for (method, key), (label, low, high, step) in BUDGET.items():
            # (tabular LIME has no superpixels)
            if method in methods and key in specs[method].defaults:
                default = int(specs[method].defaults[key])
                params[method][key] = int(st.number_input(
                    label, low, high, default, step, key=f"explain_{method}_{key}"))
        budget = st.number_input("Time budget per method (s)", 5, 3600, 300, 5,
                                 key="explain_time_budget")
    for method in params:
        params[method]["time_budget_s"] = float(budget)
    return methods, {m: effective_params(m, info.modality, params[m]) for m in methods}


def job_key(*parts) -> str:
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:16]


def watch(job, what: str) -> None:
    """A running job's progress, live (the page redraws when it ends); else how it ended."""
    if job.is_active:
        watch_job(job.id, what)
    else:
        render_job(job, what)


def render_explanations(s, run, info, saved) -> None:
    sha, path = saved
    target, choice = pick_target(run, info, sha)
    methods, params = pick_methods(info)
    # An ensemble's Grad-CAM and IG are one result per member (core.explain.ensemble).
    found = {m: find_results(state.workspace(), run, sha, m, params[m], target)
             for m in methods} if target is not None else {m: None for m in methods}
    missing = [m for m in methods if found[m] is None]
    here = [m for m in missing if explains_here(run, info, m, params[m])]
    queued = [m for m in missing if m not in here]
    key = job_key(sha, choice, queued, {m: params[m] for m in queued})
    job = s.latest_job(run.id, "explain", key) if queued else None
    busy = job is not None and job.is_active
    if st.button("Explain", key="explain_run", type="primary", icon=":material/psychology:",
                 disabled=not missing or (busy and not here)):
        wanted = choice if choice >= 0 else None
        if queued and not busy:
            job = launchers.start_explain(s, run.id, path, queued, target=wanted,
                                          params={m: params[m] for m in queued}, key=key)
        if not here or explain_here(run, path, here, wanted, params):
            st.rerun()
    if queued and here:
        names = {spec.name: spec.display_name for spec in list_explainers(info.modality)}
        st.caption(f"{', '.join(names[m] for m in queued)}: a background job (too heavy to "
                   f"compute here); {', '.join(names[m] for m in here)}: computed here.")
    if queued and job is not None:
        watch(job, "Explaining")
    render_results_side_by_side([r for rs in found.values() if rs for r in rs],
                                "explain_result")
    if info.modality == "tabular" and target is not None:
        render_summary(s, run, info, target)


def render_summary(s, run, info, target: int) -> None:
    st.subheader("Global summary")
    params = effective_params("shap", "tabular", {})
    result = find_explanation(state.workspace(), run.id, f"{SUMMARY_INPUT}:{SUMMARY_ROWS}",
                              "shap-summary", params, target)
    if result is None:
        key = job_key("summary", target)
        job = s.latest_job(run.id, "explain", key)
        if st.button(f"Compute SHAP over {SUMMARY_ROWS} test rows", key="explain_summary",
                     disabled=job is not None and job.is_active):
            launchers.start_explain_summary(s, run.id, target, SUMMARY_ROWS, key=key)
            st.rerun()
        if job is not None:
            watch(job, "SHAP summary")
        return
    st.plotly_chart(beeswarm_figure(result.attributions, result.row, result.feature_names,
                                    title=f"SHAP values for class {result.target_label}"),
                    key="explain_beeswarm")


require_router()
st.title("Explain")
state.render_flashes()
adopt_request()
store = state.store()
active = pick_run_with_checkpoint(store, "explain_pick_run")
if active is not None:
    dataset_info = run_dataset_info(active)
    if dataset_info is not None:
        try:
            chosen = pick_input(active, dataset_info)
            if chosen is not None:
                render_explanations(store, active, dataset_info, chosen)
        except UserError as exc:
            st.error(str(exc))
