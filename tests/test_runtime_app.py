"""The runtime's small parts, in process: settings checked once, manifest names that could leave
a bundle refused, and a tabular bundle served by the app (FastAPI's test client)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import train_run

from core.data import load_dataset
from core.deploy.export import export_run
from core.deploy.runtime.errors import SettingsError
from core.deploy.runtime.manifest import _safe_name
from core.deploy.runtime.settings import Settings
from core.models.loaded import load_run
from core.workspace import Workspace


@pytest.mark.parametrize("bad", [{"max_concurrency": 0}, {"top_k": 0}, {"timeout_s": 0},
                                 {"body_timeout_s": -1}, {"header_timeout_s": 0},
                                 {"max_body_bytes": 0}, {"threads": -1}, {"max_queue": 0},
                                 {"queue_timeout_s": 0}, {"max_batch": 0},
                                 {"batch_window_ms": -1}])
def test_settings_out_of_range_are_refused(bad: dict) -> None:
    with pytest.raises(SettingsError):
        Settings(**bad)


@pytest.mark.parametrize("name,safe", [
    ("model.onnx", True), ("runtime/app.py", True), ("../model.onnx", False),
    ("runtime/../../x", False), ("/etc/passwd", False), ("runtime//app.py", False),
    ("runtime\\app.py", False), ("manifest.json", False), ("", False), ("./x", False),
    (3, False)])
def test_manifest_names_cannot_leave_the_bundle(name, safe: bool) -> None:
    assert _safe_name(name) is safe


def test_tabular_bundle_takes_json_features(tmp_path_factory) -> None:
    """An MLP on iris: JSON features in, top-k out (in-process app, FastAPI's test client)."""
    from fastapi.testclient import TestClient

    from core.deploy.serve import build_app, load_model

    with Workspace.open(tmp_path_factory.mktemp("serve_iris")) as ws:
        run_id = train_run(ws, data={"dataset": "iris"}, model={"name": "mlp"},
                           train={"epochs": 5})
        export_run(ws, run_id, "onnx", latency_budget_s=0.2)
        model, _ = load_model(ws, run_id)
        log = tmp_path_factory.mktemp("l") / "r"
        client = TestClient(build_app(model, Settings(log_path=log)))
        row = load_dataset(ws, "iris").raw("test", 0).tolist()
        r = client.post("/predict", json={"features": row})
        assert r.status_code == 200 and r.json()["predictions"][0]["class"] in model.classes
        want = load_run(ws, run_id).predict_raw([np.asarray(row, np.float32)])[0]
        assert r.json()["predictions"][0]["index"] == int(want.argmax())
        assert client.post("/predict", json={"features": [1, 2]}).status_code == 422
        # Python's json reads NaN
        nan = client.post("/predict", content=b'{"features": [NaN, 1, 2, 3]}',
                          headers={"Content-Type": "application/json"})
        assert nan.status_code == 422 and "finite" in nan.json()["detail"]
        assert client.post("/predict", content=b"{", headers={
            "Content-Type": "application/json"}).status_code == 422
