"""Small formatting helpers shared by the pages (pure functions, easy to test)."""

from __future__ import annotations

import math
import re
import time

# What starts Markdown inside a line (emphasis, code, links, HTML, strikethrough, LaTeX, Streamlit's
# :color[...] directives, tables, entities), and what starts a block at the head of a text.
_INLINE_MARKUP = re.compile(r"([\\`*_\[\]<>~$:|{}#&])")
_BULLET = re.compile(r"^([-+=])")
_ORDERED = re.compile(r"^(\d+)([.)])")

STATUS_HEX = {  # the same hues, for table cells
    "queued": "#9e9e9e", "running": "#1e88e5", "completed": "#43a047", "failed": "#e53935",
    "cancelled": "#fb8c00", "interrupted": "#8e24aa", "pruned": "#6d4c41",
}
STATUS_COLORS = {
    "queued": "gray", "running": "blue", "completed": "green", "failed": "red",
    "cancelled": "orange", "interrupted": "violet", "pruned": "gray",
}


def duration(seconds: float | None) -> str:
    """``1h 02m``, ``3m 05s``, ``12s``; an em dash when unknown."""
    if seconds is None or not math.isfinite(seconds):
        return "—"
    seconds = max(0, int(round(seconds)))
    hours, rest = divmod(seconds, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours}h {minutes:02d}m"
    if minutes:
        return f"{minutes}m {secs:02d}s"
    return f"{secs}s"


def timestamp(epoch_seconds: float | None) -> str:
    if epoch_seconds is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(epoch_seconds))


def number(value: float | None, digits: int = 4) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "—"
    return f"{value:.{digits}g}"


def plain(text: object) -> str:
    """``text`` (a class, dataset, run or file name) escaped so Markdown shows it literally.

    Use it wherever a name goes into Markdown: ``st.markdown``, captions, alerts, titles, widget
    labels. Names in dataframes, ``st.text``, ``st.code`` and selectbox options need nothing.
    Line breaks become spaces, so a name cannot start a heading or a list.
    """
    text = _INLINE_MARKUP.sub(r"\\\1", " ".join(str(text).split()))
    return _ORDERED.sub(r"\1\\\2", _BULLET.sub(r"\\\1", text))
