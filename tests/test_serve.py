"""The REST server as a real process on a free loopback port, answering real HTTP requests.

One digits run is trained and exported (ONNX fp32) once for the module; the main server runs
with a bearer token, a 1 MB body cap, 2 inference slots and room for 8 admitted requests (small
on purpose, to provoke 429s); a second one runs at the default limits, to hold a burst.
Every server started here is killed in a ``finally``; every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from conftest import ROOT, free_port, run_cli, train_run, wait_for
from PIL import Image

from core.data import load_dataset
from core.deploy.export import export_run
from core.deploy.monitor import read_log, summarize
from core.models.loaded import load_run
from core.workspace import Workspace

TOKEN = "test-token-123"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
STALL_S = 3  # the server's body and header deadlines


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
def exported(ws: Workspace) -> tuple[str, dict]:
    run_id = train_run(ws, train={"epochs": 2})
    return run_id, export_run(ws, run_id, "onnx", latency_budget_s=0.2)


@pytest.fixture(scope="module")
def server(ws: Workspace, exported) -> tuple[str, subprocess.Popen]:
    run_id, _ = exported
    port = free_port()
    log = ws.home / "server.log"
    proc = start([sys.executable, "-m", "core", "serve", run_id, "--home", str(ws.home), "--port",
                  str(port), "--token", TOKEN, "--max-concurrency", "2", "--max-queue", "8",
                  "--max-body-mb", "1",
                  "--timeout", "10", "--body-timeout", str(STALL_S), "--header-timeout",
                  str(STALL_S)], ROOT, {**os.environ, "PYTHONPATH": str(ROOT)}, log)
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


def test_predictions_match_pytorch(ws: Workspace, server, exported) -> None:
    url, _ = server
    run_id, _ = exported
    loaded = load_run(ws, run_id)
    dataset = load_dataset(ws, "digits")
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


def burst(url: str, image: bytes, n: int, headers: dict | None = None) -> list:
    """``n`` concurrent POSTs of ``image``, each on its own connection; responses or errors."""
    async def send() -> list:
        limits = httpx.Limits(max_connections=n)
        async with httpx.AsyncClient(limits=limits, timeout=60) as client:
            return await asyncio.gather(*[
                client.post(f"{url}/predict", headers=headers or AUTH,
                            files={"file": ("x.png", image, "image/png")})
                for _ in range(n)], return_exceptions=True)

    return asyncio.run(asyncio.wait_for(send(), 90))


def noise_png(size: int = 512) -> bytes:
    return png(Image.fromarray(np.random.default_rng(0).integers(0, 255, (size, size),
                                                                   dtype=np.uint8)))


def test_100_concurrent_requests_give_answers_or_429_only(server) -> None:
    """Beyond 8 admitted requests the server sheds at once: real overload is still a 429."""
    url, _ = server
    responses = burst(url, noise_png(), 100)
    statuses = Counter(getattr(r, "status_code", repr(r)) for r in responses)
    assert set(statuses) <= {200, 429}, statuses
    assert statuses[200] >= 1 and statuses[429] >= 1, statuses  # the cap of 8 is deliberate
    busy = next(r for r in responses if r.status_code == 429)
    assert busy.headers["retry-after"] == "1" and "busy" in busy.json()["detail"]
    assert httpx.get(f"{url}/health").json()["status"] == "ok"


@pytest.fixture(scope="module")
def bundle_copy(exported, tmp_path_factory) -> str:
    """The bundle copied out of the run: its servers keep the run's state file and log alone."""
    folder = tmp_path_factory.mktemp("burst") / "bundle"
    shutil.copytree(exported[1]["path"], folder)
    return str(folder)


@contextlib.contextmanager
def serve_process(ws: Workspace, target: str, *flags: str) -> Iterator[str]:
    """A ``serve`` process of ``target`` with ``flags``, as its URL; stopped on exit."""
    port = free_port()
    log = ws.home / f"server-{port}.log"
    proc = start([sys.executable, "-m", "core", "serve", target, "--home", str(ws.home),
                  "--port", str(port), "--log", str(log.with_suffix(".jsonl")), *flags], ROOT,
                 {**os.environ, "PYTHONPATH": str(ROOT)}, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        yield url
    finally:
        stop(proc)


@pytest.fixture(scope="module")
def default_server(ws: Workspace, bundle_copy: str):
    with serve_process(ws, bundle_copy) as url:
        yield url


def test_a_burst_of_200_is_answered_at_the_default_limits(default_server, ws: Workspace) -> None:
    """200 concurrent requests: none shed, none failed; they waited in the queue and ran in
    micro-batches (fewer onnxruntime calls than requests), each answer still its own image's."""
    dataset = load_dataset(ws, "digits")
    images = [png(dataset.raw("test", i)) for i in range(4)]
    single = [httpx.post(f"{default_server}/predict",
                         files={"file": ("x.png", image, "image/png")}).json()
              for image in images]
    before = httpx.get(f"{default_server}/health").json()["batching"]

    async def send() -> list:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=200),
                                     timeout=60) as client:
            return await asyncio.gather(*[
                client.post(f"{default_server}/predict",
                            files={"file": ("x.png", images[i % 4], "image/png")})
                for i in range(200)], return_exceptions=True)

    responses = asyncio.run(asyncio.wait_for(send(), 90))
    statuses = Counter(getattr(r, "status_code", repr(r)) for r in responses)
    assert statuses == {200: 200}, statuses
    for i, r in enumerate(responses):  # batching never mixes up whose answer is whose
        assert r.json()["predictions"][0]["index"] == single[i % 4]["predictions"][0]["index"]
    after = httpx.get(f"{default_server}/health").json()
    runs = after["batching"]["batches"] - before["batches"]
    assert after["batching"]["batched"] - before["batched"] == 200 and runs < 200
    assert after["shed"] == 0 and after["admitted"] == 0


def test_a_request_that_waits_past_the_queue_timeout_is_429(ws: Workspace,
                                                            bundle_copy: str) -> None:
    """One slot, batches of one, a queue timeout of 1 ms: most of a burst cannot get a slot in
    time and is withdrawn with 429 (never computed); the rest are answered."""
    with serve_process(ws, bundle_copy, "--max-concurrency", "1", "--max-batch", "1",
                       "--queue-timeout", "0.001") as url:
        responses = burst(url, noise_png(256), 200, headers={})
        statuses = Counter(getattr(r, "status_code", repr(r)) for r in responses)
        assert set(statuses) <= {200, 429} and statuses[429] >= 1, statuses
        late = next(r for r in responses if r.status_code == 429)
        assert "no inference slot" in late.json()["detail"]
        health = wait_for(lambda: (h := httpx.get(f"{url}/health").json())["batching"][
            "batched"] == statuses[200] and h, timeout=10)  # the withdrawn never ran
        assert health["shed"] == statuses[429]


def stalled(url: str, request: bytes) -> socket.socket:
    """A raw connection that sends ``request`` (headers, perhaps a bit of body) and stalls."""
    host, port = url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=STALL_S + 10)
    sock.sendall(request)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    try:
        while chunk := sock.recv(65536):
            data += chunk
    except ConnectionResetError:
        pass
    return data


def test_clients_that_stall_their_bodies_take_no_slot(server) -> None:
    """4 clients send headers and stall their bodies; with 2 slots, /predict still answers 200,
    and each stalled client gets 408 once the body deadline passes."""
    url, _ = server
    head = (f"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {TOKEN}\r\n"
            "Content-Type: image/png\r\nContent-Length: 50000\r\n\r\n").encode()
    socks = [stalled(url, head + b"\x89PNG" * 10) for _ in range(4)]
    try:
        time.sleep(0.5)  # the server has read all four heads by now
        start_time = time.monotonic()
        img = png(Image.new("L", (8, 8), 128))
        for _ in range(3):
            r = httpx.post(f"{url}/predict", files={"file": ("x.png", img, "image/png")},
                           headers=AUTH, timeout=STALL_S + 10)
            assert r.status_code == 200, r.text
        assert time.monotonic() - start_time < STALL_S  # answered while the 4 still stall
        answers = [read_until_closed(sock) for sock in socks]
    finally:
        for sock in socks:
            sock.close()
    assert all(a.startswith(b"HTTP/1.1 408") for a in answers), answers
    assert httpx.get(f"{url}/health").json()["status"] == "ok"


def test_slow_or_missing_headers_are_cut_off(server) -> None:
    """A connection that never finishes its headers (one header a second), or sends nothing,
    is closed after the header deadline instead of being held for ever."""
    url, _ = server
    silent = stalled(url, b"")
    trickle = stalled(url, b"POST /predict HTTP/1.1\r\nHost: 127.0.0.1\r\n")
    start_time = time.monotonic()
    try:
        for i in range(3 * STALL_S):
            try:
                trickle.sendall(f"X-Slow-{i}: 1\r\n".encode())
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(1)
        assert read_until_closed(trickle) == b""  # closed without an answer
        assert time.monotonic() - start_time < STALL_S + 3
        assert read_until_closed(silent) == b""
        assert time.monotonic() - start_time < STALL_S + 3
    finally:
        silent.close()
        trickle.close()
    assert httpx.get(f"{url}/health").json()["status"] == "ok"


def test_the_request_log_records_each_request(server, ws: Workspace, exported) -> None:
    url, _ = server
    run_id, _ = exported
    path = ws.home / "runs" / run_id / "serve" / "requests.jsonl"
    before = len(read_log(path))
    img = png(load_dataset(ws, "digits").raw("test", 3))
    httpx.post(f"{url}/predict", files={"file": ("x.png", img, "image/png")}, headers=AUTH)
    records = wait_for(lambda: (r := read_log(path)) and len(r) > before and r, timeout=10)
    last = records[-1]
    assert last["status"] == 200 and last["latency_ms"] > 0 and 0 < last["confidence"] <= 1
    assert last["class"] in [str(d) for d in range(10)] and last["time"] > time.time() - 60
    stats = summarize(records)
    assert stats["requests"] == len(records) and stats["answered"] >= 1
    state = (ws.home / "runs" / run_id / "serve" / "server.json").read_text()
    assert url in state


def test_a_tampered_bundle_is_refused_at_start(ws: Workspace, exported, tmp_path: Path) -> None:
    run_id, manifest = exported
    folder = Path(manifest["path"])
    copy = tmp_path / "bundle"
    shutil.copytree(folder, copy)
    model = copy / "model.onnx"
    model.write_bytes(model.read_bytes().replace(b"logits", b"logitz", 1))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run([sys.executable, "-m", "core", "serve", str(copy), "--port",
                          str(free_port()), "--home", str(ws.home)], cwd=ROOT, env=env,
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and "refused" in out.stderr


def test_a_bundle_not_recorded_by_the_workspace_is_refused(ws: Workspace, exported) -> None:
    """A bundle folder swapped in a run's export folder, with a self-consistent manifest."""
    from core.deploy.runtime.manifest import read_manifest, write_manifest
    from core.deploy.serve import load_model

    run_id, manifest = exported
    folder = Path(manifest["path"]).with_name("onnx-forged")
    shutil.copytree(manifest["path"], folder)
    try:
        forged = read_manifest(folder)
        forged.pop("files")
        write_manifest(folder, {**forged, "bundle": "onnx-forged"})
        with pytest.raises(Exception, match="not the bundle this workspace exported"):
            load_model(ws, run_id, "onnx-forged")
    finally:
        shutil.rmtree(folder)


def test_ids_that_leave_the_workspace_are_refused_before_any_path(ws: Workspace, exported,
                                                                  tmp_path: Path) -> None:
    """``serve`` / ``bundles`` with ``../../OTHER/runs/ID``: one line, exit 2, nothing written
    in the other workspace (whose run holds a real bundle)."""
    run_id, _ = exported
    other = tmp_path / "OTHER" / "runs" / run_id
    shutil.copytree(ws.home / "runs" / run_id / "export", other / "export")
    escape = os.path.relpath(other, ROOT)  # relative to where the CLI runs
    assert escape.startswith("..") and (ROOT / escape / "export" / "onnx-fp32").is_dir()
    cases = [(["serve", escape], "Invalid run name"), (["bundles", escape], "Invalid run name"),
             (["serve", run_id, "--bundle", "../onnx-fp32"], "Invalid bundle name"),
             (["bundles", "20990101-000000-abcdef"], "No run 20990101-000000-abcdef"),
             (["serve", run_id, "--max-concurrency", "0"], "--max-concurrency")]
    for argv, message in cases:
        out = run_cli(*argv, "--port", str(free_port()), home=ws.home, check=False, timeout=60) \
            if argv[0] == "serve" else run_cli(*argv, home=ws.home, check=False, timeout=60)
        assert out.returncode == 2, (argv, out.stderr)
        assert out.stderr.strip().count("\n") == 0 and message in out.stderr, out.stderr
    assert sorted(p.name for p in other.iterdir()) == ["export"]  # no serve/ log written there


def test_a_bundle_folder_from_elsewhere_logs_inside_the_workspace(ws: Workspace, exported,
                                                                  tmp_path: Path) -> None:
    """An explicit bundle folder may be served: it is verified, and its request log goes to
    ``<home>/serve/<digest>/``, never into that folder."""
    _, manifest = exported
    folder = tmp_path / "OTHER" / "onnx-fp32"
    shutil.copytree(manifest["path"], folder)
    port = free_port()
    log = tmp_path / "outside.log"
    proc = start([sys.executable, "-m", "core", "serve", str(folder), "--home", str(ws.home),
                  "--port", str(port)], ROOT, {**os.environ, "PYTHONPATH": str(ROOT)}, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        img = png(load_dataset(ws, "digits").raw("test", 1))
        assert httpx.post(f"{url}/predict", files={"file": ("x.png", img, "image/png")},
                          ).status_code == 200
    finally:
        stop(proc)
    logs = list((ws.home / "serve").glob("*/requests.jsonl"))
    assert len(logs) == 1 and read_log(logs[0])[-1]["status"] == 200
    assert not list(folder.parent.rglob("requests.jsonl"))


def test_the_bundle_serves_on_its_own_without_the_project(ws: Workspace, exported,
                                                          tmp_path: Path) -> None:
    """The bundle's runtime (``python -m runtime``; ``serve.py`` launches the same), outside the
    repository and without torch, as in its Docker image."""
    _, manifest = exported
    copy = tmp_path / "elsewhere"
    shutil.copytree(manifest["path"], copy)
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    log = tmp_path / "standalone.log"
    launcher = subprocess.run([sys.executable, "-s", "serve.py", "--help"], cwd=copy, env=env,
                              capture_output=True, text=True, timeout=60)
    assert launcher.returncode == 0 and "--header-timeout" in launcher.stdout
    proc = start([sys.executable, "-s", "-m", "runtime", "--port", str(port),
                  "--max-concurrency", "2"], copy, env, log)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, proc, log)
        img = png(load_dataset(ws, "digits").raw("test", 0))
        r = httpx.post(f"{url}/predict", files={"file": ("x.png", img, "image/png")})
        assert r.status_code == 200 and len(r.json()["predictions"]) == 3
        assert not maps_torch(proc.pid)
    finally:
        stop(proc)
    assert (copy / "requests.jsonl").is_file()


def test_serve_as_a_background_task_starts_and_stops(ws: Workspace, exported) -> None:
    """What the Deploy page does: launch ``serve`` as a task, then cancel it."""
    from core.runs import cancel_job, submit
    from core.runs.jobs import python_core
    from core.runs.processes import is_alive

    run_id, _ = exported
    store = ws.store
    port = free_port()
    task = submit(store, run_id, "serve", python_core("serve", run_id, "--port", str(port)))
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: store.get_job(task.id).message == url, timeout=60,
                 interval=0.2, message="the task reports its URL")
        assert store.get_job(task.id).status == "running"
        assert httpx.get(f"{url}/health").status_code == 200
    finally:
        cancel_job(store, task.id)
    task = store.get_job(task.id)
    assert task.status == "cancelled"  # one model of background work: a cancel says so
    wait_for(lambda: not is_alive(task.pid, task.pid_start), timeout=10)
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{url}/health", timeout=2)
