"""AppTest of the Compress page: prune the active run from the form (a real background job), see
the new row, measure the variants (a real job) and get the Pareto chart; the unstructured note;
a bad request shown in one line; and no torch import."""

from __future__ import annotations

import json

import pytest
from conftest import (
    assert_clean,
    frame_with,
    heavy_modules_after_page,
    open_page,
    train_run,
    wait_for,
)

from core.workspace import Workspace

PAGE = "pages/compress.py"
PRUNE = "FormSubmitter:compress_prune_form-Prune"


@pytest.fixture(scope="module")
def source(ws: Workspace) -> str:
    return train_run(ws)  # smallcnn on digits, one epoch


def _ended(ws: Workspace, job_id: str):
    return wait_for(lambda: (j := ws.store.get_job(job_id)).status not in ("queued", "running")
                    and j, timeout=240, interval=0.25, message=f"job {job_id}")


def test_prune_from_the_page_then_measure_the_variants(ws: Workspace, source: str):
    at = open_page(PAGE, active_run=source)
    assert list(frame_with(at, "How")["Run"]) == [source]
    at.slider(key="compress_amount").set_value(0.5)
    at.number_input(key="compress_epochs").set_value(1)
    at.button(key=PRUNE).click().run()
    assert_clean(at)
    child = ws.store.child_runs(source, kind="pruned")
    assert len(child) == 1
    table = frame_with(at, "How")
    assert list(table["Run"]) == [source, child[0].id]  # the new row, before it even trained
    job = ws.store.active_jobs(child[0].id)[0]
    assert job.kind == "prune" and _ended(ws, job.id).status == "completed"

    at.run()
    assert any("completed" in s.value for s in at.success)
    at.button(key="compress_measure").click().run()
    assert_clean(at)
    measure = ws.store.latest_job(source, "variants")
    assert _ended(ws, measure.id).status == "completed", measure.error
    at.run()
    assert_clean(at)
    table = frame_with(at, "How")
    assert all(table["Batch 1 (ms)"]) and all(table["ONNX int8"])
    assert table["Δ accuracy (pts)"][1] != "" and table["Pareto"].str.contains("★").any()
    spec = json.loads(next(c for c in at.get("plotly_chart")
                           if c.key == "compress_pareto").proto.spec)
    assert sum(len(trace["x"]) for trace in spec["data"][:2]) == 2


def test_unstructured_is_not_faster_and_a_failed_prune_says_why(ws: Workspace, source: str):
    at = open_page(PAGE, active_run=source)
    at.radio(key="compress_method").set_value("unstructured").run()
    assert any("not faster" in i.value for i in at.info)
    # An MLP has no batch norm to rank channels by: the job fails with that reason, one line.
    table = train_run(ws, data={"dataset": "wine"}, model={"name": "mlp"})
    at = open_page(PAGE, active_run=table)
    assert at.selectbox(key="compress_student").options == ["mlp"]  # tabular students only
    at.selectbox(key="compress_importance").set_value("bn")
    at.number_input(key="compress_epochs").set_value(1)
    at.button(key=PRUNE).click().run()
    child = ws.store.child_runs(table, kind="pruned")[0]
    _ended(ws, ws.store.list_jobs(run_id=child.id)[0].id)
    at.run()
    assert ws.store.get_run(child.id).status == "failed"
    errors = [e.value for e in at.error]
    assert any("Nothing could be pruned with importance 'bn'" in e for e in errors), errors
    assert all("Traceback" not in e for e in errors)


def test_the_page_never_imports_torch(ws: Workspace, source: str):
    found = heavy_modules_after_page(PAGE, ws.home, source, modules=("torch", "torch_pruning"),
                                     check="assert at.dataframe")
    assert found == {"torch": False, "torch_pruning": False}
