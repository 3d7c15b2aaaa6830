"""Plotly figures of the Evaluate page: confusion matrix, ROC / PR curves, reliability diagrams.

Each takes plain arrays or the dicts of ``core.analyze.metrics`` and returns a figure; plotly is
imported inside each function so the first page load stays fast.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
           "#7f7f7f", "#bcbd22", "#17becf")
MARGIN = {"l": 10, "r": 10, "t": 40, "b": 10}


def confusion_figure(counts: np.ndarray, normalised: np.ndarray, classes: Sequence[str],
                     show_normalised: bool, selected: tuple[int, int] | None = None):
    """Heatmap of the confusion matrix (rows: true class, columns: predicted class).

    A heatmap reports no points when clicked (plotly has no select for heatmaps), so an invisible
    square marker sits on each cell: clicking a cell selects that marker, whose ``customdata`` is
    ``[true, predicted]``.
    """
    import plotly.graph_objects as go

    names = [str(c) for c in classes]
    n = len(names)
    z = normalised if show_normalised else counts
    text = [[f"{normalised[i, j]:.2f}" if show_normalised else str(counts[i, j])
             for j in range(n)] for i in range(n)]
    side = int(min(640, max(320, 48 * n + 120)))
    fig = go.Figure(go.Heatmap(
        z=z, x=names, y=names, text=text, texttemplate="%{text}" if n <= 20 else None,
        colorscale="Blues", hoverinfo="skip", showscale=False, zmin=0))
    ti, pj = np.meshgrid(np.arange(n), np.arange(n), indexing="ij")
    fig.add_trace(go.Scatter(
        x=[names[j] for j in pj.ravel()], y=[names[i] for i in ti.ravel()], mode="markers",
        marker={"symbol": "square", "size": max(6, int(0.8 * (side - 120) / n)),
                "color": "rgba(0,0,0,0)"},
        customdata=np.stack([ti.ravel(), pj.ravel(), counts.ravel()], axis=1),
        hovertemplate="true %{y} · predicted %{x}<br>%{customdata[2]} samples"
                      "<extra>click to see them</extra>",
        showlegend=False))
    if selected is not None:
        i, j = selected
        fig.add_shape(type="rect", x0=j - 0.5, x1=j + 0.5, y0=i - 0.5, y1=i + 0.5,
                      line={"color": "#d62728", "width": 3})
    fig.update_layout(height=side, margin={**MARGIN, "t": 30},
                      xaxis={"title": "predicted", "type": "category", "side": "bottom"},
                      yaxis={"title": "true", "type": "category", "autorange": "reversed"})
    return fig


def roc_figure(curves: Mapping[str, Mapping[str, Any]], shown: Sequence[str], title: str = "ROC",
               dash: Mapping[str, str] | None = None):
    """One line per entry of ``shown`` (class names, ``"macro"``, or run labels)."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="chance",
                               line={"color": "#bbbbbb", "dash": "dot"}, hoverinfo="skip"))
    return _add_curves(fig, curves, shown, ("fpr", "tpr", "auc"), title,
                       ("false positive rate", "true positive rate"), dash)


def pr_figure(curves: Mapping[str, Mapping[str, Any]], shown: Sequence[str]):
    import plotly.graph_objects as go

    return _add_curves(go.Figure(), curves, shown, ("recall", "precision", "ap"),
                       "Precision-recall", ("recall", "precision"))


def _add_curves(fig, curves: Mapping[str, Mapping[str, Any]], shown: Sequence[str],
                keys: tuple[str, str, str], title: str, axis_titles: tuple[str, str],
                dash: Mapping[str, str] | None = None):
    """Add one step line per entry of ``shown`` that ``curves`` holds, coloured by its place in
    ``shown``, and lay out the unit square. ``keys``: a curve's x, y and score entries; the
    legend names the score (``AUC``, ``AP``)."""
    import plotly.graph_objects as go

    x, y, score = keys
    for i, name in enumerate(shown):
        if name not in curves:
            continue
        c = curves[name]
        fig.add_trace(go.Scatter(
            x=c[x], y=c[y], mode="lines", name=f"{name} ({score.upper()} {c[score]:.3f})",
            line={"color": PALETTE[i % len(PALETTE)], "dash": (dash or {}).get(name, "solid"),
                  "shape": "hv"}))
    fig.update_layout(title=title, height=420, margin=MARGIN, xaxis_title=axis_titles[0],
                      yaxis_title=axis_titles[1], legend={"orientation": "h", "y": -0.2})
    fig.update_xaxes(range=[0, 1])
    fig.update_yaxes(range=[0, 1.02])
    return fig


def reliability_figure(before: Mapping[str, Any], after: Mapping[str, Any] | None,
                       temperature: float | None):
    """Accuracy against confidence per bin, before (and after) temperature scaling."""
    import plotly.graph_objects as go

    fig = go.Figure(go.Scatter(x=[0, 1], y=[0, 1], mode="lines", name="perfectly calibrated",
                               line={"color": "#bbbbbb", "dash": "dot"}, hoverinfo="skip"))
    series = [("before", before, PALETTE[0])]
    if after is not None:
        series.append((f"after (T = {temperature:.2f})", after, PALETTE[1]))
    for label, rel, color in series:
        used = [i for i, n in enumerate(rel["count"]) if n]
        fig.add_trace(go.Scatter(
            x=[rel["confidence"][i] for i in used], y=[rel["accuracy"][i] for i in used],
            mode="lines+markers", name=f"{label} · ECE {rel['ece']:.3f}",
            marker={"size": [6 + 14 * np.sqrt(rel["count"][i] / max(rel["count"])) for i in used],
                    "color": color},
            line={"color": color},
            customdata=[rel["count"][i] for i in used],
            hovertemplate="confidence %{x:.3f}<br>accuracy %{y:.3f}<br>%{customdata} samples"))
    fig.update_layout(title="Reliability (marker size: samples per bin)", height=420,
                      margin=MARGIN, xaxis_title="confidence (top class)",
                      yaxis_title="accuracy", legend={"orientation": "h", "y": -0.2})
    fig.update_xaxes(range=[0, 1.02])
    fig.update_yaxes(range=[0, 1.02])
    return fig
