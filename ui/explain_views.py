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
from ui.explain_cards import render_card, render_grid, render_opacity_control
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


def render_explanation(result: Explanation, key: str, opacity: float = 0.5) -> None:
    """One method's result: the map over the image (or feature bars), then the trust checks."""
    render_card(result, key, opacity)


def render_tabular(result: Explanation, key: str) -> None:
    if result.method == "shap" and "base_value" in result.extras:
        fig = plots.waterfall_figure(result.attributions, result.feature_names, result.row,
                                     result.extras["base_value"])
    else:
        fig = plots.feature_bar_figure(result.attributions, result.feature_names,
                                       labels=result.extras.get("conditions"))
    st.plotly_chart(fig, key=f"{key}_bars", config={"displayModeBar": False})


def params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{k} {v:g}" if isinstance(v, float) else f"{k} {v}"
                     for k, v in params.items())


def render_results_side_by_side(results: list[Explanation], key: str) -> None:
    """The results as aligned cards, two per row, under one opacity control."""
    if not results:
        return
    seen: dict[str, int] = {}  # an ensemble's per-member results share their method
    keys = []
    for result in results:
        n = seen[result.method] = seen.get(result.method, -1) + 1
        keys.append(f"{key}_{result.method}" + (f"_{n}" if n else ""))
    images = any(r.modality == "image" for r in results)
    opacity = render_opacity_control() if images else 0.5
    render_grid(results, keys, opacity)


def describe_prediction(probs: np.ndarray | None, classes: list[str]) -> str:
    if probs is None:
        return "not predicted yet"
    k = int(np.argmax(probs))
    return f"{classes[k]} ({float(probs[k]):.1%})"
