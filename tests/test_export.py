"""Export: ONNX parity at batch 1 and 8, int8 within 1 point of fp32 (digits and shapes),
TorchScript, the bundle (manifest, zip, model card), the numpy preprocessing of the served code
against the project's, tampered bundles refused, a failed check publishes nothing, and the
latency comparison of the four forms.

Two small runs are trained once for the module (digits: 2 epochs; shapes at 16x16: 4 epochs).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import onnx
import pytest
from conftest import ROOT, run_json, train_run, wait_for

from core.data import get_info, load_dataset
from core.data.transforms import make_preprocess, preprocess_spec
from core.deploy import runtime
from core.deploy.bundle import RUNTIME_DIR, list_bundles, make_zip, verify
from core.deploy.export import benchmark_run, export_run
from core.errors import ExportFailed, InvalidBundle, InvalidConfig
from core.models.loaded import load_run
from core.workspace import Workspace


@pytest.fixture(scope="module")
def digits(ws: Workspace) -> str:
    return train_run(ws, train={"epochs": 2})


@pytest.fixture(scope="module")
def shapes(ws: Workspace) -> str:
    return train_run(ws, data={"dataset": "shapes", "image_size": 16},
                     train={"epochs": 4, "lr": 3e-3})


@pytest.fixture(scope="module")
def onnx_fp32(ws: Workspace, digits: str) -> dict:
    """The ONNX fp32 export, made by the CLI (``--json``) as a user would."""
    return run_json("export", digits, "--format", "onnx", "--latency-budget", "0.5", home=ws.home)


def test_onnx_export_agrees_with_pytorch_at_batch_1_and_8(ws: Workspace, digits: str,
                                                          onnx_fp32: dict) -> None:
    parity = onnx_fp32["checks"]["onnx_fp32_parity"]
    assert parity["batch_1"] <= 1e-4 and parity["batch_8"] <= 1e-4 and parity["passed"]
    assert onnx_fp32["exporter"] in ("dynamo", "legacy")
    assert onnx_fp32["checks"]["onnx_checker"] is True
    folder = Path(onnx_fp32["path"])
    model = onnx.load(str(folder / "model.onnx"))
    onnx.checker.check_model(model)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param  # dynamic batch

    # Independently: onnxruntime on the bundle's file vs the run's PyTorch model, real samples.
    import onnxruntime as ort
    import torch

    loaded = load_run(ws, digits)
    dataset = load_dataset(ws, "digits")
    session = ort.InferenceSession(str(folder / "model.onnx"), providers=["CPUExecutionProvider"])
    for batch in (1, 8):
        x = torch.stack([loaded.preprocess(dataset.raw("test", i)) for i in range(batch)])
        got = session.run(None, {"input": x.numpy()})[0]
        with torch.no_grad():
            want = loaded.model(x).numpy()
        assert got.shape == (batch, 10)
        assert np.abs(got - want).max() <= 1e-4
    acc = onnx_fp32["metrics"]["accuracy"]
    assert acc["onnx_fp32"] == pytest.approx(acc["pytorch"], abs=1e-9)
    assert {r["variant"] for r in onnx_fp32["latency"]} == {"eager", "onnx-fp32"}


def test_the_bundle_is_complete_hashed_and_zipped(ws: Workspace, digits: str,
                                                  onnx_fp32: dict) -> None:
    folder = Path(onnx_fp32["path"])
    manifest = verify(folder)
    shipped = {f"runtime/{p.name}" for p in RUNTIME_DIR.glob("*.py")}  # the runtime, whole
    assert "runtime/__main__.py" in shipped and "runtime/preprocess.py" in shipped
    expected = {"model.onnx", "labels.json", "preprocess.json", "reference.json",
                "model_card.md", "Dockerfile", "requirements.txt", "serve.py"} | shipped
    assert set(manifest["files"]) == expected
    assert json.loads((folder / "labels.json").read_text()) == [str(d) for d in range(10)]
    assert json.loads((folder / "preprocess.json").read_text()) == preprocess_spec(
        get_info(ws, "digits"), 8)
    card = (folder / "model_card.md").read_text()
    assert "onnx fp32 parity" in card and "p50 ms" in card and "digits" in card
    pins = [line.split("==")[0] for line in (folder / "requirements.txt").read_text().splitlines()
            if line and not line.startswith("#")]
    assert "onnxruntime" in pins and "torch" not in pins and "torchvision" not in pins
    assert "FROM python" in (folder / "Dockerfile").read_text()
    with zipfile.ZipFile(onnx_fp32["zip"]) as zf:
        names = {n.split("/", 1)[1] for n in zf.namelist()}
    assert names == expected | {"manifest.json"}
    for name in shipped:  # byte for byte the project's own runtime
        assert (folder / name).read_bytes() == (RUNTIME_DIR.parent / name).read_bytes()
    assert [b["bundle"] for b in list_bundles(ws, digits)] == ["onnx-fp32"]
    events = ws.store.get_events(digits, kind="export")
    assert events[-1].data["manifest_sha256"] == runtime.sha256_file(folder / "manifest.json")


@pytest.mark.parametrize("which", ["digits", "shapes"])
def test_int8_is_within_one_point_of_fp32(ws: Workspace, which: str, request) -> None:
    run_id = request.getfixturevalue(which)
    manifest = export_run(ws, run_id, "onnx", "int8", latency_budget_s=0.3)
    acc = manifest["metrics"]["accuracy"]
    assert set(acc) == {"pytorch", "onnx_fp32", "onnx_int8"}
    assert abs(acc["onnx_int8"] - acc["onnx_fp32"]) <= 0.01, acc
    quant = manifest["quantization"]
    assert quant["format"] == "QDQ" and quant["per_channel"] is True
    assert quant["calibration_split"] == "train" and 100 <= quant["calibration_samples"] <= 300
    assert set(manifest["files"]) >= {"model.int8.onnx"} and "model.onnx" not in manifest["files"]
    fp32_size = sum(p.numel() * 4 for p in load_run(ws, run_id).model.state_dict().values())
    assert manifest["files"]["model.int8.onnx"]["bytes"] < fp32_size / 2.5
    assert manifest["checks"]["onnx_int8_vs_pytorch"]["top1_agreement"] >= 0.95


def test_torchscript_export(ws: Workspace, digits: str) -> None:
    manifest = export_run(ws, digits, "torchscript", latency_budget_s=0.3)
    parity = manifest["checks"]["torchscript_parity"]
    assert parity["batch_1"] <= 1e-4 and parity["batch_8"] <= 1e-4
    assert manifest["model_file"] == "model.pt"
    assert "serve.py" not in manifest["files"]  # the server runs ONNX bundles only
    with pytest.raises(runtime.BundleError, match="ONNX bundles only"):
        runtime.BundleModel(manifest["path"])


@pytest.mark.parametrize("dataset,size", [("digits", 8), ("digits", 20), ("shapes", 64),
                                          ("shapes", 24)])
def test_served_preprocessing_matches_the_project(ws: Workspace, dataset: str, size: int) -> None:
    info = get_info(ws, dataset)
    data = load_dataset(ws, dataset)
    spec = json.loads(json.dumps(preprocess_spec(info, size)))  # as read from preprocess.json
    core = make_preprocess(info, size)
    for i in range(0, data.size("test"), max(1, data.size("test") // 25)):
        img = data.raw("test", i)
        want = core(img).numpy()
        got = runtime.image_array(runtime.to_mode(img, spec["mode"]), spec)
        assert got.dtype == np.float32 and got.shape == want.shape
        assert np.abs(got - want).max() <= 1e-5
    rgba = data.raw("test", 0).convert("RGBA")  # alpha is composited on white by both
    assert np.abs(runtime.image_array(runtime.to_mode(rgba, spec["mode"]), spec)
                  - core(rgba).numpy()).max() <= 1e-5


def test_served_feature_scaling_matches_the_project(ws: Workspace) -> None:
    info = get_info(ws, "iris")
    data = load_dataset(ws, "iris")
    spec = json.loads(json.dumps(preprocess_spec(info)))
    core = make_preprocess(info)
    for i in range(data.size("test")):
        row = data.raw("test", i)
        assert np.abs(runtime.feature_array(row.tolist(), spec) - core(row).numpy()).max() \
            <= 1e-5
    named = dict(zip(info.feature_names, data.raw("test", 0).tolist(), strict=True))
    assert np.allclose(runtime.feature_array(named, spec), core(data.raw("test", 0)).numpy())
    with pytest.raises(runtime.InputError, match="Expected 4"):
        runtime.feature_array([1.0, 2.0], spec)


def test_a_tampered_bundle_is_refused(tmp_path: Path, onnx_fp32: dict) -> None:
    original = Path(onnx_fp32["path"])
    for name, tamper in [
        ("model.onnx", lambda p: p.write_bytes(p.read_bytes()[:-1] + b"\x00")),
        ("labels.json", lambda p: p.write_text('["a","b","c","d","e","f","g","h","i","j"]')),
        ("manifest.json", lambda p: p.write_text(p.read_text().replace("lab2market", "other"))),
        ("manifest.json", lambda p: p.write_text(p.read_text().replace('"model.onnx"',
                                                                       '"../model.onnx"'))),
        ("runtime/preprocess.py", lambda p: p.write_text(p.read_text() + "\n# edited\n")),
        ("manifest.json", lambda p: p.write_text(p.read_text().replace(
            '"runtime/app.py"', '"runtime/../../app.py"'))),
    ]:
        copy = tmp_path / f"copy-{name}-{len(list(tmp_path.iterdir()))}"
        shutil.copytree(original, copy)
        tamper(copy / name)
        with pytest.raises(InvalidBundle, match="refused|not an exported"):
            verify(copy)
        with pytest.raises(runtime.BundleError):
            runtime.BundleModel(copy)
    copy = tmp_path / "missing"
    shutil.copytree(original, copy)
    (copy / "preprocess.json").unlink()
    with pytest.raises(InvalidBundle, match="missing"):
        verify(copy)


def test_a_failed_parity_check_publishes_nothing(ws: Workspace, digits: str, monkeypatch) -> None:
    import core.deploy.export

    before = {b["bundle"]: b["created_at"] for b in list_bundles(ws, digits)}
    monkeypatch.setattr(core.deploy.export, "ort_logits",
                        lambda session, x: np.full((len(x), 10), 9.0, np.float32))
    with pytest.raises(ExportFailed, match="disagrees with PyTorch"):
        export_run(ws, digits, "onnx")
    after = {b["bundle"]: b["created_at"] for b in list_bundles(ws, digits)}
    assert after == before
    assert not [p for p in (ws.home / "runs" / digits / "export").iterdir()
                if p.name.startswith(".staging")]


def test_a_killed_export_lists_nothing_and_its_leftovers_are_removed(ws: Workspace,
                                                                     digits: str) -> None:
    """SIGKILL mid-export: no half bundle is listed; the next export removes what it left
    (but not the staging folder of an export still running)."""
    export = ws.home / "runs" / digits / "export"
    before = run_json("bundles", digits, home=ws.home)["bundles"]
    proc = subprocess.Popen([sys.executable, "-m", "core", "export", digits, "--format", "onnx",
                             "--quantize", "int8", "--latency-budget", "5", "--home", str(ws.home)],
                            cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    try:
        staging = wait_for(lambda: [p for p in export.glob(f".staging-{proc.pid}-*")
                                    if any(p.iterdir())], timeout=120,
                           message="the export's staging folder")
    finally:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(30)
    assert staging[0].is_dir()  # what the killed export left
    assert run_json("bundles", digits, home=ws.home)["bundles"] == before
    live = export / f".staging-{os.getpid()}-live"  # this process is alive: keep its folder
    live.mkdir()
    try:
        manifest = export_run(ws, digits, "torchscript", latency_budget_s=0.2)
        assert not staging[0].exists() and live.is_dir()
    finally:
        live.rmdir()
    assert not [p.name for p in export.iterdir() if p.name.startswith(".")]
    assert manifest["bundle"] in [b["bundle"] for b in list_bundles(ws, digits)]


def test_bad_choices_are_user_errors(ws: Workspace, digits: str) -> None:
    with pytest.raises(InvalidConfig, match="ONNX"):
        export_run(ws, digits, "torchscript", "int8")
    with pytest.raises(InvalidConfig, match="format"):
        export_run(ws, digits, "tflite")


def test_benchmark_compares_the_four_forms(ws: Workspace, digits: str) -> None:
    result = benchmark_run(ws, digits, budget_s=0.4)
    rows = {r["variant"]: r for r in result["rows"]}
    assert set(rows) == {"eager", "torchscript", "onnx-fp32", "onnx-int8"}
    for row in rows.values():
        assert 0 < row["p50_ms"] <= row["p95_ms"] and row["throughput_per_s"] > 0
        assert row["size_bytes"] > 0 and 0.9 < row["accuracy"] <= 1.0
    assert rows["eager"]["speedup_vs_eager"] == 1.0
    assert rows["onnx-int8"]["smaller_vs_eager"] > 2.5
    saved = json.loads((ws.home / "runs" / digits / "export" / "latency.json").read_text())
    assert saved["rows"] == result["rows"]


def test_zip_is_rebuilt_from_the_manifest(tmp_path: Path, onnx_fp32: dict) -> None:
    copy = tmp_path / "onnx-fp32"
    shutil.copytree(onnx_fp32["path"], copy)
    (copy / "stray.txt").write_text("not listed")
    with zipfile.ZipFile(make_zip(copy)) as zf:
        assert not any(n.endswith("stray.txt") for n in zf.namelist())


def test_falls_back_to_the_legacy_exporter(ws: Workspace, digits: str, monkeypatch,
                                           tmp_path: Path) -> None:
    import torch

    from core.deploy.convert import check_onnx, ort_logits, ort_session, to_onnx, torch_logits

    real = torch.onnx.export

    def no_dynamo(*args, dynamo=True, **kwargs):
        if dynamo:
            raise RuntimeError("simulated torch.export failure")
        return real(*args, dynamo=dynamo, **kwargs)

    monkeypatch.setattr(torch.onnx, "export", no_dynamo)
    loaded = load_run(ws, digits)
    x = torch.stack([loaded.preprocess(load_dataset(ws, "digits").raw("test", i))
                     for i in range(8)]).numpy()
    path = tmp_path / "legacy.onnx"
    assert to_onnx(loaded.model, torch.from_numpy(x[:2]), path) == "legacy"
    assert isinstance(check_onnx(path)["input"]["shape"][0], str)
    assert np.abs(ort_logits(ort_session(path), x) - torch_logits(loaded.model, x)).max() <= 1e-4
