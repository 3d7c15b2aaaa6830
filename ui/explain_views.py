"""Render helpers of the Predict and Explain pages: the dataset, model cache, results, trust.

Nothing here imports torch at import time: ``loaded_run`` (Predict only) imports it when a
prediction is asked for; the Explain page only reads cached results written by jobs.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import streamlit as st

from core.explain import plots
from core.explain.cache import Explanation
from core.runs.store import Run
from ui import state
from ui.format import plain

MAX_CARDS = 12  # up to this many images get a card with their chart; beyond, only the table


def run_dataset_info(run: Run):
    """The DatasetInfo of the run's dataset, or None with an error when it was deleted since."""
    info = state.dataset_infos().get(run.dataset)
    if info is None:
        st.error(f"Run {run.id} was trained on the dataset {plain(run.dataset)}, which is no "
                 "longer in this workspace.")
    return info


@st.cache_resource(max_entries=2, show_spinner="Loading the model...")
def loaded_run(home: str, run_id: str, signature: str):
    """The run's model, loaded once per checkpoint (``signature``) and shared: never mutate."""
    from core.models.loaded import load_run
    from core.workspace import Workspace

    # Its own workspace, closed at once: the cached model outlives any one session's store.
    with Workspace.open(home) as ws:
        return load_run(ws, run_id)


def png_bytes(image: Any) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def st_progress(bar: Any, label: str):
    """A ``progress(done, total, message)`` callback drawing on an ``st.progress`` bar."""
    def report(done: int, total: int, message: str = "") -> None:
        bar.progress(min(1.0, done / total) if total else 1.0, text=f"{label}: {done}/{total}")
    return report


def render_explanation(result: Explanation, key: str) -> None:
    """One method's result: the map over the image (or feature bars), then the trust checks."""
    with st.container(border=True, key=key):
        st.markdown(f"**{plain(result.display_name)}** · target *{plain(result.target_label)}*")
        if result.modality == "image":
            signed = result.method != "gradcam"
            st.plotly_chart(plots.overlay_figure(result.image, result.map, signed=signed,
                                                 height=300),
                            key=f"{key}_overlay", config={"displayModeBar": False})
        else:
            render_tabular(result, key)
        render_trust(result, key)
        st.caption(f"{result.seconds:.1f} s · {params_text(result.params)}")


def render_tabular(result: Explanation, key: str) -> None:
    if result.method == "shap" and "base_value" in result.extras:
        fig = plots.waterfall_figure(result.attributions, result.feature_names, result.row,
                                     result.extras["base_value"])
    else:
        fig = plots.feature_bar_figure(result.attributions, result.feature_names,
                                       labels=result.extras.get("conditions"))
    st.plotly_chart(fig, key=f"{key}_bars", config={"displayModeBar": False})


def render_trust(result: Explanation, key: str) -> None:
    sanity = result.sanity
    if sanity and sanity.get("similarity") is None:
        st.warning("Sanity check undefined: this map is flat (it ranks no pixel above another).",
                   icon=":material/science:")
    elif sanity:
        verdict = "passed" if sanity.get("passed") else "failed"
        text = (f"Sanity check {verdict}: similarity to the map of a randomised model "
                f"{sanity['similarity']:.2f} (Spearman of |attribution|; below "
                f"{sanity['threshold']:.2f} passes).")
        (st.success if sanity.get("passed") else st.warning)(text, icon=":material/science:")
    if result.deletion.get("deletion_fractions") is not None:
        st.plotly_chart(plots.deletion_figure(result.deletion), key=f"{key}_deletion",
                        config={"displayModeBar": False})


def params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in params.items())


def render_results_side_by_side(results: list[Explanation], key: str) -> None:
    if not results:
        return
    for column, result in zip(st.columns(len(results)), results, strict=True):
        with column:
            render_explanation(result, key=f"{key}_{result.method}")


def describe_prediction(probs: np.ndarray | None, classes: list[str]) -> str:
    if probs is None:
        return "not predicted yet"
    k = int(np.argmax(probs))
    return f"{classes[k]} ({float(probs[k]):.1%})"
