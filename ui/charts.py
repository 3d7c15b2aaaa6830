"""Plotly figures for the pages. Plotly is imported inside each function (first load stays fast).

Every figure takes plain data (series, counts) and returns a figure; the pages decide where it
goes. Series are downsampled for display with :func:`core.runs.series.downsample`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from core.runs.series import Series, downsample

MAX_POINTS = 600  # per trace: enough for a smooth curve, small enough to redraw every second
MAX_MARKERS = 60  # beyond this, markers (one SVG node each) cost more than they tell
COLORS = {"train": "#1f77b4", "val": "#ff7f0e", "lr": "#2ca02c"}
OVERLAY_COLORS = ("#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22", "#17becf")


@dataclass
class Overlay:
    """Another run's series, drawn dashed on the same axes to compare."""

    label: str
    series: Mapping[str, Series]


def has_points(series: Mapping[str, Series], keys: Sequence[str],
               overlays: Sequence[Overlay] = ()) -> bool:
    """Whether a chart of ``keys`` would draw a point (else a :func:`waiting_figure` takes its
    place: empty axes with a made-up range tell the user nothing)."""
    held = [series, *(o.series for o in overlays)]
    return any(key in s and len(s[key][0]) for s in held for key in keys)


def waiting_figure(title: str, message: str, height: int = 320):
    """The place of a chart that has no point yet: its title and ``message``, no axes (a range
    made up for no data tells nothing). Drawing it early also lets the browser load Plotly
    while the user waits, not when the first point arrives."""
    import plotly.graph_objects as go

    fig = go.Figure()
    fig.update_layout(
        title={"text": title, "font": {"size": 14}}, height=height,
        margin={"l": 10, "r": 10, "t": 40, "b": 10},
        xaxis={"visible": False}, yaxis={"visible": False},
        annotations=[{"text": message, "showarrow": False, "xref": "paper", "yref": "paper",
                      "x": 0.5, "y": 0.5, "font": {"size": 13, "color": "#888"}}])
    return fig


def curves_figure(series: Mapping[str, Series], keys: Sequence[str], title: str,
                  y_title: str, overlays: Sequence[Overlay] = (), revision: str = "",
                  max_points: int = MAX_POINTS, log_y: bool = False, height: int = 320,
                  from_zero: bool = False):
    """Line chart of ``keys`` against the optimizer step; ``*/step_loss`` drawn thin and light."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for key in keys:
        if key not in series or not series[key][0]:
            continue
        x, y = downsample(*series[key], max_points=max_points)
        fig.add_trace(go.Scatter(x=x, y=y, name=key, **_style(key, len(x))))
    for i, overlay in enumerate(overlays):
        color = OVERLAY_COLORS[i % len(OVERLAY_COLORS)]
        for key in keys:
            if key.endswith("step_loss") or key not in overlay.series:
                continue
            x, y = downsample(*overlay.series[key], max_points=max_points)
            fig.add_trace(go.Scatter(
                x=x, y=y, name=f"{overlay.label} {key}",
                mode="lines+markers" if len(x) <= MAX_MARKERS else "lines",
                line={"color": color, "dash": "dash" if key.startswith("val") else "dot"},
                marker={"size": 4}))
    fig.update_layout(
        title={"text": title, "font": {"size": 14}}, height=height,
        margin={"l": 10, "r": 10, "t": 40, "b": 10}, xaxis_title="step", yaxis_title=y_title,
        legend={"orientation": "h", "y": -0.25}, uirevision=revision or title,
        hovermode="x unified")
    if log_y:
        fig.update_yaxes(type="log")
    elif from_zero:  # e.g. a constant learning rate, rather than an axis centred on it
        fig.update_yaxes(rangemode="tozero", exponentformat="e")
    return fig


def _style(key: str, points: int) -> dict:
    if key.endswith("step_loss"):
        return {"mode": "lines", "line": {"color": COLORS["train"], "width": 1}, "opacity": 0.35}
    split = key.split("/")[0]
    return {"mode": "lines+markers" if points <= MAX_MARKERS else "lines",
            "line": {"color": COLORS.get(split, "#444"), "width": 2}, "marker": {"size": 6}}


def class_distribution_figure(counts_by_split: Mapping[str, Mapping[str, int]]):
    """Grouped bars: samples per class, one colour per split."""
    import plotly.graph_objects as go

    fig = go.Figure()
    for split, counts in counts_by_split.items():
        if counts:
            fig.add_trace(go.Bar(x=list(counts), y=list(counts.values()), name=split))
    fig.update_layout(barmode="group", height=300, margin={"l": 10, "r": 10, "t": 30, "b": 10},
                      xaxis_title="class", yaxis_title="samples",
                      title={"text": "Class distribution", "font": {"size": 14}},
                      xaxis={"type": "category"})
    return fig
