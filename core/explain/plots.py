"""Plotly figures of explanations; plotly is imported inside each function (fast first load).

Each function takes plain arrays and returns a figure; the pages decide where it goes.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

SIGNED_SCALE = "RdBu_r"  # red = evidence for the class, blue = against; white = none
POSITIVE_SCALE = "Inferno"
MAX_FEATURES = 15


def overlay_figure(image: np.ndarray, attribution_map: np.ndarray, title: str = "",
                   signed: bool = True, opacity: float = 0.55, height: int = 360):
    """The attribution map as a semi-transparent heatmap over the image, with a colour scale.

    ``signed`` maps use a diverging scale centred on zero; non-negative ones (Grad-CAM) a
    sequential one.
    """
    import plotly.graph_objects as go

    rgb = np.asarray(image)
    rgb = np.repeat(rgb[..., None], 3, axis=-1) if rgb.ndim == 2 else rgb
    values = np.asarray(attribution_map, dtype=np.float64)
    bound = float(np.abs(values).max()) or 1.0
    heat = {"zmid": 0.0, "zmin": -bound, "zmax": bound, "colorscale": SIGNED_SCALE} if signed \
        else {"zmin": 0.0, "zmax": bound, "colorscale": POSITIVE_SCALE}
    fig = go.Figure(go.Image(z=rgb, hoverinfo="skip"))
    # The colour bar lies under the image, as wide as the plot: a vertical one is as tall as
    # the figure, taller than a square image in a narrow column.
    fig.add_trace(go.Heatmap(z=values, opacity=opacity, name="attribution", **heat,
                             colorbar={"orientation": "h", "thickness": 10, "len": 1.0,
                                       "y": -0.02, "yanchor": "top", "ypad": 0,
                                       "title": {"text": "attribution", "side": "bottom"}},
                             hovertemplate="x %{x}, y %{y}<br>attribution %{z:.3g}"
                                           "<extra></extra>"))
    fig.update_xaxes(visible=False, constrain="domain")
    fig.update_yaxes(visible=False, autorange="reversed", scaleanchor="x", constrain="domain")
    return _layout(fig, title, height, bottom=60)


def deletion_figure(deletion: dict[str, Any], title: str = "Deletion curve", height: int = 320):
    """Target probability as pixels are removed: most-attributed first vs random order."""
    import plotly.graph_objects as go

    x = np.asarray(deletion["deletion_fractions"]) * 100
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=deletion["deletion_probs"], mode="lines+markers",
                             name=f"most attributed first (AUC {deletion['auc']:.3f})",
                             line={"color": "#d62728"}, marker={"size": 4}))
    fig.add_trace(go.Scatter(x=x, y=deletion["deletion_random_probs"], mode="lines",
                             name=f"random order (AUC {deletion['random_auc']:.3f})",
                             line={"color": "#7f7f7f", "dash": "dash"}))
    fig.update_xaxes(title="removed (%)", range=[0, 100])
    fig.update_yaxes(title="target probability", range=[0, 1.02])
    # The legend goes above the plot, in a margin reserved for it: below the axis title it was
    # cut off by the figure's edge.
    fig.update_layout(legend={"orientation": "h", "yanchor": "bottom", "y": 1.02, "x": 0,
                              "xanchor": "left"})
    return _layout(fig, title, height, top=90 if title else 60, bottom=45)


def feature_bar_figure(values: np.ndarray, feature_names: Sequence[str],
                       labels: Sequence[str] | None = None, title: str = "",
                       top: int = MAX_FEATURES, height: int | None = None):
    """Horizontal bars of per-feature attributions, largest |value| on top (red +, blue -)."""
    import plotly.graph_objects as go

    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(-np.abs(values), kind="stable")[:top][::-1]
    names = [labels[i] if labels and labels[i] else feature_names[i] for i in order]
    fig = go.Figure(go.Bar(x=values[order], y=names, orientation="h",
                           marker={"color": ["#d62728" if v > 0 else "#1f77b4"
                                             for v in values[order]]},
                           hovertemplate="%{y}: %{x:.4g}<extra></extra>"))
    fig.update_xaxes(title="contribution to the target class", zeroline=True)
    return _layout(fig, title, height or 80 + 22 * len(order))


def waterfall_figure(values: np.ndarray, feature_names: Sequence[str], row: np.ndarray,
                     base: float, title: str = "", top: int = MAX_FEATURES):
    """SHAP waterfall: from the mean prediction (base) to this row's, feature by feature."""
    import plotly.graph_objects as go

    values = np.asarray(values, dtype=np.float64)
    order = np.argsort(-np.abs(values), kind="stable")
    shown, rest = order[:top], order[top:]
    names = [f"{feature_names[i]} = {float(row[i]):.4g}" for i in shown]
    steps = list(values[shown])
    if len(rest):
        names.append(f"{len(rest)} other features")
        steps.append(float(values[rest].sum()))
    fig = go.Figure(go.Waterfall(
        orientation="h", base=base, y=["mean prediction", *names, "this row"][::-1],
        x=[0.0, *steps, 0.0][::-1], measure=["relative", *["relative"] * len(steps),
                                             "total"][::-1],
        increasing={"marker": {"color": "#d62728"}}, decreasing={"marker": {"color": "#1f77b4"}},
        totals={"marker": {"color": "#7f7f7f"}}))
    fig.update_xaxes(title="probability of the target class")
    return _layout(fig, title, 120 + 24 * len(names))


def beeswarm_figure(values: np.ndarray, rows: np.ndarray, feature_names: Sequence[str],
                    title: str = "", top: int = MAX_FEATURES, seed: int = 0):
    """A beeswarm-like summary: one dot per row and feature at its SHAP value, jittered
    vertically, coloured by the feature's value (low blue, high red); most important on top."""
    import plotly.graph_objects as go

    values, rows = np.asarray(values, dtype=np.float64), np.asarray(rows, dtype=np.float64)
    order = np.argsort(-np.abs(values).mean(0), kind="stable")[:top][::-1]
    rng = np.random.default_rng(seed)
    xs, ys, colours, texts = [], [], [], []
    for level, f in enumerate(order):
        low, high = rows[:, f].min(), rows[:, f].max()
        xs.append(values[:, f])
        ys.append(level + rng.uniform(-0.3, 0.3, len(values)))
        colours.append((rows[:, f] - low) / (high - low) if high > low else np.full(len(rows),
                                                                                  0.5))
        texts += [f"{feature_names[f]} = {v:.4g}" for v in rows[:, f]]
    fig = go.Figure(go.Scattergl(
        x=np.concatenate(xs), y=np.concatenate(ys), mode="markers", text=texts,
        marker={"color": np.concatenate(colours), "colorscale": SIGNED_SCALE, "size": 5,
                "colorbar": {"title": {"text": "feature value"}, "tickvals": [0, 1],
                             "ticktext": ["low", "high"], "thickness": 12}},
        hovertemplate="%{text}<br>SHAP %{x:.4g}<extra></extra>"))
    fig.update_yaxes(tickvals=list(range(len(order))),
                     ticktext=[feature_names[f] for f in order])
    fig.update_xaxes(title="SHAP value (impact on the target probability)", zeroline=True)
    return _layout(fig, title, 100 + 26 * len(order))


def _layout(fig, title: str, height: int, top: int | None = None, bottom: int = 10):
    fig.update_layout(title={"text": title} if title else None, height=height,
                      margin={"l": 10, "r": 10, "t": top if top is not None else
                              (40 if title else 10), "b": bottom},
                      template="plotly_white")
    return fig
