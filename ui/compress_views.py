"""Render helpers of the Compress page: the variants table, its Pareto chart, the forms' choices.

The table reads the store (the source run's pruned and distilled descendants, their status and
counts) and the last measured table (``core.compress.variants``); nothing here imports torch.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pandas as pd
import streamlit as st

from core.compress.variants import cached_table, family, pareto, rows
from core.errors import RunNotFound
from core.runs.records import Job, Run
from core.runs.store import Store
from core.workspace import Workspace

MEASURE_JOB = "compress_measure_job"
LAUNCHED = "compress_launched"  # the run id of the last prune / distill started here
AXES = {"Latency at batch 1 (ms)": "latency_b1_ms", "ONNX size (MB)": "onnx_fp32_bytes"}
UNSTRUCTURED_NOTE = ("Unstructured pruning zeroes single weights: the file compresses smaller "
                     "(zip, gzip), but dense inference is not faster. Pick structured to make "
                     "the network really smaller and faster.")

# Table columns: row key -> (title, how the value is shown).
COLUMNS: dict[str, tuple[str, Any]] = {
    "run_id": ("Run", str), "method": ("How", str), "status": ("Status", str),
    "model": ("Model", str),
    "params": ("Params", lambda v: f"{v / 1e6:.2f} M"),
    "macs": ("MACs", lambda v: f"{v / 1e6:.1f} M"),
    "checkpoint_bytes": ("Checkpoint", lambda v: _mb(v)),
    "onnx_fp32_bytes": ("ONNX fp32", lambda v: _mb(v)),
    "onnx_int8_bytes": ("ONNX int8", lambda v: _mb(v)),
    "latency_b1_ms": ("Batch 1 (ms)", lambda v: f"{v:.2f}"),
    "latency_b32_ms": ("Batch 32 (ms)", lambda v: f"{v:.1f}"),
    "accuracy": ("Test accuracy", lambda v: f"{v:.4f}"),
    "f1_macro": ("Macro F1", lambda v: f"{v:.4f}"),
    "accuracy_delta_points": ("Δ accuracy (pts)", lambda v: f"{v:+.2f}"),
    "speedup_b1": ("Speed-up", lambda v: f"{v:.2f}x"),
    "size_smaller": ("Smaller", lambda v: f"{v:.2f}x"),
    "sparsity": ("Sparsity", lambda v: f"{v:.0%}"),
}


def _mb(value: float) -> str:
    return f"{value / 1e6:.2f} MB"


def variant_rows(ws: Workspace, source_id: str) -> list[dict[str, Any]]:
    """The family's rows: store facts now, measured figures where the last measurement has the
    row's current checkpoint."""
    return rows(family(ws, source_id), cached_table(ws, source_id))


def missing(found: Sequence[dict[str, Any]]) -> list[str]:
    """Rows with a checkpoint-worthy status that the last measurement does not cover."""
    return [r["run_id"] for r in found if r["status"] == "completed" and
            r.get("latency_b1_ms") is None]


def rows_frame(found: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The table as shown: one line per run, formatted, the Pareto front marked with a star."""
    records = []
    for row in found:
        record = {title: (show(row[key]) if row.get(key) is not None else "")
                  for key, (title, show) in COLUMNS.items()}
        record["Pareto"] = "★" if row.get("pareto_latency_b1_ms") else ""
        records.append(record)
    return pd.DataFrame(records, columns=[t for t, _ in COLUMNS.values()] + ["Pareto"])


def pareto_figure(found: Sequence[dict[str, Any]], axis: str) -> Any:
    """Accuracy against ``axis`` (latency or size), one marker per measured run, the
    non-dominated ones joined as the front."""
    import plotly.graph_objects as go

    points = [r for r in found if r.get(axis) is not None and r.get("accuracy") is not None]
    front = pareto(points, axis)
    scale = 1e-6 if axis.endswith("_bytes") else 1.0
    fig = go.Figure()
    for on_front in (False, True):
        group = [r for r in points if (r["run_id"] in front) == on_front]
        fig.add_trace(go.Scatter(
            x=[r[axis] * scale for r in group], y=[r["accuracy"] for r in group],
            mode="markers+text", text=[r["method"] for r in group], textposition="top center",
            name="Pareto front" if on_front else "dominated",
            marker={"size": 14 if on_front else 10, "symbol": "star" if on_front else "circle"},
            customdata=[r["run_id"] for r in group],
            hovertemplate="%{customdata}<br>%{x:.3g}, accuracy %{y:.4f}<extra></extra>"))
    line = sorted((r for r in points if r["run_id"] in front), key=lambda r: r[axis])
    fig.add_trace(go.Scatter(x=[r[axis] * scale for r in line], y=[r["accuracy"] for r in line],
                             mode="lines", line={"dash": "dot"}, showlegend=False,
                             hoverinfo="skip"))
    title = next(t for t, k in AXES.items() if k == axis)
    fig.update_layout(xaxis_title=title, yaxis_title="Test accuracy", height=420,
                      margin={"t": 30, "b": 40, "l": 50, "r": 20})
    return fig


def current_measure(s: Store, source_id: str) -> Job | None:
    """The variants measurement of this source started here or elsewhere, if any."""
    return s.latest_job(source_id, "variants")


def launched_run(s: Store) -> Run | None:
    """The pruned / distilled run this session last started (None once deleted)."""
    run_id = st.session_state.get(LAUNCHED)
    if not run_id:
        return None
    try:
        return s.get_run(run_id)
    except RunNotFound:  # deleted meanwhile: nothing to follow
        st.session_state.pop(LAUNCHED, None)
        return None
