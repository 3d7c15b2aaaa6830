"""The REST server as a real process on a free loopback port, answering real HTTP requests.

One digits run is trained and exported (ONNX fp32) once for the module; the server runs with a
bearer token, a 1 MB body cap and a concurrency limit of 2 (small on purpose, to provoke 429s).
Every server started here is killed in a ``finally``; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import io
import os
import shutil
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import ROOT, free_port, train_run, wait_for
from PIL import Image

from core.data import load_dataset
from core.deploy.export import export_run
from core.deploy.monitor import read_log, summarize
from core.models.loaded import load_run
from core.runs.store import Store

TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, "PNG")
    return buf.getvalue()


def start(cmd: list[str], cwd: Path, env: dict, log: Path) -> subprocess.Popen:
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)


def wait_healthy(url: str, proc: subprocess.Popen, log: Path, timeout: float = 60) -> None:
    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"server exited {proc.returncode}: {log.read_text()}")
        try:
            return httpx.get(f"{url}/health", timeout=2).status_code == 200
        except httpx.HTTPError:
            return False

    wait_for(up, timeout=timeout, interval=0.2, message=f"{url}/health")


def maps_torch(pid: int) -> bool:
    """Whether the process has libtorch mapped (i.e. imported torch)."""
    return "libtorch" in Path(f"/proc/{pid}/maps").read_text()


@pytest.fixture(scope="module")
def exported(ws: Path) -> tuple[str, dict]:
    run_id = train_run(ws, train={"epochs": 2})
    return run_id, export_run(run_id, ws, "onnx", latency_budget_s=0.2)


@pytest.fixture(scope="module")
def server(ws: Path, exported) -> tuple[str, subprocess.Popen]:
    run_id, _ = exported
    port = free_port()
    log = ws / "server.log"
    proc = start([sys.executable, "-m", "core", "serve", run_id, "--home", str(ws), "--port",
                  str(port), "--token", TOKEN, "--max-concurrency", "2", "--max-body-mb", "1",
                  "--timeout", "10"], ROOT, {**os.environ, "PYTHONPATH": str(ROOT)}, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        yield url, proc
    finally:
        stop(proc)


def test_health_metadata_and_docs(server, exported) -> None:
    url, proc = server
    run_id, manifest = exported
    health = httpx.get(f"{url}/health").json()
    assert health["status"] == "ok" and health["model_version"].startswith(f"{run_id}/onnx-fp32@")
    assert httpx.get(f"{url}/metadata").status_code == 401
    meta = httpx.get(f"{url}/metadata", headers=AUTH).json()
    assert meta["classes"] == [str(d) for d in range(10)]
    assert meta["input"]["shape"][1:] == [1, 8, 8] and meta["preprocess"]["modality"] == "image"
    spec = httpx.get(f"{url}/openapi.json").json()
    assert {"/predict", "/health", "/metadata"} <= set(spec["paths"])
    assert "multipart/form-data" in spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    assert httpx.get(f"{url}/docs").status_code == 200
    assert not maps_torch(proc.pid)  # the server runs on onnxruntime alone


def test_predictions_match_pytorch(ws: Path, server, exported) -> None:
    url, _ = server
    run_id, _ = exported
    loaded = load_run(run_id, ws)
    dataset = load_dataset("digits", ws)
    for i in range(5):
        img = dataset.raw("test", i)
        r = httpx.post(f"{url}/predict", files={"file": ("x.png", png(img), "image/png")},
                       headers=AUTH)
        assert r.status_code == 200, r.text
        top = r.json()["predictions"]
        assert len(top) == 3 and top[0]["probability"] >= top[1]["probability"]
        probs = loaded.predict_raw([img])[0]
        assert top[0]["index"] == int(probs.argmax())
        assert top[0]["probability"] == pytest.approx(float(probs.max()), abs=1e-4)
    raw = httpx.post(f"{url}/predict", content=png(dataset.raw("test", 0)),
                     headers={**AUTH, "Content-Type": "image/png"})
    assert raw.status_code == 200


def test_missing_or_wrong_token_is_401(server) -> None:
    url, _ = server
    body = {"file": ("x.png", png(Image.new("L", (8, 8))), "image/png")}
    assert httpx.post(f"{url}/predict", files=body).status_code == 401
    r = httpx.post(f"{url}/predict", files=body, headers={"Authorization": "Bearer nope"})
    assert r.status_code == 401 and r.headers["www-authenticate"] == "Bearer"
    assert httpx.get(f"{url}/health").json()["status"] == "ok"


def test_oversized_body_is_413_and_the_server_stays_up(server) -> None:
    url, _ = server
    big = os.urandom(2 * 1024 * 1024)
    r = httpx.post(f"{url}/predict", files={"file": ("big.png", big, "image/png")},
                   headers=AUTH, timeout=30)
    assert r.status_code == 413 and "larger than the cap" in r.json()["detail"]

    def chunks():  # no Content-Length: the cap is enforced while reading
        for _ in range(32):
            yield b"\x00" * 65536

    r = httpx.post(f"{url}/predict", content=chunks(), timeout=30,
                   headers={**AUTH, "Content-Type": "image/png"})
    assert r.status_code == 413
    assert httpx.get(f"{url}/health").json()["status"] == "ok"


def test_pixel_bomb_is_422_and_the_server_stays_up(server) -> None:
    url, _ = server
    bomb = png(Image.new("1", (20000, 20000)))
    assert len(bomb) < 100_000  # a few KB on the wire, 400 million pixels
    r = httpx.post(f"{url}/predict", files={"file": ("bomb.png", bomb, "image/png")},
                   headers=AUTH, timeout=30)
    assert r.status_code == 422 and "pixel" in r.json()["detail"]
    junk = httpx.post(f"{url}/predict", files={"file": ("x.png", b"not an image", "image/png")},
                      headers=AUTH)
    assert junk.status_code == 422 and "allowed format" in junk.json()["detail"]
    assert httpx.get(f"{url}/health").json()["status"] == "ok"


def test_100_concurrent_requests_give_answers_or_429_only(server, ws: Path) -> None:
    url, _ = server
    image = png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (512, 512),
                                                                   dtype=np.uint8)))

    async def burst() -> list:
        limits = httpx.Limits(max_connections=100)
        async with httpx.AsyncClient(limits=limits, timeout=30) as client:
            return await asyncio.gather(*[
                client.post(f"{url}/predict", headers=AUTH,
                            files={"file": ("x.png", image, "image/png")})
                for _ in range(100)], return_exceptions=True)

    start_time = time.monotonic()
    responses = asyncio.run(asyncio.wait_for(burst(), 60))
    elapsed = time.monotonic() - start_time
    statuses = Counter(getattr(r, "status_code", repr(r)) for r in responses)
    assert set(statuses) <= {200, 429}, statuses
    assert statuses[200] >= 1 and statuses[429] >= 1, statuses  # the limit of 2 is deliberate
    assert elapsed < 60
    busy = next(r for r in responses if r.status_code == 429)
    assert busy.headers["retry-after"] == "1"
    assert httpx.get(f"{url}/health").json()["status"] == "ok"


def test_the_request_log_records_each_request(server, ws: Path, exported) -> None:
    url, _ = server
    run_id, _ = exported
    path = ws / "runs" / run_id / "serve" / "requests.jsonl"
    before = len(read_log(path))
    img = png(load_dataset("digits", ws).raw("test", 3))
    httpx.post(f"{url}/predict", files={"file": ("x.png", img, "image/png")}, headers=AUTH)
    records = wait_for(lambda: (r := read_log(path)) and len(r) > before and r, timeout=10)
    last = records[-1]
    assert last["status"] == 200 and last["latency_ms"] > 0 and 0 < last["confidence"] <= 1
    assert last["class"] in [str(d) for d in range(10)] and last["time"] > time.time() - 60
    stats = summarize(records)
    assert stats["requests"] == len(records) and stats["answered"] >= 1
    state = (ws / "runs" / run_id / "serve" / "server.json").read_text()
    assert url in state


def test_a_tampered_bundle_is_refused_at_start(ws: Path, exported, tmp_path: Path) -> None:
    run_id, manifest = exported
    folder = Path(manifest["path"])
    copy = tmp_path / "bundle"
    shutil.copytree(folder, copy)
    model = copy / "model.onnx"
    model.write_bytes(model.read_bytes().replace(b"logits", b"logitz", 1))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "core", "serve", str(copy), "--port",
                          str(free_port()), "--home", str(ws)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "refused" in out.stderr


def test_a_bundle_not_recorded_by_the_workspace_is_refused(ws: Path, exported) -> None:
    """A bundle folder swapped in a run's export folder, with a self-consistent manifest."""
    from core.deploy.bundle import write_manifest
    from core.deploy.runtime import read_manifest
    from core.deploy.serve import load_model

    run_id, manifest = exported
    folder = Path(manifest["path"]).with_name("onnx-forged")
    shutil.copytree(manifest["path"], folder)
    try:
        forged = read_manifest(folder)
        forged.pop("files")
        write_manifest(folder, {**forged, "bundle": "onnx-forged"})
        with pytest.raises(Exception, match="not the bundle this workspace exported"):
            load_model(run_id, ws, "onnx-forged")
    finally:
        shutil.rmtree(folder)


def test_the_bundle_serves_on_its_own_without_the_project(ws: Path, exported,
                                                          tmp_path: Path) -> None:
    """The bundle's serve.py, outside the repository and without torch (as in its Docker)."""
    _, manifest = exported
    copy = tmp_path / "elsewhere"
    shutil.copytree(manifest["path"], copy)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    log = tmp_path / "standalone.log"
    proc = start([sys.executable, "-s", "serve.py", "--port", str(port), "--max-concurrency",
                  "2"], copy, env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        img = png(load_dataset("digits", ws).raw("test", 0))
        r = httpx.post(f"{url}/predict", files={"file": ("x.png", img, "image/png")})
        assert r.status_code == 200 and len(r.json()["predictions"]) == 3
        assert not maps_torch(proc.pid)
    finally:
        stop(proc)
    assert (copy / "requests.jsonl").is_file()


def test_serve_as_a_background_task_starts_and_stops(ws: Path, exported) -> None:
    """What the Deploy page does: launch ``serve`` as a task, then cancel it."""
    from core.runs.processes import is_alive
    from core.runs.tasks import cancel_task, launch_task

    run_id, _ = exported
    store = Store(ws)
    port = free_port()
    task = launch_task(store, run_id, "serve", ["serve", run_id, "--port", str(port)])
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: store.get_task(task.id).message == url, timeout=60,
                 interval=0.2, message="the task reports its URL")
        assert store.get_task(task.id).status == "running"
        assert httpx.get(f"{url}/health").status_code == 200
    finally:
        cancel_task(store, task.id)
    task = store.get_task(task.id)
    assert task.status == "interrupted"
    wait_for(lambda: not is_alive(task.pid, task.pid_start), timeout=10)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/health", timeout=2)


def test_tabular_bundle_takes_json_features(tmp_path_factory) -> None:
    """An MLP on iris: JSON features in, top-k out (in-process app, FastAPI's test client)."""
    from fastapi.testclient import TestClient

    from core.deploy.runtime import Settings
    from core.deploy.serve import build_app, load_model

    home = tmp_path_factory.mktemp("serve_iris")
    run_id = train_run(home, data={"dataset": "iris"}, model={"name": "mlp"},
                       train={"epochs": 5})
    export_run(run_id, home, "onnx", latency_budget_s=0.2)
    model, _ = load_model(run_id, home)
    client = TestClient(build_app(model, Settings(log_path=tmp_path_factory.mktemp("l") / "r")))
    row = load_dataset("iris", home).raw("test", 0).tolist()
    r = client.post("/predict", json={"features": row})
    assert r.status_code == 200 and r.json()["predictions"][0]["class"] in model.classes
    want = load_run(run_id, home).predict_raw([np.asarray(row, np.float32)])[0]
    assert r.json()["predictions"][0]["index"] == int(want.argmax())
    assert client.post("/predict", json={"features": [1, 2]}).status_code == 422
    assert client.post("/predict", content=b"{", headers={
        "Content-Type": "application/json"}).status_code == 422
