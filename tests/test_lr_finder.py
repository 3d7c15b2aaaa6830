"""The learning-rate range test: a rate it suggests trains as well as the default, it is recorded
as an ``lr_find`` run the Train page draws (with a button that fills the form), and the CLI
refuses a range that does not grow, in one line."""

from __future__ import annotations

import math

import pytest
from conftest import open_page, run_cli, run_json, train_run

from core.config import RunConfig
from core.train.lr_finder import (
    KEYS,
    create_lr_find,
    lr_find_figure,
    run_lr_find,
    suggest,
    zero_lag,
)
from core.workspace import Workspace


@pytest.fixture(scope="module")
def found(ws: Workspace) -> dict:
    """A range test of the default digits config (smallcnn, Adam, batch 64)."""
    run = create_lr_find(ws.store, RunConfig())
    return run_lr_find(ws, run.id, steps=100)


def test_the_suggested_rate_trains_at_least_as_well_as_the_default(ws: Workspace, found: dict):
    """The same config and seed, only the rate differs; each run's best validation accuracy
    over its 5 epochs (what it reaches; the last epoch alone swings by a few samples)."""
    assert 1e-5 < found["suggestion"] < 1.0, found
    assert found["suggestion"] == found["min_over_10"] >= found["steepest"]
    default = train_run(ws, train={"epochs": 5})
    tuned = train_run(ws, train={"epochs": 5, "lr": found["suggestion"]})
    configs = [ws.store.get_run(rid).config for rid in (default, tuned)]
    assert configs[0]["train"]["seed"] == configs[1]["train"]["seed"]
    assert {k: v for k, v in configs[0]["train"].items() if k != "lr"} == \
        {k: v for k, v in configs[1]["train"].items() if k != "lr"}
    acc = {rid: max(v for _, v in ws.store.get_metrics(rid, keys=["val/acc"])["val/acc"])
           for rid in (default, tuned)}
    assert acc[tuned] >= acc[default], (found, acc)


def test_the_test_is_recorded_as_a_run_with_its_curve(ws: Workspace, found: dict):
    run = ws.store.get_run(found["run_id"])
    assert (run.kind, run.status) == ("lr_find", "completed")
    assert run.summary["lr_find"]["suggestion"] == found["suggestion"]
    curve = ws.store.get_metrics(run.id, keys=KEYS)
    lrs = [v for _, v in curve["lr_find/lr"]]
    assert len(lrs) == found["steps"] and lrs == sorted(lrs) and lrs[0] == pytest.approx(1e-7)
    assert "exploded" in found["stop_reason"] or found["steps"] == 100
    assert not (ws.run_dir(run.id) / "checkpoints").exists()  # nothing of the model is kept
    fig = lr_find_figure(lrs, [v for _, v in curve["lr_find/loss"]],
                         [v for _, v in curve["lr_find/smoothed"]], found["steepest"],
                         found["min_over_10"])
    marked = [t.x[0] for t in fig.data if t.mode == "markers"]
    assert marked == [found["steepest"], found["min_over_10"]]


def test_suggest_reads_the_steepest_descent_and_minimum_over_ten():
    lrs = [10 ** (-6 + i * 0.1) for i in range(60)]  # 1e-6 .. ~1
    # A loss that falls fastest at 1e-3 (logistic in log10 lr), bottoms out at 1e-1, then rises.
    loss = [2 - 1 / (1 + math.exp(-4 * (math.log10(lr) + 3))) + max(0, math.log10(lr) + 1) ** 2
            for lr in lrs]
    steepest, min_over_10 = suggest(lrs, loss)
    assert steepest == pytest.approx(1e-3, rel=0.3)
    assert min_over_10 == pytest.approx(lrs[loss.index(min(loss))] / 10)
    assert suggest(lrs[:3], loss[:3]) == (None, None)  # too short to read


def test_the_readings_do_not_lag_behind_the_loss():
    """A loss that falls fastest at 1e-3 is read there whatever the number of steps; the
    running average the stop rule uses would read it at 2-3e-3, further off the fewer the
    steps (its lag is a number of steps, not of decades)."""
    for steps in (60, 200):
        lrs = [10 ** (-6 + 6 * i / (steps - 1)) for i in range(steps)]
        loss = [2 - 1 / (1 + math.exp(-4 * (math.log10(lr) + 3)))
                + max(0, math.log10(lr) + 1) ** 2 for lr in lrs]
        steepest, _ = suggest(lrs, zero_lag(loss, 0.05))
        assert steepest == pytest.approx(1e-3, rel=0.2), steps


def test_cli_refuses_a_range_that_does_not_grow_in_one_line(home):
    out = run_cli("lr-find", "--dataset", "iris", "--start-lr", "1", "--end-lr", "0.1",
                  home=home, check=False)
    assert out.returncode == 2
    assert out.stderr.strip().splitlines() == ["error: The LR range must grow: got 1 -> 0.1."]
    assert run_json("runs", home=home)["runs"] == []  # refused before a run was recorded
    found = run_json("lr-find", "--dataset", "iris", "--steps", "20", home=home)
    assert found["status"] == "completed" and found["steps"] <= 20


def test_train_page_draws_the_curve_and_puts_the_rate_into_the_form(ws: Workspace, found: dict):
    at = open_page("pages/train.py", active_run=found["run_id"])
    assert at.get("plotly_chart")  # the loss-vs-LR figure
    use = next(b for b in at.button if b.key == "train_use_lr")
    use.click().run()
    assert at.session_state["train_lr"] == float(f"{found['suggestion']:.3g}")
    assert not at.exception
