"""The Explain page's result cards: a large overlay (the input visible under a translucent map,
its opacity set once for all cards), a compact trust badge whose details open on demand, LIME's
superpixels, and a plain warning when a map carries no information.

Cards sit in a grid of at most ``COLUMNS`` per row, so an overlay is never a thumbnail and the
cards of one row line up (same title line, same overlay height, same badge row).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import streamlit as st
from PIL import Image

from core.explain import plots
from core.explain.cache import Explanation
from core.explain.trust import is_flat, verdict_of
from ui.format import plain

COLUMNS = 2
OVERLAY_HEIGHT = 420
OPACITY_KEY = "explain_opacity"
PREVIEW_WIDTH = 160
OUTLINE = (255, 215, 0)  # superpixel boundaries: yellow reads on grey digits and on photos
BADGES = {  # verdict -> (label, colour, icon)
    "passed": ("Sanity check passed", "green", ":material/verified:"),
    "failed": ("Sanity check failed", "orange", ":material/warning:"),
    "undefined": ("Sanity check undefined", "gray", ":material/help:"),
}


def render_opacity_control() -> float:
    """One slider for every overlay: 0 shows the input alone, 1 the map alone."""
    st.session_state.setdefault(OPACITY_KEY, 0.5)
    return float(st.slider("Map opacity", 0.0, 1.0, step=0.05, key=OPACITY_KEY,
                           help="How opaque the attribution map is over the input."))


def render_grid(results: list[Explanation], keys: list[str], opacity: float) -> None:
    """The cards, ``COLUMNS`` per row (one result: one column of the same width)."""
    for start in range(0, len(results), COLUMNS):
        columns = st.columns(COLUMNS)
        for column, result, key in zip(columns, results[start:start + COLUMNS],
                                       keys[start:start + COLUMNS], strict=False):
            with column:
                render_card(result, key, opacity)


def render_card(result: Explanation, key: str, opacity: float) -> None:
    """One method's result: title, overlay (or feature bars), flat-map warning, trust badge."""
    with st.container(border=True, key=key):
        render_map(result, key, opacity)
        if is_flat(result.map):
            st.warning("This explanation carries no information: its map is one constant "
                       "value, so it ranks no input above another.",
                       icon=":material/block:")
        render_trust_badge(result, key)
        if result.method == "lime" and result.modality == "image":
            render_superpixels(result, key)
        st.caption(f"computed in {result.seconds:.1f} s (method + trust checks) · "
                   f"target *{plain(result.target_label)}*")


def render_map(result: Explanation, key: str, opacity: float) -> None:
    """The card's title and its map: the overlay on the image, or the feature bars."""
    from ui.explain_views import render_tabular

    st.markdown(f"**{plain(result.display_name)}**",
                help=f"Target class: {result.target_label}; run {result.run_id}")
    if result.modality == "image":
        fig = plots.overlay_figure(result.image, result.map, signed=result.method != "gradcam",
                                   opacity=opacity, height=OVERLAY_HEIGHT)
        st.plotly_chart(fig, key=f"{key}_overlay", config={"displayModeBar": False})
    else:
        render_tabular(result, key)


def preview_slots(count: int) -> list[Any]:
    """``count`` empty cards laid out as ``render_grid`` lays out results."""
    slots: list[Any] = []
    for start in range(0, count, COLUMNS):
        slots += st.columns(COLUMNS)[:count - start]
    return [slot.empty() for slot in slots]


def render_preview(slot: Any, result: Explanation, key: str, opacity: float) -> None:
    """A map drawn as soon as it exists, while its trust checks still run (``slot``: one of
    ``preview_slots``); the finished card replaces it."""
    with slot.container(border=True, key=key):
        render_map(result, key, opacity)
        st.caption("Checking it: the same method on a randomised copy of the model, then the "
                   "deletion curve...")


def render_trust_badge(result: Explanation, key: str) -> None:
    """A badge with the sanity verdict; the numbers and the deletion curve in a popover."""
    from ui.explain_views import params_text

    verdict = verdict_of(result.sanity)
    label, colour, icon = BADGES[verdict]
    left, right = st.columns([3, 2], vertical_alignment="center")
    left.badge(label, color=colour, icon=icon)
    with right.popover("Details", key=f"{key}_trust", icon=":material/science:"):
        render_trust_details(result, verdict, key)
        st.caption(plain(params_text(result.params)))


def render_trust_details(result: Explanation, verdict: str, key: str) -> None:
    sanity = result.sanity or {}
    if verdict == "undefined":
        reason = sanity.get("reason") or "a map is flat (it ranks no position above another)"
        st.warning(f"Sanity check undefined: {reason}. It is not counted as passed.",
                   icon=":material/science:")
    else:
        text = (f"Sanity check {verdict}: similarity to the map of a randomised model "
                f"{sanity['similarity']:.2f} (Spearman of |attribution|; below "
                f"{sanity['threshold']:.2f} passes).")
        (st.success if verdict == "passed" else st.warning)(text, icon=":material/science:")
    if is_flat(result.map):
        st.info("Deletion curve undefined: a flat map gives no order to remove pixels in.")
    elif result.deletion.get("deletion_fractions") is not None:
        st.plotly_chart(plots.deletion_figure(result.deletion), key=f"{key}_deletion",
                        config={"displayModeBar": False})


def render_superpixels(result: Explanation, key: str) -> None:
    """The segment count, which segmentation made them, and the segments outlined."""
    count = result.extras.get("segments")
    used = result.extras.get("segmentation", "slic")
    segments = result.extras.get("segment_map")
    left, right = st.columns([3, 2], vertical_alignment="center")
    left.caption(f"{count} superpixels ({plain(str(used))})",
                 help="LIME switches these regions on and off. When SLIC degenerates (one "
                      "region on a noisy image), a fallback segmentation is used.")
    if segments is not None and result.image is not None:
        with right.popover("Superpixels", key=f"{key}_segments", icon=":material/grid_on:"):
            st.image(outline_segments(result.image, np.asarray(segments)),
                     caption=f"{count} superpixels, {used}")


def outline_segments(image: np.ndarray, segments: np.ndarray, width: int = 320) -> np.ndarray:
    """The image enlarged (nearest neighbour, so pixels stay sharp) with the boundaries
    between segments drawn in yellow."""
    scale = max(1, width // max(segments.shape))
    rgb = np.asarray(image)
    rgb = np.repeat(rgb[..., None], 3, axis=-1) if rgb.ndim == 2 else rgb[..., :3]
    big = np.kron(segments, np.ones((scale, scale), dtype=segments.dtype))
    out = np.repeat(np.repeat(rgb, scale, axis=0), scale, axis=1).copy()
    edge = np.zeros(big.shape, dtype=bool)
    edge[:, 1:] |= big[:, 1:] != big[:, :-1]
    edge[1:, :] |= big[1:, :] != big[:-1, :]
    out[edge] = OUTLINE
    return out


def sharp_preview(image: Any, width: int = PREVIEW_WIDTH) -> Image.Image:
    """A small image enlarged by nearest neighbour (the browser would blur it), as the overlay
    shows it; a large one as it is."""
    img = image if isinstance(image, Image.Image) else Image.open(image)
    if img.width >= width:
        return img
    scale = max(1, width // img.width)
    return img.resize((img.width * scale, img.height * scale), Image.Resampling.NEAREST)
