"""Metric series for display: incremental merging and downsampling. Torch- and streamlit-free.

A live chart keeps the series it has already read and asks the store only for newer rows; a run
with tens of thousands of logged points is drawn from a few hundred. Downsampling keeps, in each
bucket of consecutive points, the lowest and the highest value, so a loss spike never disappears
from the chart (an average would smooth it away), plus the first and the last point.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

Series = tuple[list[int], list[float]]  # (steps, values), steps increasing


def merge(series: dict[str, Series], rows: Mapping[str, Iterable[tuple[int, float]]]) -> int:
    """Append ``rows`` (``{key: [(step, value), ...]}`` ordered by step) to ``series`` in place.

    Only points past the last step already held for that key are added, so re-reading an
    overlapping window (``after_step = last_step - 1``) never duplicates a point. Returns the
    number of points added.
    """
    added = 0
    for key, points in rows.items():
        steps, values = series.setdefault(key, ([], []))
        last = steps[-1] if steps else None
        for step, value in points:
            if last is None or step > last:
                steps.append(int(step))
                values.append(float(value))
                last = step
                added += 1
    return added


def last_step(series: Mapping[str, Series]) -> int:
    """The highest step held for any key, or -1 when empty."""
    return max((steps[-1] for steps, _ in series.values() if steps), default=-1)


def count_points(series: Mapping[str, Series], keys: Iterable[str] | None = None) -> int:
    """Number of points held, over ``keys`` (all keys when None)."""
    chosen = series.keys() if keys is None else [k for k in keys if k in series]
    return sum(len(series[k][0]) for k in chosen)


def downsample(steps: Sequence[float], values: Sequence[float],
               max_points: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """At most ``max_points`` points of a series: min and max of each bucket, in step order.

    The first and the last point are always kept; series that are short enough are returned as
    they are (as arrays).
    """
    x = np.asarray(steps, dtype=np.float64)
    y = np.asarray(values, dtype=np.float64)
    if max_points < 4:
        raise ValueError(f"max_points must be >= 4, got {max_points}")
    n = len(x)
    if n <= max_points:
        return x, y
    inner = n - 2
    buckets = (max_points - 2) // 2
    edges = np.linspace(1, 1 + inner, buckets + 1).astype(np.int64)
    keep = [0]
    for lo, hi in zip(edges[:-1], edges[1:], strict=True):
        if hi <= lo:
            continue
        chunk = y[lo:hi]
        finite = np.isfinite(chunk)
        if not finite.any():
            keep.append(int(lo))
            continue
        masked_low = np.where(finite, chunk, np.inf)
        masked_high = np.where(finite, chunk, -np.inf)
        a, b = lo + int(np.argmin(masked_low)), lo + int(np.argmax(masked_high))
        keep.extend(sorted({a, b}))
    keep.append(n - 1)
    index = np.asarray(keep, dtype=np.int64)
    return x[index], y[index]


def epoch_rows(series: Mapping[str, Series], epoch_key: str = "epoch") -> list[dict[str, float]]:
    """One row per epoch: every key logged at the step where ``epoch_key`` was logged.

    The trainer writes its epoch-level metrics (``train/loss``, ``val/acc``, ``lr``, ...) at the
    step that ends the epoch, together with ``epoch``; per-step keys logged at the same step are
    skipped when they are not logged at every epoch end (``train/step_loss``).
    """
    if epoch_key not in series:
        return []
    steps, epochs = series[epoch_key]
    lookup = {key: dict(zip(s, v, strict=True)) for key, (s, v) in series.items()
              if key != epoch_key and not key.endswith("step_loss")}
    rows = []
    for step, epoch in zip(steps, epochs, strict=True):
        row: dict[str, float] = {"epoch": int(epoch), "step": int(step)}
        for key, by_step in lookup.items():
            if step in by_step:
                row[key] = by_step[step]
        rows.append(row)
    return rows
