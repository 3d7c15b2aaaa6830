"""Predict: upload images (or take test-split examples), or enter table rows; see the top-k.

The model is loaded once per checkpoint (a cached resource) when a prediction is asked for, so
opening the page stays fast; every file is checked on its own, and a bad one gets its own error.
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from core.analyze.predict import Prediction, predict_files, predict_rows
from core.errors import UserError
from ui import state
from ui.explain_views import (
    MAX_CARDS,
    loaded_run,
    png_bytes,
    run_dataset_info,
    st_progress,
)
from ui.format import plain
from ui.router import require_router
from ui.runs import pick_run_with_checkpoint

IMAGE_TYPES = ["png", "jpg", "jpeg", "webp", "bmp"]
RESULTS = "predict_results"  # session state: {"run_id", "items": {name: bytes}, "results": [...]}


def load_model(run):
    from core.explain.cache import checkpoint_signature

    ws = state.workspace()
    return loaded_run(str(ws.home), run.id, checkpoint_signature(ws, run.id))


def test_examples(info, count: int) -> list[tuple[str, bytes]]:
    dataset = state.load_dataset(info.name, str(state.home()))
    ids = dataset.ids("test")
    return [(ids[i], png_bytes(dataset.raw("test", i)))
            for i in range(min(count, dataset.size("test")))]


def render_image_inputs(run, info) -> None:
    uploads = st.file_uploader("Images", type=IMAGE_TYPES, accept_multiple_files=True,
                               key="predict_upload",
                               help="Any size or mode: each is converted, resized and normalised "
                                    "exactly as in training.")
    examples = st.number_input("Also predict the first N test-split examples", 0,
                               info.split_counts.get("test", 0), 0, key="predict_examples")
    if not st.button("Predict", key="predict_run", type="primary",
                     disabled=not uploads and not examples):
        return
    items = [(f.name, f.getvalue()) for f in uploads or []] + test_examples(info, examples)
    bar = st.progress(0.0, text="Predicting...")
    try:
        results = predict_files(load_model(run), items, progress=st_progress(bar, "Predicted"))
    except UserError as exc:
        st.error(str(exc))
        return
    bar.empty()
    st.session_state[RESULTS] = {"run_id": run.id, "items": dict(items), "results": results}


def render_table_inputs(run, info) -> None:
    with st.form("predict_row_form"):
        st.caption("One row: each field shows the feature's range in the training split.")
        columns = st.columns(3)
        values = []
        for j, name in enumerate(info.feature_names):
            low, high = info.feature_ranges.get(name, [0.0, 0.0])
            values.append(columns[j % 3].number_input(
                plain(name), value=float(info.mean[j]), format="%.4g", key=f"predict_feature_{j}",
                help=f"training range {low:.4g} to {high:.4g}"))
        submitted = st.form_submit_button("Predict this row", type="primary")
    uploads = st.file_uploader("Or CSV files (one prediction per row)", type=["csv"],
                               accept_multiple_files=True, key="predict_csv")
    run_csv = st.button("Predict the CSV files", key="predict_csv_run", disabled=not uploads)
    try:
        if submitted:
            probs = predict_rows(load_model(run), [values])[0]
            results = [Prediction("form row", probs)]
            st.session_state[RESULTS] = {"run_id": run.id, "items": {}, "results": results}
        elif run_csv:
            bar = st.progress(0.0, text="Predicting...")
            items = [(f.name, f.getvalue()) for f in uploads]
            results = predict_files(load_model(run), items, progress=st_progress(bar, "Files"))
            bar.empty()
            st.session_state[RESULTS] = {"run_id": run.id, "items": {}, "results": results}
    except UserError as exc:
        st.error(str(exc))


def results_frame(results: list[Prediction], classes: list[str], k: int) -> pd.DataFrame:
    rows = []
    for r in results:
        top = r.top(classes, k)
        rows.append({"file": r.name, "prediction": top[0][0] if top else None,
                     "probability": top[0][1] if top else None,
                     f"top {k}": ", ".join(f"{c} {p:.3f}" for c, p in top),
                     "error": r.error or ""})
    return pd.DataFrame(rows)


def render_results(run, info, k: int) -> None:
    held = st.session_state.get(RESULTS)
    if not held or held["run_id"] != run.id:
        return
    results: list[Prediction] = held["results"]
    st.subheader("Results")
    ok = [r for r in results if r.ok]
    for r in results:
        if not r.ok:
            st.error(f"{plain(r.name)}: {r.error}", icon=":material/broken_image:")
    if ok and len(results) <= MAX_CARDS:
        for start in range(0, len(ok), 3):
            for j, (column, r) in enumerate(zip(st.columns(3), ok[start:start + 3],
                                                strict=False)):
                render_card(column, r, held["items"].get(r.name), info.classes, k, start + j)
    frame = results_frame(results, info.classes, k)
    st.dataframe(frame, hide_index=True, width="stretch", key="predict_table",
                 column_config={"probability": st.column_config.NumberColumn(format="%.3f")})
    st.download_button("Download CSV", frame.to_csv(index=False).encode(), "predictions.csv",
                       "text/csv", key="predict_download", icon=":material/download:")
    st.caption(f"{len(ok)} predicted, {len(results) - len(ok)} with an error · run {run.id}")


def render_card(column, result: Prediction, image: bytes | None, classes: list[str],
                k: int, index: int) -> None:
    with column.container(border=True, key=f"predict_card_{index}"):
        st.markdown(f"**{plain(result.name)}**")
        if image is not None:
            st.image(image, width=128)
        # The top-k as labelled bars, most probable first: drawn at once, where one chart a
        # card (a Plotly figure built, serialised and laid out) was most of the wait.
        with st.container(key=f"predict_topk_{index}"):
            for label, p in result.top(classes, k):
                st.progress(min(max(p, 0.0), 1.0), text=f"{plain(label)} · {p:.1%}")


require_router()
st.title("Predict")
state.render_flashes()
s = state.store()
run = pick_run_with_checkpoint(s, "predict_pick_run")
if run is not None:
    info = run_dataset_info(run)
    if info is not None:
        st.caption(f"{len(info.classes)} classes: {plain(', '.join(info.classes[:20]))}"
                   + (" ..." if len(info.classes) > 20 else ""))
        n = len(info.classes)
        k = st.slider("Top-k classes", 1, n, min(5, n), key="predict_top_k") if n > 1 else 1
        if info.modality == "image":
            render_image_inputs(run, info)
        else:
            render_table_inputs(run, info)
        render_results(run, info, k)
