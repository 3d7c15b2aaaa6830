"""K-fold cross-validation: stratified folds over train+val that never touch test, fold runs of
kind ``cv_fold`` under a ``cv`` parent, queued as real training jobs; mean and std over folds,
a scikit-learn baseline on the same folds; cancel and resume of the parent."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, run_json, wait_for

from core import runs
from core.config import RunConfig
from core.data import load_dataset
from core.data.folds import load_for_config, stratified_folds, with_fold
from core.errors import InvalidConfig
from core.runs.cv import fold_runs, launch_cv, parent_status


def cv_config(k: int = 5, epochs: int = 1, **train) -> RunConfig:
    raw = RunConfig().to_dict()
    raw["data"].update(dataset="wine", cv=k)
    raw["model"]["name"] = "mlp"
    raw["train"].update(epochs=epochs, batch_size=32, **train)
    return RunConfig.from_dict(raw)


def test_folds_are_disjoint_cover_train_val_and_never_touch_test(ws):
    dataset = load_dataset(ws, "wine")
    pool = set(dataset.indices("train")) | set(dataset.indices("val"))
    test = dataset.indices("test")
    folds = [with_fold(dataset, 5, i) for i in range(5)]
    vals = [set(f.indices("val")) for f in folds]
    assert sum(len(v) for v in vals) == len(pool) and set().union(*vals) == pool  # disjoint
    for fold, val in zip(folds, vals, strict=True):
        assert set(fold.indices("train")) == pool - val
        assert not val & set(test) and not set(fold.indices("train")) & set(test)
        np.testing.assert_array_equal(fold.indices("test"), test)
        assert fold.info.split_counts["val"] == len(val)
        # Stratified: each class's share of the fold is its share of train+val, within one.
        per_class = np.bincount(fold.labels("val"), minlength=3)
        expected = np.bincount(np.concatenate([dataset.labels("train"),
                                               dataset.labels("val")]), minlength=3) / 5
        assert np.all(np.abs(per_class - expected) < 1)
    again = with_fold(load_dataset(ws, "wine"), 5, 3)  # seeded: the same folds every time
    np.testing.assert_array_equal(again.indices("val"), folds[3].indices("val"))


def test_stratified_folds_refuse_impossible_counts():
    with pytest.raises(InvalidConfig, match="lower --cv"):
        stratified_folds(np.arange(3), np.zeros(3), 4)


@pytest.mark.parametrize(("data", "train", "message"), [
    ({"cv": 1}, {}, "cv must be from 2"), ({"fold": 0}, {}, "fold needs cv"),
    ({"cv": 3, "fold": 3}, {}, "fold must be from 0 to 2"),
    ({"train_on_val": True, "cv": 3}, {}, "drop one of --cv and --train-on-val"),
    ({"train_on_val": True}, {"patience": 2}, "early stopping on val/loss cannot run")])
def test_bad_fold_configs_are_refused(data, train, message):
    raw = RunConfig().to_dict()
    raw["data"].update(data)
    raw["train"].update(train)
    with pytest.raises(InvalidConfig, match=message):
        RunConfig.from_dict(raw)


def test_train_on_val_trains_on_train_and_val_and_needs_a_test_split(ws, tmp_path: Path):
    from core.data.folds import with_val_in_train
    from core.train.trainer import Trainer

    raw = RunConfig().to_dict()
    raw["data"].update(dataset="wine", train_on_val=True)
    raw["model"]["name"] = "mlp"
    config = RunConfig.from_dict(raw)
    dataset, seen = load_dataset(ws, "wine"), load_for_config(ws, config.data)
    pool = np.concatenate([dataset.indices("train"), dataset.indices("val")])
    np.testing.assert_array_equal(seen.indices("train"), np.sort(pool))
    np.testing.assert_array_equal(seen.indices("test"), dataset.indices("test"))
    assert seen.size("val") == 0
    trainer = Trainer(ws, config, tmp_path)
    trainer.setup()
    assert len(trainer.train_loader.dataset) == len(pool) and trainer.validate() == {}
    no_test = dataset.with_splits({"train": dataset.indices("train"),
                                   "val": dataset.indices("val")})
    with pytest.raises(InvalidConfig, match="needs a held-out test split"):
        with_val_in_train(no_test)


def test_the_trainer_trains_and_validates_on_its_fold(ws, tmp_path: Path):
    from core.train.trainer import Trainer

    raw = cv_config().to_dict()
    raw["data"]["fold"] = 2
    config = RunConfig.from_dict(raw)
    trainer = Trainer(ws, config, tmp_path)
    trainer.setup()
    fold = load_for_config(ws, config.data)
    assert len(trainer.train_loader.dataset) == len(fold.indices("train"))
    np.testing.assert_array_equal(trainer.dataset.indices("val"), fold.indices("val"))
    np.testing.assert_array_equal(trainer.val_loader.dataset.labels, fold.labels("val"))


def test_parent_status_follows_its_folds():
    assert parent_status(["queued", "queued"]) == "queued"
    assert parent_status(["completed", "queued"]) == "running"
    assert parent_status(["completed", "completed"]) == "completed"
    assert parent_status(["completed", "cancelled", "interrupted"]) == "interrupted"
    assert parent_status(["failed", "cancelled"]) == "failed"


def test_cv_5_on_wine_from_the_cli(home: Path):
    out = run_json("train", "--dataset", "wine", "--epochs", "1", "--cv", "5", home=home)
    assert out["status"] == "completed" and out["ended"] and out["k"] == 5
    assert [f["fold"] for f in out["folds"]] == list(range(5))
    assert {f["status"] for f in out["folds"]} == {"completed"}
    acc = out["metrics"]["val/acc"]
    assert acc["n"] == 5 and len(acc["folds"]) == 5
    assert acc["mean"] == pytest.approx(np.mean(acc["folds"]))
    assert acc["std"] == pytest.approx(np.std(acc["folds"])) and acc["std"] >= 0
    for model in ("logistic_regression", "gradient_boosting"):  # the same folds, in sklearn
        assert 0.5 < out["baseline"][model]["val/acc"]["mean"] <= 1
    listed = {r["run_id"]: r for r in run_json("runs", home=home)["runs"]}
    assert len(listed) == 6
    from core.workspace import Workspace

    with Workspace.open(home) as opened:
        parent = opened.store.get_run(out["run_id"])
        folds = fold_runs(opened.store, parent.id)
        assert parent.kind == "cv" and parent.status == "completed"
        assert [(f.kind, f.parent_run, f.config["data"]["fold"]) for f in folds] == [
            ("cv_fold", parent.id, i) for i in range(5)]
        # Each fold validated on its own fold: its val size is the fold's.
        vals = [load_for_config(opened, RunConfig.from_dict(f.config).data).indices("val")
                for f in folds]
        assert sum(map(len, vals)) == len(set(np.concatenate(vals)))
    status = run_json("status", out["run_id"], home=home)
    assert status["metrics"] == out["metrics"] and status["baseline"] == out["baseline"]
    # A fold run is evaluated on the fold it validated on; deleting the parent takes its folds.
    evaluated = run_json("evaluate", folds[0].id, "--split", "val", "--no-calibrate", home=home)
    assert evaluated["overall"]["samples"] == len(vals[0])
    run_json("delete", out["run_id"], home=home)
    assert run_json("runs", home=home)["runs"] == []


def test_the_final_model_trains_on_train_and_val_for_the_folds_mean_best_epoch(home: Path):
    from core.runs import create_run
    from core.workspace import Workspace

    with Workspace.open(home) as opened:  # a CV whose two folds ended (best epochs 1 and 2)
        store = opened.store
        parent = create_run(store, cv_config(k=2), kind="cv")
        for fold, best in enumerate((1.0, 2.0)):
            raw = cv_config(k=2).to_dict()
            raw["data"]["fold"] = fold
            run = create_run(store, RunConfig.from_dict(raw), kind="cv_fold",
                             parent_run=parent.id)
            store.update_run(run.id, summary={"best_epoch": {"epoch": best}})
            store.set_status(run.id, "running")
            store.set_status(run.id, "completed")
    refused = run_cli("cv-final", run.id, home=home, check=False)  # a fold is not a CV
    assert refused.returncode == 2 and "is not a cross-validation" in refused.stderr

    final = run_json("cv-final", parent.id, home=home)
    assert final["status"] == "completed" and final["epochs"] == 2  # round(mean(1, 2))
    assert not any(k.startswith("val/") for k in final["final"])  # nothing left to validate on
    with Workspace.open(home) as opened:
        run = opened.store.get_run(final["run_id"])
        assert (run.kind, run.parent_run, run.config["data"]["train_on_val"]) == (
            "trained", parent.id, True)
        assert run.config["train"]["patience"] is None
        checkpoints = opened.run_dir(run.id) / "checkpoints"
        assert (checkpoints / "last.pt").is_file() and not (checkpoints / "best.pt").exists()
    status = run_json("status", parent.id, home=home)
    assert status["final_runs"] == [{"run_id": run.id, "status": "completed", "epochs": 2}]


def test_cancel_and_resume_a_cv_parent(workspace):
    store = workspace.store
    parent, folds = launch_cv(store, cv_config(k=2, epochs=30))
    assert store.get_run(parent.id).status in ("queued", "running")
    # One slot (the default on CPU): fold 0 trains, fold 1 waits behind it.
    wait_for(lambda: store.get_run(folds[0].id).epoch >= 1, timeout=120,
             message="fold 0 training")
    assert store.get_run(folds[1].id).status == "queued"
    cancelled = runs.cancel(store, parent.id)
    assert cancelled.status in ("cancelled", "interrupted")
    statuses = [f.status for f in fold_runs(store, parent.id)]
    assert statuses[1] == "cancelled" and statuses[0] in ("cancelled", "interrupted")
    assert not store.active_jobs()  # nothing left running or queued
    with pytest.raises(Exception, match="none of its folds is queued or running"):
        runs.cancel(store, parent.id)

    resumed = runs.resume(store, parent.id)
    assert resumed.status in ("queued", "running")

    def ended():
        runs.reconcile(store)
        return store.get_run(parent.id).status in ("completed", "failed", "interrupted")
    wait_for(ended, timeout=240, interval=0.3, message="the resumed folds")
    assert store.get_run(parent.id).status == "completed"
    done = fold_runs(store, parent.id)
    assert [f.epoch for f in done] == [30, 30]
    assert any(e.kind == "resumed" for e in store.get_events(done[0].id))
