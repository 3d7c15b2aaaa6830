"""Evaluation: the stored inference pass, every metric against scikit-learn, the edge cases.

Tiny runs are trained once per module (digits and shapes: one epoch of the small CNN;
breast_cancer: two epochs of the MLP) and shared by the tests.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator

import numpy as np
import pytest
from conftest import run_cli, run_json, train_run, wait_for
from sklearn import metrics as skm
from sklearn.calibration import calibration_curve

from core.analyze import metrics
from core.analyze.evaluate import (
    checkpoint_signature,
    eval_path,
    evaluate,
    is_fresh,
    predict_split,
    read_predictions,
    stored,
    summarize,
)
from core.config import RunConfig
from core.data import load_dataset
from core.data.dataset import ArrayDataset
from core.errors import InvalidConfig, InvalidImage
from core.runs import create_run
from core.workspace import Workspace


@pytest.fixture(scope="module")
def ws(tmp_path_factory) -> Iterator[Workspace]:
    with Workspace.open(tmp_path_factory.mktemp("eval_ws")) as opened:
        yield opened


@pytest.fixture(scope="module")
def runs(ws: Workspace) -> dict[str, str]:
    return {
        "digits": train_run(ws),
        "breast_cancer": train_run(ws, data={"dataset": "breast_cancer"},
                                   model={"name": "mlp"}, train={"epochs": 2}),
        "shapes": train_run(ws, data={"dataset": "shapes", "image_size": 16}),
    }


# -- every metric against scikit-learn, on the stored probabilities ------------------------------


@pytest.mark.parametrize("dataset", ["digits", "breast_cancer"])
def test_every_metric_matches_scikit_learn(ws: Workspace, runs: dict, dataset: str) -> None:
    preds = evaluate(ws, runs[dataset], "test")
    p = read_predictions(eval_path(ws, runs[dataset], "test"))  # what the page reads
    y, probs, c = p.y_true, p.probs.astype(np.float64), len(p.classes)
    assert len(y) == load_dataset(ws, dataset).size("test") and np.array_equal(p.probs,
                                                                                 preds.probs)
    pred = probs.argmax(1)
    out = metrics.report(y, probs, p.classes)["overall"]
    close = lambda a, b: a == pytest.approx(b, abs=1e-9)  # noqa: E731
    assert close(out["accuracy"], skm.accuracy_score(y, pred))
    assert close(out["balanced_accuracy"], skm.balanced_accuracy_score(y, pred))
    assert close(out["log_loss"], skm.log_loss(y, probs, labels=np.arange(c)))
    for k in metrics.TOP_K:
        if k < c:
            assert close(out[f"top{k}_accuracy"],
                         skm.top_k_accuracy_score(y, probs, k=k, labels=np.arange(c)))
    assert (c == 2) == ("top3_accuracy" not in out)
    for avg in ("macro", "weighted"):
        sk = skm.precision_recall_fscore_support(y, pred, average=avg, zero_division=0)
        assert [out[f"precision_{avg}"], out[f"recall_{avg}"], out[f"f1_{avg}"]] == \
            pytest.approx(sk[:3], abs=1e-9)
    rows = metrics.per_class(y, probs, p.classes)
    sk = skm.precision_recall_fscore_support(y, pred, labels=np.arange(c), zero_division=0)
    for k, row in enumerate(rows):
        assert [row["precision"], row["recall"], row["f1"], row["support"]] == \
            pytest.approx([sk[0][k], sk[1][k], sk[2][k], sk[3][k]])
        assert close(row["auc"], skm.roc_auc_score(y == k, probs[:, k]))
        assert close(row["average_precision"], skm.average_precision_score(y == k, probs[:, k]))
    if c == 2:
        expected = skm.roc_auc_score(y, probs[:, 1])
        assert close(out["auc_macro"], expected) and close(out["auc_weighted"], expected)
    else:
        for avg in ("macro", "weighted"):
            assert close(out[f"auc_{avg}"], skm.roc_auc_score(y, probs, multi_class="ovr",
                                                              average=avg))
    roc, pr = metrics.roc_curves(y, probs, p.classes), metrics.pr_curves(y, probs, p.classes)
    for k, name in enumerate(p.classes):
        fpr, tpr, _ = skm.roc_curve(y == k, probs[:, k])
        assert np.allclose(roc[name]["fpr"], fpr) and np.allclose(roc[name]["tpr"], tpr)
        prec, rec, _ = skm.precision_recall_curve(y == k, probs[:, k])
        assert np.allclose(pr[name]["precision"], prec) and np.allclose(pr[name]["recall"], rec)
    counts, norm = metrics.confusion(y, probs)
    assert np.array_equal(counts, skm.confusion_matrix(y, pred, labels=np.arange(c)))
    assert np.allclose(norm, skm.confusion_matrix(y, pred, labels=np.arange(c),
                                                  normalize="true"))
    assert close(out["ece"], reference_ece(y, probs, metrics.ECE_BINS))
    losses = metrics.top_losses(y, probs, k=5)
    assert all(pred[i] != y[i] for i in losses)
    per_sample = -np.log(probs[np.arange(len(y)), y])
    assert list(per_sample[losses]) == sorted(per_sample[losses], reverse=True)


def reference_ece(y: np.ndarray, probs: np.ndarray, bins: int) -> float:
    """ECE written out the slow way: equal-width bins (lo, hi] of the top-label confidence."""
    conf, correct = probs.max(1), probs.argmax(1) == y
    total = 0.0
    for b in range(bins):
        lo, hi = b / bins, (b + 1) / bins
        inside = (conf > lo) & (conf <= hi) if b else (conf <= hi)
        if inside.any():
            total += inside.sum() * abs(correct[inside].mean() - conf[inside].mean())
    return total / len(y)


def test_binary_calibration_curve_matches_scikit_learn_where_they_coincide() -> None:
    # For a binary problem, the top-label reliability of p >= 0.5 predictions is the positive-
    # class calibration curve restricted to the upper half; check the positive half directly.
    rng = np.random.default_rng(0)
    p1 = rng.uniform(0.5, 1.0, 400)
    y = (rng.uniform(size=400) < p1).astype(int)
    probs = np.stack([1 - p1, p1], 1)
    rel = metrics.reliability(y, probs, bins=10)
    frac_pos, mean_pred = calibration_curve(y, p1, n_bins=10, strategy="uniform")
    upper = [i for i, n in enumerate(rel["count"]) if n]
    assert np.allclose(np.array(rel["confidence"])[upper], mean_pred, atol=1e-9)
    assert np.allclose(np.array(rel["accuracy"])[upper], frac_pos, atol=1e-9)


# -- the stored file ------------------------------------------------------------------------------


def test_second_open_reads_the_stored_file_until_the_checkpoint_changes(ws, runs) -> None:
    run_id = runs["digits"]
    calls: list[tuple[int, int]] = []
    first = evaluate(ws, run_id, "val", progress=lambda d, t, m="": calls.append((d, t)))
    assert calls and is_fresh(ws, run_id, "val")
    path, mtime = first.path, first.path.stat().st_mtime_ns
    calls.clear()
    again = evaluate(ws, run_id, "val", progress=lambda d, t, m="": calls.append((d, t)))
    assert not calls and again.path.stat().st_mtime_ns == mtime  # nothing recomputed
    assert np.array_equal(again.probs, first.probs) and list(again.ids) == list(first.ids)
    with np.load(path, allow_pickle=False) as f:  # arrays and JSON only, never a pickle
        assert {"meta", "ids", "y_true", "probs", "logits"} <= set(f.files)
        assert json.loads(str(f["meta"]))["signature"] == checkpoint_signature(ws, run_id)
    ckpt = next((ws.home / "runs" / run_id / "checkpoints").glob("best.pt"))
    st = ckpt.stat()
    os.utime(ckpt, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # "retrained"
    assert not is_fresh(ws, run_id, "val") and stored(ws, run_id, "val") is None
    evaluate(ws, run_id, "val", progress=lambda d, t, m="": calls.append((d, t)))
    assert calls and is_fresh(ws, run_id, "val")


def test_signature_is_the_one_load_run_computes(ws, runs) -> None:
    from core.models.loaded import load_run

    loaded = load_run(ws, runs["breast_cancer"])
    assert checkpoint_signature(ws, runs["breast_cancer"]) == loaded.checkpoint_signature


def test_large_split_runs_in_batches_with_progress(ws, runs) -> None:
    from torch import nn

    from core.models.loaded import load_run

    class Recorder(nn.Module):
        def __init__(self, model):
            super().__init__()
            self.model, self.sizes = model, []

        def forward(self, x):
            self.sizes.append(len(x))
            return self.model(x)

    loaded = load_run(ws, runs["shapes"])
    loaded.model = recorder = Recorder(loaded.model)
    dataset = load_dataset(ws, "shapes")
    calls: list[tuple[int, int]] = []
    preds = predict_split(loaded, dataset, "test", batch_size=48,
                          progress=lambda d, t, m="": calls.append((d, t)))
    n = dataset.size("test")
    assert len(preds) == n and max(recorder.sizes) <= 48 and sum(recorder.sizes) == n
    assert len(calls) == -(-n // 48) and calls[-1] == (n, n)
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    # Batching changes nothing: one batch of everything gives the same probabilities.
    whole = predict_split(load_run(ws, runs["shapes"]), dataset, "test", batch_size=n)
    assert np.allclose(whole.probs, preds.probs, atol=1e-5)


class _Flaky(ArrayDataset):
    """Digits whose every 7th test sample is a corrupt file."""

    def raw(self, split, i):
        if split == "test" and i % 7 == 3:
            raise InvalidImage("truncated file")
        return super().raw(split, i)


def test_corrupt_samples_are_skipped_and_counted(ws, runs) -> None:
    from core.models.loaded import load_run

    base = load_dataset(ws, "digits")
    flaky = _Flaky(base.info, base._data, base._labels, base._splits)
    preds = predict_split(load_run(ws, runs["digits"]), flaky, "test", batch_size=64)
    n = base.size("test")
    bad = [i for i in range(n) if i % 7 == 3]
    assert list(preds.skipped) == bad and len(preds) == n - len(bad)
    assert np.array_equal(preds.y_true, base.labels("test")[preds.index])
    assert set(preds.index).isdisjoint(bad)


def test_summary_with_temperature_scaling(ws, runs) -> None:
    run_id = runs["digits"]
    out = summarize(evaluate(ws, run_id, "test"), evaluate(ws, run_id, "val"))
    cal = out["calibration"]
    assert cal["temperature"] > 0 and cal["nll_after"] <= cal["nll_before"] + 0.05
    assert np.sum(out["confusion"]) == out["overall"]["samples"]


def test_bad_split_and_run_without_checkpoint(ws) -> None:
    with pytest.raises(InvalidConfig):
        evaluate(ws, "nope", "train")
    fresh = create_run(ws.store, RunConfig())
    from core.errors import InvalidRunState

    with pytest.raises(InvalidRunState, match="no checkpoint"):
        evaluate(ws, fresh.id, "test")
    assert checkpoint_signature(ws, fresh.id) is None and not is_fresh(ws, fresh.id, "test")


# -- CLI and background task ---------------------------------------------------------------------


def test_cli_prints_metrics_and_errors_exit_2(ws, runs) -> None:
    out = run_json("evaluate", runs["breast_cancer"], "--split", "test", home=ws.home)
    assert set(out) >= {"overall", "per_class", "auc", "ece", "calibration"}
    assert out["overall"]["samples"] == len(read_predictions(
        eval_path(ws, runs["breast_cancer"], "test")))
    assert {r["class"] for r in out["per_class"]} == {"malignant", "benign"}
    text = run_cli("evaluate", runs["breast_cancer"], "--no-calibrate", home=ws.home).stdout
    assert "accuracy" in text and "temperature" not in text
    missing = run_cli("evaluate", "no-such-run", home=ws.home, check=False)
    assert missing.returncode == 2 and "error:" in missing.stderr


def test_evaluate_as_a_background_task(ws, runs) -> None:
    from core.runs.launchers import start_evaluate

    store = ws.store
    run_id = runs["shapes"]
    task = start_evaluate(store, run_id, "val")
    done = wait_for(lambda: (t := store.get_job(task.id)).status in ("completed", "failed")
                    and t, timeout=120, interval=0.2)
    assert done.status == "completed", done.error
    assert done.total == done.done == load_dataset(ws, "shapes").size("val")
    assert done.result["split"] == "val" and is_fresh(ws, run_id, "val")
    assert store.latest_job(run_id, "evaluate", "val").id == task.id


# -- edge cases, on synthetic arrays --------------------------------------------------------------


def test_class_absent_from_the_split_has_no_auc_and_says_why() -> None:
    rng = np.random.default_rng(1)
    y = np.array([0, 1, 0, 1, 3, 3, 0, 1, 3, 0])  # class 2 never occurs
    probs = rng.dirichlet(np.ones(4), len(y))
    out = metrics.report(y, probs, ["a", "b", "c", "d"])
    row = out["per_class"][2]
    assert row["auc"] is None and row["average_precision"] is None and row["support"] == 0
    assert "no sample of class c" in row["note"]
    assert out["auc"]["excluded"] == {"c": "n/a: no sample of class c in this split"}
    present = [0, 1, 3]
    expected = np.mean([skm.roc_auc_score(y == k, probs[:, k]) for k in present])
    assert out["overall"]["auc_macro"] == pytest.approx(expected)
    assert "3 of 4" in out["auc"]["note"]
    assert "c" not in metrics.roc_curves(y, probs, ["a", "b", "c", "d"])
    counts, norm = metrics.confusion(y, probs)
    assert counts[2].sum() == 0 and not norm[2].any() and np.isfinite(norm).all()


def test_a_split_of_one_sample() -> None:
    probs = np.array([[0.1, 0.7, 0.2]])
    out = metrics.report(np.array([1]), probs, ["x", "y", "z"])
    o = out["overall"]
    assert o["samples"] == 1 and o["accuracy"] == 1.0 and o["auc_macro"] is None
    assert o["log_loss"] == pytest.approx(-np.log(0.7))
    assert "fewer than two classes" in out["auc"]["note"]
    assert out["per_class"][1]["note"] == "n/a: every sample is class y (no negatives)"
    assert out["per_class"][0]["note"] == "n/a: no sample of class x in this split"
    assert o["ece"] == pytest.approx(0.3)
    assert metrics.roc_curves(np.array([1]), probs, ["x", "y", "z"]) == {}
    assert list(metrics.top_losses(np.array([1]), probs)) == []
    t = metrics.fit_temperature(np.log(probs), np.array([1]))
    assert metrics.MIN_TEMPERATURE <= t <= metrics.MAX_TEMPERATURE


def test_binary_split_with_one_class_only() -> None:
    probs = np.array([[0.2, 0.8], [0.6, 0.4]])
    out = metrics.report(np.array([1, 1]), probs, ["neg", "pos"])
    assert out["overall"]["auc_macro"] is None
    assert out["auc"]["note"] == "n/a: every sample is class pos (no negatives)"
    assert out["overall"]["accuracy"] == 0.5


def test_empty_and_malformed_inputs() -> None:
    assert metrics.report(np.zeros(0, int), np.zeros((0, 3)), "abc")["overall"] == {"samples": 0}
    with pytest.raises(ValueError):
        metrics.report(np.array([0, 5]), np.full((2, 3), 1 / 3), "abc")
    with pytest.raises(ValueError):
        metrics.report(np.array([0]), np.full((2, 3), 1 / 3), "abc")


def test_temperature_scaling_recovers_a_known_temperature() -> None:
    rng = np.random.default_rng(0)
    z = rng.normal(0, 2.0, (4000, 5))
    y = np.array([rng.choice(5, p=p) for p in metrics.softmax(z)])
    t = metrics.fit_temperature(3.0 * z, y)  # logits 3x too sharp: T should be about 3
    assert t == pytest.approx(3.0, rel=0.1)
    scaled = metrics.temperature_scaling(3.0 * z[:2000], y[:2000], 3.0 * z[2000:], y[2000:])
    assert scaled["after"]["ece"] < scaled["before"]["ece"]
    assert scaled["after"]["nll"] < scaled["before"]["nll"]
    assert metrics.nll(z, y) == pytest.approx(skm.log_loss(y, metrics.softmax(z)), rel=1e-9)


def test_cell_indices_and_better_direction() -> None:
    y = np.array([0, 0, 1, 1, 0])
    probs = np.array([[0.9, 0.1], [0.3, 0.7], [0.2, 0.8], [0.6, 0.4], [0.4, 0.6]])
    assert list(metrics.cell_indices(y, probs, 0, 1)) == [1, 4]  # most confident first
    assert list(metrics.cell_indices(y, probs, 1, 0)) == [3]
    assert metrics.better("accuracy") == "max" and metrics.better("log_loss") == "min"
