"""Display series: incremental merge without duplicates, and spike-preserving downsampling."""

from __future__ import annotations

import numpy as np
import pytest

from core.runs.series import count_points, downsample, epoch_rows, last_step, merge


def test_merge_appends_only_newer_points_per_key() -> None:
    series: dict = {}
    assert merge(series, {"train/step_loss": [(10, 1.0), (20, 0.9)]}) == 2
    # The epoch metrics arrive later at the step already seen: re-reading from last_step - 1
    # must pick them up while not duplicating the step-loss point at 20.
    rows = {"train/step_loss": [(20, 0.9), (30, 0.8)], "val/loss": [(20, 0.7)]}
    assert merge(series, rows) == 2
    assert series["train/step_loss"] == ([10, 20, 30], [1.0, 0.9, 0.8])
    assert series["val/loss"] == ([20], [0.7])
    assert last_step(series) == 30
    assert count_points(series) == 4
    assert count_points(series, ["val/loss", "missing"]) == 1
    assert last_step({}) == -1


def test_downsample_short_series_unchanged() -> None:
    x, y = downsample([1, 2, 3], [3.0, 2.0, 1.0], max_points=10)
    assert x.tolist() == [1, 2, 3] and y.tolist() == [3.0, 2.0, 1.0]


@pytest.mark.parametrize("n", [1001, 20_000, 123_457])
def test_downsample_bounds_and_keeps_extremes(n: int) -> None:
    rng = np.random.default_rng(0)
    steps = np.arange(n) * 10
    values = rng.normal(size=n)
    values[n // 3] = 50.0  # a spike
    values[2 * n // 3] = -50.0
    x, y = downsample(steps, values, max_points=500)
    assert len(x) <= 500
    assert x[0] == steps[0] and x[-1] == steps[-1]
    assert np.all(np.diff(x) > 0)
    assert y.max() == 50.0 and y.min() == -50.0
    assert set(x.tolist()) <= set(steps.tolist())


def test_downsample_survives_non_finite_values() -> None:
    values = np.full(5000, np.nan)
    values[::7] = 1.0
    x, y = downsample(np.arange(5000), values, max_points=100)
    assert len(x) <= 100
    with pytest.raises(ValueError):
        downsample([1, 2], [1, 2], max_points=2)


def test_epoch_rows_joins_epoch_level_keys() -> None:
    series: dict = {}
    merge(series, {
        "epoch": [(5, 1.0), (10, 2.0)],
        "train/loss": [(5, 1.2), (10, 0.8)],
        "val/acc": [(5, 0.5), (10, 0.7)],
        "train/step_loss": [(5, 1.3), (7, 1.0), (10, 0.7)],
    })
    rows = epoch_rows(series)
    assert rows == [
        {"epoch": 1, "step": 5, "train/loss": 1.2, "val/acc": 0.5},
        {"epoch": 2, "step": 10, "train/loss": 0.8, "val/acc": 0.7},
    ]
    assert epoch_rows({}) == []
