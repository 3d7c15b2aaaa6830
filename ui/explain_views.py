"""Render helpers of the Predict and Explain pages: the dataset, model cache, results, trust.

Nothing here imports torch at import time: ``loaded_run`` imports it when a prediction, or an
explanation light enough to compute here (``explain_here``), is asked for; the Explain page
otherwise reads cached results written by jobs.
"""

from __future__ import annotations

import io
import logging
from typing import Any

import numpy as np
import streamlit as st

from core.errors import UserError
from core.explain import plots
from core.explain.cache import Explanation
from core.runs.store import Run
from ui import state
from ui.explain_cards import (
    OPACITY_KEY,
    preview_slots,
    render_card,
    render_grid,
    render_opacity_control,
    render_preview,
)
from ui.format import plain

logger = logging.getLogger(__name__)

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


def explains_here(run: Run, info: Any, method: str, params: dict[str, Any]) -> bool:
    """Whether the Explain page computes ``method`` itself with the warm model, by the one
    rule of ``core.explain.light`` (one input at the run's image size; an ensemble counts its
    member networks)."""
    from core.explain.light import is_light

    networks = len(run.config["ensemble"]["members"]) if run.kind == "ensemble" else 1
    side = run.config.get("data", {}).get("image_size") or info.image_size
    return is_light(method, info.modality, params, inputs=1, networks=networks,
                    pixels=side * side if side else None)


def explain_here(run: Run, path: Any, methods: list[str], target: int | None,
                 params: dict[str, dict[str, Any]]) -> bool:
    """What the explain job does (``core.explain.ensemble.explain`` per method, the CLI's
    call), in this process with the dashboard's warm model: the same results, trust checks and
    cache entries. Each map is drawn as soon as it exists; the checks follow. Returns False
    after drawing a one-line error; a failed method stores nothing."""
    from core.explain.cache import checkpoint_signature
    from core.explain.ensemble import explain
    from core.explain.runner import read_input

    ws = state.workspace()
    bar = st.progress(0.0, text="Loading the model...")
    slots = preview_slots(len(methods))
    opacity = float(st.session_state.get(OPACITY_KEY, 0.5))
    method = methods[0]
    try:
        loaded = loaded_run(str(ws.home), run.id, checkpoint_signature(ws, run.id))
        x, sha, shown = read_input(loaded, path)
        for slot, method in zip(slots, methods, strict=True):
            def draw(result: Explanation, slot: Any = slot) -> None:
                render_preview(slot, result, f"explain_preview_{result.method}", opacity)
            explain(loaded, path, 0, x, sha, shown, method, target, params[method],
                    _phase_progress(bar), preview=draw)
    except UserError as exc:
        bar.empty()
        st.error(str(exc))
        return False
    except Exception as exc:  # noqa: BLE001  (a page shows one line, never a traceback)
        logger.exception("explaining %s with %s failed", run.id, method)
        bar.empty()
        first = (str(exc).splitlines() or [""])[0][:200]
        st.error(f"Explaining with {method} failed ({type(exc).__name__}: {first}); its result "
                 "was not stored.")
        return False
    bar.empty()
    return True


def _phase_progress(bar: Any):
    """``explain_input``'s 0..1000 progress, with its phase (method, sanity check) as text."""
    def report(done: int, total: int, message: str = "") -> None:
        bar.progress(min(1.0, done / total) if total else 1.0, text=plain(message or ""))
    return report


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
