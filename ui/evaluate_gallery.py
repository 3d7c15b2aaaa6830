"""The Evaluate page's click-through: the confusion matrix, the samples of a cell, the top losses,
and the "Explain" hand-off to the Explain page.

A click on a confusion cell sets the two selectboxes below the chart (true class, predicted
class), which are also usable on their own (keyboard users, ``AppTest``); the gallery follows them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import streamlit as st

from core.analyze import metrics
from core.analyze.evaluate import Predictions
from core.errors import UserError
from ui.data_views import THUMB, thumbnail
from ui.evaluate_charts import confusion_figure
from ui.format import plain

ROOT = Path(__file__).resolve().parent.parent
EXPLAIN_PAGE = "pages/explain.py"
EXPLAIN_REQUEST = "explain_request"  # read by the Explain page
GALLERY = 24  # samples shown per cell / top losses
PER_ROW = 6
CELL_TRUE, CELL_PRED = "eval_cell_true", "eval_cell_pred"


def default_cell(counts: np.ndarray) -> tuple[int, int]:
    """The most frequent confusion (off the diagonal), else the largest cell."""
    off = counts.copy()
    np.fill_diagonal(off, 0)
    grid = off if off.any() else counts
    i, j = np.unravel_index(int(np.argmax(grid)), grid.shape)
    return int(i), int(j)


def _on_cell_pick(classes: list[str]):
    def pick() -> None:
        event = st.session_state.get("eval_confusion")
        points = (event or {}).get("selection", {}).get("points", []) if event else []
        if not points:
            return
        point = points[0]
        n = len(classes)
        if isinstance(point.get("point_index"), int) and point["point_index"] < n * n:
            true, pred = divmod(point["point_index"], n)  # the markers are laid out row by row
        else:  # no index reported: fall back on the axis labels
            true, pred = classes.index(str(point["y"])), classes.index(str(point["x"]))
        st.session_state[CELL_TRUE], st.session_state[CELL_PRED] = classes[true], classes[pred]

    return pick


def render_confusion(preds: Predictions, data: dict[str, Any], dataset: Any) -> None:
    classes = [str(c) for c in preds.classes]
    counts, normalised = data["counts"], data["normalised"]
    t0, p0 = default_cell(counts)
    for key, default in ((CELL_TRUE, classes[t0]), (CELL_PRED, classes[p0])):
        if st.session_state.get(key) not in classes:  # first visit, or another run's classes
            st.session_state[key] = default
    selected = (classes.index(st.session_state[CELL_TRUE]),
                classes.index(st.session_state[CELL_PRED]))
    show_norm = st.toggle("Row-normalised", key="eval_cm_norm",
                          help="Each row divided by the number of samples of that true class.")
    st.plotly_chart(confusion_figure(counts, normalised, classes, show_norm, selected),
                    key="eval_confusion", on_select=_on_cell_pick(classes),
                    selection_mode=("points",))
    a, b = st.columns(2)
    a.selectbox("True class", classes, key=CELL_TRUE)
    b.selectbox("Predicted class", classes, key=CELL_PRED)
    true, pred = classes.index(st.session_state[CELL_TRUE]), \
        classes.index(st.session_state[CELL_PRED])
    idx = metrics.cell_indices(preds.y_true, preds.probs, true, pred)
    with st.container(key="eval_cell_gallery"):
        shown = f" (the {GALLERY} most confident shown)" if len(idx) > GALLERY else ""
        pair = f"true {plain(classes[true])} · predicted {plain(classes[pred])}"
        st.markdown(f"**{pair}**: {len(idx)} sample{'s' if len(idx) != 1 else ''}{shown}")
        render_samples(preds, idx[:GALLERY], dataset, "eval_cell")


def render_top_losses(preds: Predictions, dataset: Any) -> None:
    idx = metrics.top_losses(preds.y_true, preds.probs, k=GALLERY)
    if not len(idx):
        st.success("No mistakes on this split.")
        return
    st.caption("The most confident mistakes, highest loss (-log p[true class]) first.")
    with st.container(key="eval_top_losses"):
        render_samples(preds, idx, dataset, "eval_loss")


def render_samples(preds: Predictions, idx: np.ndarray, dataset: Any, key: str) -> None:
    """Images (or table rows) of the samples at ``idx`` with their probabilities, each with
    an Explain button."""
    if not len(idx):
        return
    if dataset is not None and dataset.info.modality == "tabular":
        _render_rows(preds, idx, dataset, key)
        return
    for start in range(0, len(idx), PER_ROW):
        cols = st.columns(PER_ROW)
        for col, j in zip(cols, idx[start:start + PER_ROW], strict=False):
            with col:
                _render_image(preds, int(j), dataset)
                explain_button(preds, int(j), key=f"{key}_explain_{int(j)}")


def _caption(preds: Predictions, j: int) -> str:
    classes, p = preds.classes, preds.probs[j]
    true, pred = int(preds.y_true[j]), int(p.argmax())
    return (f"{plain(preds.ids[j])}  \ntrue {plain(classes[true])} ({p[true]:.2f}) · "
            f"pred {plain(classes[pred])} ({p[pred]:.2f})")


def _render_image(preds: Predictions, j: int, dataset: Any) -> None:
    try:
        image = dataset.raw(preds.split, int(preds.index[j])) if dataset is not None else None
    except (UserError, OSError) as exc:
        st.caption(f"unreadable: {exc}")
        image = None
    if image is not None:
        st.image(thumbnail(image), width=THUMB + 24)
    st.caption(_caption(preds, j))


def _render_rows(preds: Predictions, idx: np.ndarray, dataset: Any, key: str) -> None:
    classes = preds.classes
    rows = []
    for j in idx:
        p = preds.probs[j]
        raw = dataset.raw(preds.split, int(preds.index[j]))
        rows.append({"id": preds.ids[j], "true": classes[int(preds.y_true[j])],
                     "predicted": classes[int(p.argmax())], "p(predicted)": float(p.max()),
                     "p(true)": float(p[int(preds.y_true[j])]),
                     **dict(zip(dataset.info.feature_names, map(float, raw), strict=False))})
    st.dataframe(pd.DataFrame(rows), hide_index=True, key=f"{key}_rows")
    labels = {int(j): str(preds.ids[j]) for j in idx}
    left, right = st.columns([3, 1])
    chosen = left.selectbox("Sample", list(labels), format_func=labels.__getitem__,
                            key=f"{key}_sample")
    with right:
        explain_button(preds, int(chosen), key=f"{key}_explain")


def explain_button(preds: Predictions, j: int, key: str) -> None:
    """Opens sample ``j`` on the Explain page (``st.session_state["explain_request"]``)."""
    available = (ROOT / EXPLAIN_PAGE).is_file()
    clicked = st.button("Explain", key=key, icon=":material/psychology:", disabled=not available,
                        help="Open this sample on the Explain page." if available else
                        "The Explain page is not installed yet.")
    if not clicked:
        return
    st.session_state[EXPLAIN_REQUEST] = {"run_id": preds.run_id, "split": preds.split,
                                         "index": int(preds.index[j]),
                                         "sample_id": str(preds.ids[j])}
    from streamlit.errors import StreamlitAPIException

    try:
        st.switch_page(EXPLAIN_PAGE)
    except StreamlitAPIException:  # the file exists but the router does not list it yet
        st.warning("The Explain page is not registered in the app yet; the sample is kept "
                   "for it.")
