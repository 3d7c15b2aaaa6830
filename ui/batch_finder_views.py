"""The batch-size finder on the Train page, beside the learning-rate finder.

"Find a batch size" starts ``batch-find`` for the form's dataset, model and options as a
background job (``core.train.batch_finder.start_batch_find``: a job about the dataset, keyed by
the model). The latest such job is shown under the buttons: its progress while it runs, then what
it measured (the largest batch that fits on a GPU, samples/s per batch size on a CPU) and a button
that puts the suggested size into the form.
"""

from __future__ import annotations

from typing import Any

import pandas as pd
import streamlit as st

from core.errors import UserError
from core.runs.jobs import DATASET_SUBJECT
from core.runs.store import Store
from core.train.batch_finder import KIND, start_batch_find
from ui import state
from ui.format import plain
from ui.jobs import render_job, watch_job
from ui.train_form import state_to_config

HELP = ("A few training steps per batch size (nothing saved). On a GPU: the largest batch that "
        "fits in memory, in the form's mixed precision. On a CPU: samples per second for each "
        "size. Uses the dataset, model and options of the form.")


def render_batch_find_button() -> None:
    if not st.button("Find a batch size", key="train_batch_find", icon=":material/memory:",
                     help=HELP):
        return
    try:
        start_batch_find(state.store(), state_to_config())
    except UserError as exc:
        st.error(str(exc))
        return
    st.rerun()


def render_batch_find(s: Store) -> None:
    """The latest finder of the form's dataset and model: live, or its measurements."""
    dataset, model = st.session_state.get("train_dataset"), st.session_state.get("train_model")
    if not dataset or not model:
        return
    job = s.latest_job(f"{DATASET_SUBJECT}{dataset}", KIND, model)
    if job is None:
        return
    if job.is_active:
        watch_job(job.id, f"Batch-size finder ({plain(dataset)} / {plain(model)})")
        return
    if job.status != "completed" or not job.result:
        render_job(job, "The batch-size finder")
        return
    render_batch_result(job.result)


def render_batch_result(found: dict[str, Any]) -> None:
    st.markdown(f"**Batch-size finder** · {plain(found['dataset'])}/{plain(found['model'])} · "
                f"{plain(found['device'])} ({plain(found['amp'])}): {plain(found['mode'])}")
    rows = [{"batch size": r["batch_size"],
             "samples/s": round(r["samples_per_s"]) if r["fits"] else None,
             "peak MB": round(r["peak_mb"]) if "peak_mb" in r else None,
             "fits": r["fits"]} for r in found["tried"]]
    st.dataframe(pd.DataFrame(rows), hide_index=True, key="train_batch_find_table")
    if "max_batch_size" in found:
        st.caption(f"Largest batch that fits: {found['max_batch_size']}"
                   + (" (the limit tried; more may fit)" if found.get("limit_reached") else "")
                   + ". The suggestion keeps a margin below it.")
    size = found.get("suggested_batch_size")
    if size is None:
        st.warning("No batch size fitted: try a smaller model or image size.")
        return
    st.button(f"Use batch size {size}", key="train_use_batch", icon=":material/input:",
              on_click=use_batch_size, args=(size,))


def use_batch_size(size: int) -> None:
    """Callback: the form's batch size takes ``size`` (written before the form is drawn)."""
    st.session_state["train_batch_size"] = int(size)
    state.flash(f"Batch size {size} is in the form above; launch a run with it.", "info")
