"""AppTest of the Deploy page: export from the page (a real background task), the bundles table
and download, the latency table and chart, the server started and stopped from the page with
its live request count, a failed task's message, and no torch import.

One digits run is trained and exported (ONNX fp32) once for the module; tasks and the server
are real processes, awaited with bounds and stopped in ``finally`` blocks.
"""

from __future__ import annotations

import io
import json
import zipfile

import httpx
import pytest
from conftest import (
    assert_clean,
    frame_with,
    free_port,
    heavy_modules_after_page,
    open_page,
    train_run,
    wait_for,
)
from PIL import Image

from core.deploy.export import export_run
from core.runs import cancel_job
from core.runs.processes import is_alive
from core.runs.store import Store
from core.workspace import Workspace

PAGE = "pages/deploy.py"


@pytest.fixture(scope="module")
def run_id(ws: Workspace) -> str:
    run_id = train_run(ws)
    export_run(ws, run_id, "onnx", latency_budget_s=0.2)
    return run_id


def wait_task(store: Store, task_id: str, timeout: float = 150):
    return wait_for(lambda: (t := store.get_job(task_id)).status not in ("queued", "running")
                    and t, timeout=timeout, interval=0.25, message=f"task {task_id}")


def test_empty_workspace_says_to_train_first(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LAB2MARKET_HOME", str(tmp_path))
    at = open_page(PAGE)
    assert any("train one" in i.value for i in at.info)


def test_bundles_table_download_and_model_card(ws: Workspace, run_id: str) -> None:
    at = open_page(PAGE, active_run=run_id)
    assert at.selectbox(key="deploy_run").value == run_id
    table = frame_with(at, "Bundle")
    assert list(table["Bundle"]) == ["onnx-fp32"]
    assert table["fp32 parity b1"][0] <= 1e-4 and table["fp32 parity b8"][0] <= 1e-4
    assert at.get("download_button")
    assert any("Model card" in e.label for e in at.expander)


def test_export_int8_from_the_page(ws: Workspace, run_id: str) -> None:
    at = open_page(PAGE, active_run=run_id)
    at.segmented_control(key="deploy_format").set_value("ONNX int8")
    at.button(key="deploy_export").click().run()
    assert_clean(at)
    store = ws.store
    task = store.latest_job(run_id, "export")
    assert task is not None and task.key == "onnx-int8"
    done = wait_task(store, task.id)
    assert done.status == "completed", done.error
    at.run()
    assert_clean(at)
    assert at.segmented_control(key="deploy_format").value == "ONNX int8"  # still the choice
    table = frame_with(at, "Bundle")
    assert set(table["Bundle"]) == {"onnx-fp32", "onnx-int8"}
    manifest = json.loads((ws.home / "runs" / run_id / "export" / "onnx-int8" /
                           "manifest.json").read_text())
    assert manifest["quantization"]["pre_process"]["applied"] is True  # else it says why not
    int8 = table[table["Bundle"] == "onnx-int8"].iloc[0]
    assert int8["int8 agreement"] >= 0.95
    assert abs(int8["Acc exported"] - int8["Acc PyTorch"]) <= 0.01


def test_a_re_export_keeps_the_bundle_it_replaces(ws: Workspace, run_id: str) -> None:
    at = open_page(PAGE, active_run=run_id)
    at.segmented_control(key="deploy_format").set_value("ONNX fp32").run()
    assert any("onnx-fp32 exists" in c.value for c in at.caption)  # said before the click
    first = (ws.home / "runs" / run_id / "export" / "onnx-fp32" / "manifest.json").read_bytes()
    at.button(key="deploy_export").click().run()
    done = wait_task(ws.store, ws.store.latest_job(run_id, "export").id)
    assert done.status == "completed", done.error
    at.run()
    assert_clean(at)
    kept = list((ws.home / "runs" / run_id / "export" / ".previous").glob("onnx-fp32-*.zip"))
    assert len(kept) == 1
    with zipfile.ZipFile(kept[0]) as zf:  # the replaced bundle, whole
        assert zf.read(f"{run_id}-onnx-fp32/manifest.json") == first
    assert any(e.label.startswith("Previous bundles (1)") for e in at.expander)
    assert "onnx-fp32" in set(frame_with(at, "Bundle")["Bundle"])


def test_latency_measured_from_the_page(ws: Workspace, run_id: str) -> None:
    at = open_page(PAGE, active_run=run_id)
    assert any("Not measured" in c.value for c in at.caption)
    at.button(key="deploy_bench").click().run()
    assert_clean(at)
    store = ws.store
    done = wait_task(store, store.latest_job(run_id, "bench").id)
    assert done.status == "completed", done.error
    at.run()
    assert_clean(at)
    table = frame_with(at, "Variant")
    assert list(table["Variant"]) == ["eager", "torchscript", "onnx-fp32", "onnx-int8"]
    assert (table["p50 ms"] > 0).all() and (table["Size MB"] > 0).all()
    assert at.get("plotly_chart")


def test_start_serve_and_stop_from_the_page(ws: Workspace, run_id: str) -> None:
    at = open_page(PAGE, active_run=run_id)
    port = free_port()
    at.number_input(key="deploy_port").set_value(port)
    at.text_input(key="deploy_token").set_value("page-token")
    at.button(key="FormSubmitter:deploy_serve_form-Start the server").click().run()
    assert_clean(at)
    store = ws.store
    task = store.latest_job(run_id, "serve")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: store.get_job(task.id).message == url, timeout=60, interval=0.2,
                 message="the server to start")
        buf = io.BytesIO()
        Image.new("L", (8, 8), 255).save(buf, "PNG")
        files = {"file": ("x.png", buf.getvalue(), "image/png")}
        assert httpx.post(f"{url}/predict", files=files).status_code == 401
        ok = httpx.post(f"{url}/predict", files=files,
                        headers={"Authorization": "Bearer page-token"})
        assert ok.status_code == 200
        at.run()
        assert_clean(at)
        assert any(url in m.value for m in at.markdown)
        assert any("curl" in c.value and "Bearer" in c.value for c in at.code)
        metrics = {m.label: m.value for m in at.metric}
        assert int(metrics["Requests"]) >= 2 and int(metrics["Answered"]) >= 1
        assert int(metrics["Errors"]) >= 1  # the 401
        at.button(key="deploy_stop").click().run()
        assert_clean(at)
    finally:
        if store.get_job(task.id).is_active:
            cancel_job(store, task.id)
    stopped = store.get_job(task.id)
    assert stopped.status == "cancelled"
    wait_for(lambda: not is_alive(stopped.pid, stopped.pid_start), timeout=10)
    assert at.button(key="FormSubmitter:deploy_serve_form-Start the server")
    token = ws.home / "runs" / run_id / "serve" / "token"
    assert token.stat().st_mode & 0o077 == 0  # readable by the owner only


def test_a_failed_task_shows_its_error(ws: Workspace, run_id: str) -> None:
    store = ws.store
    task = store.create_job(run_id, "serve", [])
    store.set_job_status(task.id, "failed", error="Cannot listen on 127.0.0.1:8000")
    at = open_page(PAGE, active_run=run_id)
    assert any("Cannot listen" in e.value for e in at.error)


def test_the_page_never_imports_torch(ws: Workspace, run_id: str) -> None:
    loaded = heavy_modules_after_page(PAGE, ws.home, run_id,
                                      modules=("torch", "onnxruntime"))
    assert loaded == {"torch": False, "onnxruntime": False}
