"""Compress: make a run smaller and faster (pruning, distillation) and compare the variants.

Pruning and distillation each make a new run (kinds ``pruned`` and ``distilled``, the source as
parent) that trains as a background job; the variants table lists the source and everything
made from it, and a measurement job fills in sizes, MACs, latency and accuracy side by side.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import streamlit as st

from core.compress import launch_distill, launch_prune
from core.config import (
    IMPORTANCES,
    PRUNE_METHODS,
    PRUNE_SCOPES,
    PRUNE_TARGETS,
    PruneConfig,
    RunConfig,
)
from core.errors import UserError
from core.models import list_models
from core.runs.launchers import start_variants
from core.runs.store import Run, Store
from ui import state
from ui.clicks import act_once
from ui.compress_views import (
    AXES,
    LAUNCHED,
    MEASURE_JOB,
    UNSTRUCTURED_NOTE,
    current_measure,
    launched_run,
    missing,
    pareto_figure,
    rows_frame,
    variant_rows,
)
from ui.format import plain
from ui.jobs import render_job, watch_job
from ui.router import require_router
from ui.runs import pick_run_with_checkpoint, run_label


def render_prune(s: Store, source: Run) -> None:
    method = st.radio("Pruning", PRUNE_METHODS, key="compress_method", horizontal=True,
                      captions=["whole channels: smaller and faster",
                                "single weights: sparse, not faster"])
    if method == "unstructured":
        st.info(UNSTRUCTURED_NOTE)
    with st.form("compress_prune_form"):
        amount = st.slider("Amount to remove", 0.1, 0.9, 0.5, 0.05, key="compress_amount")
        left, right = st.columns(2)
        target = left.selectbox("Of", PRUNE_TARGETS, key="compress_target",
                                disabled=method == "unstructured",
                                help="channels: that share of every layer's channels; params / "
                                     "macs: keep pruning until that share of them is gone")
        importance = right.selectbox("Importance", IMPORTANCES, key="compress_importance",
                                     disabled=method == "unstructured",
                                     help="how channels are ranked: L1/L2 magnitude, batch norm "
                                          "scale, first-order Taylor")
        scope = left.selectbox("Scope", PRUNE_SCOPES, key="compress_scope",
                               disabled=method == "structured",
                               help="one magnitude threshold for all layers, or per layer")
        steps = right.number_input("Rounds", 1, 10, 1, key="compress_steps",
                                   help="prune + fine-tune rounds (iterative pruning)")
        epochs = left.number_input("Fine-tune epochs per round", 1, 100, 3,
                                   key="compress_epochs")
        lr = right.number_input("Learning rate", 1e-6, 1.0, source.config["train"]["lr"],
                                format="%.5f", key="compress_lr")
        if not st.form_submit_button("Prune", type="primary", icon=":material/content_cut:"):
            return
    settings = PruneConfig(method=method, amount=float(amount), target=target,
                           importance=importance if method == "structured" else "l1",
                           steps=int(steps), scope=scope)
    _launch("compress_prune", (source.id, asdict(settings), int(epochs), float(lr)),
            lambda: launch_prune(s, source.id, settings, int(epochs), float(lr)))


def render_distill(s: Store, source: Run) -> None:
    modality = state.dataset_infos()[source.dataset].modality \
        if source.dataset in state.dataset_infos() else "image"
    names = [m.name for m in list_models(modality)]
    with st.form("compress_distill_form"):
        left, right = st.columns(2)
        model = left.selectbox("Student model", names, key="compress_student")
        epochs = right.number_input("Epochs", 1, 500, 10, key="compress_distill_epochs")
        temperature = left.number_input("Temperature T", 0.5, 20.0, 4.0, 0.5,
                                        key="compress_temperature")
        alpha = right.slider("alpha (teacher's share)", 0.0, 1.0, 0.7, 0.05,
                             key="compress_alpha")
        size = left.number_input("Student image size (0: the dataset's)", 0, 1024, 0,
                                 key="compress_size", disabled=modality != "image")
        if not st.form_submit_button("Distill", type="primary", icon=":material/school:"):
            return
    raw = RunConfig().to_dict()
    raw["data"] = {**source.config["data"], "image_size": int(size) or None, "augment": []}
    raw["model"]["name"] = model
    raw["train"]["epochs"] = int(epochs)
    _launch("compress_distill", (source.id, raw, float(temperature), float(alpha)),
            lambda: launch_distill(s, source.id, RunConfig.from_dict(raw), float(temperature),
                                   float(alpha)))


def _launch(action: str, request: Any, start: Callable[[], Run]) -> None:
    try:
        run = act_once(action, request, start)
    except UserError as exc:
        st.error(str(exc))
        return
    st.session_state[LAUNCHED] = run.id
    st.rerun()


def render_launched(s: Store) -> None:
    run = launched_run(s)
    if run is None:
        return
    job = next((j for j in s.active_jobs(run.id) if j.heavy), None)
    what = f"{run.kind.capitalize()} run {plain(run_label(run))}"
    if job is not None:
        watch_job(job.id, what)
    elif run.status == "completed":
        st.success(f"{what} completed: measure the variants below to compare it.")
    elif run.error:
        st.error(f"{what} {run.status}: {plain(run.error)}")


def render_variants(s: Store, source: Run) -> None:
    st.subheader("Variants")
    ws = state.workspace()
    found = variant_rows(ws, source.id)
    with st.container(key="compress_table"):
        st.dataframe(rows_frame(found), hide_index=True, width="stretch")
    job = current_measure(s, source.id)
    if job is not None and job.is_active:
        watch_job(job.id, "Measuring the variants")
    else:
        render_job(job, "The last measurement")
        todo = missing(found)
        if st.button("Measure the variants", key="compress_measure", icon=":material/speed:",
                     help="Exports each run to ONNX fp32 and int8 and times them side by side "
                          "(the way Deploy does), with test accuracy and macro F1."):
            st.session_state[MEASURE_JOB] = start_variants(s, source.id).id
            st.rerun()
        if todo:
            st.caption(f"{len(todo)} run(s) not measured yet.")
    measured = [r for r in found if r.get("accuracy") is not None]
    if len(measured) >= 1:
        axis = AXES[st.radio("Against", list(AXES), key="compress_axis", horizontal=True)]
        with st.container(key="compress_chart"):
            st.plotly_chart(pareto_figure(found, axis), key="compress_pareto")
        st.caption("★ the Pareto front: no other variant is both faster (or smaller) and more "
                   "accurate.")
    render_ship(found)


def render_ship(found: list[dict]) -> None:
    """Any row can be exported, quantized and served: make it the active run, open Deploy."""
    ready = [r["run_id"] for r in found if r["status"] == "completed"]
    if not ready:
        return
    left, right = st.columns([3, 1], vertical_alignment="bottom")
    pick = left.selectbox("Ship a variant", ready, key="compress_ship",
                          format_func=lambda i: next(f"{r['run_id']} · {r['method']}"
                                                     for r in found if r["run_id"] == i))
    if right.button("Open on Deploy", key="compress_deploy", icon=":material/rocket_launch:"):
        state.set_active_run(pick)
        st.switch_page("pages/deploy.py")


require_router()
st.title("Compress")
st.caption("Make a model smaller and faster: prune channels or weights, or distill it into a "
           "smaller student; then compare every variant's size, speed and accuracy.")
state.render_flashes()
store = state.reconciled_store()
chosen = pick_run_with_checkpoint(store, "compress_source", "Source run")
if chosen is None:
    st.stop()
render_launched(store)
prune_tab, distill_tab = st.tabs(["Prune", "Distill"])
with prune_tab:
    render_prune(store, chosen)
with distill_tab:
    render_distill(store, chosen)
st.divider()
render_variants(store, chosen)
