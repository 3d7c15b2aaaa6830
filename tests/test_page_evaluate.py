"""AppTest of the Evaluate page: a missing file starts the evaluation task, the page then renders
everything from the stored file, reopening recomputes nothing, comparing runs, the hand-off to
Explain, and a failed task's message.

Runs are trained once for the module (digits: one epoch of the small CNN; breast_cancer: two
small MLP runs). The digits evaluation is a real background task, awaited (bounded).
"""

from __future__ import annotations

import numpy as np
import pytest
from conftest import (
    ROOT,
    assert_clean,
    frame_with,
    heavy_modules_after_page,
    open_page,
    train_run,
    wait_for,
)
from streamlit.testing.v1 import AppTest

from core.analyze.evaluate import evaluate, is_fresh
from core.workspace import Workspace

PAGE = "pages/evaluate.py"


@pytest.fixture(scope="module")
def runs(ws: Workspace) -> dict[str, str]:
    return {
        "digits": train_run(ws),
        "bc1": train_run(ws, data={"dataset": "breast_cancer"}, model={"name": "mlp"},
                         train={"epochs": 2}),
        "bc2": train_run(ws, data={"dataset": "breast_cancer"}, model={"name": "mlp"},
                         train={"epochs": 1, "lr": 1e-4}),
    }


def show_tab(at: AppTest, label: str) -> None:
    """Open a tab of the run's view (only the open tab is rendered)."""
    at.session_state["eval_tab"] = label
    at.run()
    assert_clean(at)


def metric_values(at: AppTest) -> dict[str, str]:
    return {m.label: m.value for m in at.metric}


def test_empty_workspace_says_to_train_first(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LAB2MARKET_HOME", str(tmp_path))
    at = open_page(PAGE)
    assert any("train one" in i.value for i in at.info)


def test_a_small_split_is_evaluated_by_the_page_with_its_warm_model(ws, runs) -> None:
    """No job and no new process: the first render already shows the metrics, and the stored
    files are the ones a job would have written (test, and val for calibration)."""
    run_id = runs["bc1"]
    for f in (ws.home / "runs" / run_id / "eval").glob("*.npz"):
        f.unlink()
    at = open_page(PAGE, active_run=run_id)
    assert_clean(at)
    assert ws.store.latest_job(run_id, "evaluate", "test") is None
    assert is_fresh(ws, run_id, "test") and is_fresh(ws, run_id, "val")
    stored = evaluate(ws, run_id, "test")  # reads the page's file back
    assert metric_values(at)["Accuracy"] == f"{np.mean(stored.y_pred == stored.y_true):.4f}"


def test_missing_file_starts_a_task_then_the_page_renders_from_the_file(ws, runs,
                                                                        monkeypatch) -> None:
    import ui.evaluate_views

    monkeypatch.setattr(ui.evaluate_views, "WARM_EVAL_MAX_SAMPLES", 0)  # a "large" split
    run_id = runs["digits"]
    at = open_page(PAGE, active_run=run_id)
    assert at.multiselect(key="eval_runs").value == [run_id]
    assert any("in the background" in c.value for c in at.caption)
    store = ws.store
    task = store.latest_job(run_id, "evaluate", "test")
    assert task is not None
    if store.get_job(task.id).is_active:  # it was active while the page drew: its progress
        assert at.get("progress")
    done = wait_for(lambda: (t := store.get_job(task.id)).status in ("completed", "failed")
                    and t, timeout=150, interval=0.25, message="the evaluation task")
    assert done.status == "completed", done.error
    assert is_fresh(ws, run_id, "test") and is_fresh(ws, run_id, "val")  # val: calibration
    at.run()
    assert_clean(at)
    cards = metric_values(at)
    assert {"Accuracy", "Balanced acc.", "Macro F1", "Log loss", "ROC AUC (macro)",
            "ECE"} <= set(cards)
    assert 0.0 <= float(cards["Accuracy"]) <= 1.0
    table = frame_with(at, "Support")
    assert list(table["Class"]) == [str(d) for d in range(10)]
    assert table["Support"].sum() == int(at.caption[0].value.split()[0])
    assert at.get("download_button")  # the per-class CSV

    # The fallback selectboxes pick a confusion cell; the gallery shows that cell's images.
    show_tab(at, "Confusion matrix")
    at.selectbox(key="eval_cell_true").set_value("1")
    at.selectbox(key="eval_cell_pred").set_value("1").run()
    assert_clean(at)
    header = [m.value for m in at.markdown if m.value.startswith("**true 1 · predicted 1**")]
    assert header, [m.value for m in at.markdown]
    count = int(header[0].split("**: ")[1].split()[0])
    assert count > 0 and len(at.image) == min(count, 24)  # that cell's images
    explain = [b for b in at.button if b.key and b.key.startswith("eval_cell_explain_")]
    assert explain and len(explain) <= 24
    assert at.caption and any("true 1 (" in c.value for c in at.caption)
    at.toggle(key="eval_cm_norm").set_value(True).run()
    assert_clean(at)
    show_tab(at, "ROC & PR")
    at.multiselect(key="eval_curve_classes").set_value(["0", "7"])
    at.toggle(key="eval_curve_macro").set_value(False).run()
    assert_clean(at)
    show_tab(at, "Calibration")
    assert "Temperature" in metric_values(at)
    show_tab(at, "Top losses")
    assert at.image or any("No mistakes" in s.value for s in at.success)

    # Reopening (a new session) reads the stored file: no new task, the numbers are there.
    again = open_page(PAGE, active_run=run_id)
    assert store.latest_job(run_id, "evaluate", "test").id == task.id
    assert metric_values(again)["Accuracy"] == cards["Accuracy"]


def test_explain_button_hands_the_sample_to_the_explain_page(ws, runs, tmp_path,
                                                              monkeypatch) -> None:
    run_id = runs["digits"]
    evaluate(ws, run_id, "test")
    real = (ROOT / "pages" / "explain.py").is_file()
    if not real:
        at = open_page(PAGE, active_run=run_id)
        show_tab(at, "Confusion matrix")
        button = next(b for b in at.button if b.key and b.key.startswith("eval_cell_explain_"))
        assert button.disabled and "not installed" in button.help
        # Until the Explain page exists, stand one in: the hand-off is the session-state key.
        import ui.evaluate_gallery as gallery

        (tmp_path / "pages").mkdir()
        (tmp_path / "pages" / "explain.py").write_text("import streamlit as st\n")
        monkeypatch.setattr(gallery, "ROOT", tmp_path)
    at = open_page(PAGE, active_run=run_id)
    show_tab(at, "Confusion matrix")
    button = next(b for b in at.button if b.key and b.key.startswith("eval_cell_explain_"))
    assert not button.disabled
    button.click().run()
    assert_clean(at)
    if "explain_request" not in at.session_state:  # the Explain page took it already
        assert any("Explain" in t.value for t in at.title)
        return
    request = at.session_state["explain_request"]
    assert request["run_id"] == run_id and request["split"] == "test"
    assert request["sample_id"] == f"test/{request['index']:05d}"
    if not real:  # the stand-in is not in the router: said so, the request is kept
        assert any("not registered" in w.value for w in at.warning)


def test_binary_runs_compare_with_the_best_highlighted(ws, runs) -> None:
    for key in ("bc1", "bc2"):
        for split in ("val", "test"):
            evaluate(ws, runs[key], split)
    at = open_page(PAGE, active_run=runs["bc1"])
    at.multiselect(key="eval_runs").set_value([runs["bc1"], runs["bc2"]]).run()
    assert_clean(at)
    table = frame_with(at, "auc_macro")
    assert len(table) == 2 and {"accuracy", "log_loss", "auc_macro", "ece"} <= set(table.columns)
    assert "top3_accuracy" not in table.columns  # binary: no top-k
    at.selectbox(key="eval_compare_curve").set_value("benign").run()
    assert_clean(at)
    # The tabular gallery: rows with their features, and a sample picker with Explain.
    show_tab(at, "Confusion matrix")
    assert at.selectbox(key="eval_cell_sample")
    assert "mean radius" in frame_with(at, "p(true)").columns
    at.segmented_control(key="eval_split").set_value("val").run()
    show_tab(at, "Calibration")
    assert any("same split" in c.value for c in at.caption)


def test_highlight_marks_max_and_min_per_metric() -> None:
    from ui.evaluate_views import BEST_COLOR, compare_frame, highlight_best

    reports = [("a", {"overall": {"samples": 10, "accuracy": 0.9, "log_loss": 0.3, "ece": None}}),
               ("b", {"overall": {"samples": 10, "accuracy": 0.8, "log_loss": 0.2, "ece": None}})]
    frame = compare_frame(reports)
    assert "ece" not in frame.columns  # undefined for every run
    styles = highlight_best(frame)._compute().ctx
    col = {c: k for k, c in enumerate(frame.columns)}
    assert styles[(0, col["accuracy"])] and not styles.get((1, col["accuracy"]))
    assert styles[(1, col["log_loss"])] and not styles.get((0, col["log_loss"]))
    assert BEST_COLOR.split(";")[0].split(": ")[1] in str(styles[(0, col["accuracy"])])
    assert np.isnan(compare_frame([("a", {"overall": {"samples": 1, "accuracy": 1.0,
                                                      "auc_macro": None}}),
                                   ("b", {"overall": {"samples": 1, "accuracy": 1.0,
                                                      "auc_macro": 0.5}})])
                    .loc["a", "auc_macro"])


def test_a_failed_task_shows_its_message_and_offers_a_retry(ws, runs) -> None:
    store = ws.store
    run_id = runs["bc2"]
    for f in (ws.home / "runs" / run_id / "eval").glob("*.npz"):
        f.unlink()
    task = store.create_job(run_id, "evaluate", [], key="test")
    store.set_job_status(task.id, "failed", error="boom: the disk is full")
    at = open_page(PAGE, active_run=run_id)
    assert any("boom" in e.value and "the disk is full" in e.value for e in at.error)
    assert at.button(key=f"eval_start_{run_id}_test").label == "Retry"
    assert store.latest_job(run_id, "evaluate", "test").id == task.id  # nothing relaunched


def test_the_page_never_imports_torch(ws, runs) -> None:
    evaluate(ws, runs["digits"], "test")
    loaded = heavy_modules_after_page(PAGE, ws.home, runs["digits"],
                                      "assert at.metric and at.image, 'nothing rendered'",
                                      eval_tab="Confusion matrix")
    assert loaded == {"torch": False}
