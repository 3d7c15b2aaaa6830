"""Small formatting helpers shared by the pages (pure functions, easy to test)."""

from __future__ import annotations

import math
import time

STATUS_HEX = {  # the same hues, for table cells
    "queued": "#9e9e9e", "running": "#1e88e5", "completed": "#43a047", "failed": "#e53935",
    "cancelled": "#fb8c00", "interrupted": "#8e24aa",
}
STATUS_COLORS = {
    "queued": "gray", "running": "blue", "completed": "green", "failed": "red",
    "cancelled": "orange", "interrupted": "violet",
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
