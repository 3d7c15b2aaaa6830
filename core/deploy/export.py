"""Export a run: ONNX (fp32 or int8) or TorchScript, checked, measured and bundled.

``export_run`` loads the run's best checkpoint (``core.models.loaded.load_run``), converts it,
checks it (``onnx.checker``; the exported model against PyTorch on real test samples at batch 1
and 8, fp32 within 1e-4), quantizes it when asked (static int8, calibrated on training samples),
measures test accuracy of every form side by side and the latency of the exported form against
eager PyTorch, then writes a bundle (``core.deploy.bundle``). ``benchmark_run`` compares all
four forms (eager, TorchScript, ONNX fp32, ONNX int8) on one run.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from core.analyze.ensemble import is_ensemble
from core.deploy import bundle as bundles
from core.deploy.card import dockerfile, model_card, requirements
from core.deploy.convert import (
    PARITY_TOLERANCE,
    check_onnx,
    check_parity,
    load_torchscript,
    ort_logits,
    ort_session,
    parity,
    to_onnx,
    to_torchscript,
    torch_logits,
)
from core.deploy.ensemble_export import add_to_manifest
from core.deploy.latency import Variant, add_accuracy, add_ratios, build_variants, measure
from core.deploy.runtime.manifest import MANIFEST, sha256_file, write_manifest
from core.errors import InvalidConfig
from core.models.loaded import LoadedRun, load_run
from core.progress import ProgressFn
from core.workspace import Workspace

log = logging.getLogger(__name__)

CALIBRATION_SAMPLES = 200
MAX_EVAL_SAMPLES = 2000
MAX_EVAL_BYTES = 256 * 1024**2


def export_run(ws: Workspace, run_id: str, fmt: str = "onnx",
               quantize: str | None = None, calibration: int = CALIBRATION_SAMPLES,
               latency_budget_s: float = 2.0, progress: ProgressFn | None = None) -> dict[str, Any]:
    """Export, check and bundle a run; returns the bundle's manifest (plus ``path``, ``zip``)."""
    _check_choice(fmt, quantize)
    step = _stepper(progress, 7 if quantize else 6)
    step("loading the run")
    loaded = load_run(ws, run_id)
    data = EvalData.of(loaded, calibration if quantize else 0)
    name = bundles.bundle_name(fmt, quantize)
    bundles.clean_leftovers(ws, run_id)
    staging = bundles.staging_dir(ws, run_id)
    try:
        step(f"exporting {name}")
        if fmt == "onnx":
            manifest, served = _onnx(loaded, data, staging, quantize, step)
        else:
            manifest, served = _torchscript(loaded, data, staging, step)
        step("measuring latency")
        rows = measure([_eager(loaded), served], data.sample_shape, budget_s=latency_budget_s)
        add_ratios(rows)
        manifest["latency"] = rows
        step("writing the bundle")
        manifest = _write_bundle(loaded, data, staging, name, manifest, served)
        target = bundles.export_dir(ws, run_id) / name
        # Recorded first: a bundle in place is always one the workspace knows it exported.
        _record(ws, run_id, name, staging, target)
        bundles.publish(staging, target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    step("done")
    return {**manifest, "path": str(target), "zip": str(bundles.zip_path(target))}


def benchmark_run(ws: Workspace, run_id: str, budget_s: float = 4.0,
                  progress: ProgressFn | None = None) -> dict[str, Any]:
    """Latency, throughput, size and test accuracy of eager, TorchScript, ONNX fp32 and int8.

    Saved as ``runs/<id>/export/latency.json`` for the Deploy page.
    """
    step = _stepper(progress, 4)
    step("loading the run")
    loaded = load_run(ws, run_id)
    data = EvalData.of(loaded, CALIBRATION_SAMPLES)
    with tempfile.TemporaryDirectory(prefix="l2m-bench-") as tmp:
        step("exporting every variant")
        variants = build_variants(loaded.model, torch.from_numpy(data.x[:2]), Path(tmp),
                                  data.calibration)
        step("measuring")
        rows = measure(variants, data.sample_shape, budget_s=budget_s)
        add_accuracy(rows, variants, data.x, data.y)
    add_ratios(rows)
    result = {"run_id": run_id, "created_at": _now(), "threads": torch.get_num_threads(),
              "input_shape": list(data.sample_shape), "batch_throughput": 32,
              "accuracy_split": data.split, "rows": rows}
    folder = bundles.export_dir(ws, run_id)
    folder.mkdir(parents=True, exist_ok=True)
    bundles.write_json(folder / bundles.LATENCY_FILE, result)
    step("done")
    return result


class EvalData:
    """The real samples an export is checked on: the test split (or val if test is empty),
    through the shared preprocessing, and training samples for int8 calibration."""

    def __init__(self, x: np.ndarray, y: np.ndarray, split: str, calibration: np.ndarray):
        self.x, self.y, self.split, self.calibration = x, y, split, calibration

    @property
    def sample_shape(self) -> tuple[int, ...]:
        return tuple(self.x.shape[1:])

    @classmethod
    def of(cls, loaded: LoadedRun, calibration: int = 0) -> EvalData:
        from core.data import load_dataset

        dataset = load_dataset(loaded.ws, loaded.info.name)
        split = "test" if dataset.size("test") else "val"
        x, y = split_arrays(loaded, dataset, split, MAX_EVAL_SAMPLES)
        if not len(x):
            raise InvalidConfig(f"{loaded.info.name} has no test or validation samples to check "
                                "the export on.")
        calib = split_arrays(loaded, dataset, "train", calibration)[0] if calibration else x[:0]
        return cls(x, y, split, calib)


def split_arrays(loaded: LoadedRun, dataset, split: str, limit: int) -> tuple[np.ndarray, ...]:
    """Up to ``limit`` samples of ``split``, evenly spaced, preprocessed (corrupt ones skipped)."""
    from core.data.torchdata import build_torch_split, collate_skipping

    torch_split = build_torch_split(dataset, split, loaded.image_size)
    n = len(torch_split)
    if n == 0 or limit <= 0:
        return np.zeros((0,)), np.zeros((0,), np.int64)
    first = torch_split[0]
    per_sample = first[0].numel() * 4 if isinstance(first, tuple) else 1
    limit = min(limit, max(64, MAX_EVAL_BYTES // per_sample))
    indices = np.unique(np.linspace(0, n - 1, min(n, limit)).round().astype(int)).tolist()
    x, y, _, skipped = collate_skipping(torch_split.__getitems__(indices))
    if skipped:
        log.warning("Skipped %d unreadable %s samples", len(skipped), split)
    return x.numpy().astype(np.float32), y.numpy()


# -- the two formats -----------------------------------------------------------------------------


def _onnx(loaded: LoadedRun, data: EvalData, staging: Path, quantize: str | None,
          step: Callable) -> tuple[dict[str, Any], Variant]:
    from core.deploy.quantize import quantize_int8

    fp32 = staging / "model.onnx"
    exporter = to_onnx(loaded.model, torch.from_numpy(data.x[:2]), fp32)
    signature = check_onnx(fp32)
    session = ort_session(fp32)
    step("checking against PyTorch")
    diffs = parity(lambda x: torch_logits(loaded.model, x), lambda x: ort_logits(session, x),
                   data.x)
    check_parity(diffs, "ONNX fp32")
    reference = torch_logits(loaded.model, data.x)
    accuracy = {"pytorch": _acc(reference, data.y), "onnx_fp32": _acc(ort_logits(session, data.x),
                                                                      data.y)}
    checks: dict[str, Any] = {"onnx_checker": True, "onnx_fp32_parity": {
        **diffs, "tolerance": PARITY_TOLERANCE, "passed": True}}
    manifest: dict[str, Any] = {"format": "onnx", "precision": "fp32", "model_file": fp32.name,
                                "exporter": exporter, **signature}
    served = fp32
    if is_ensemble(loaded):  # one graph: also checked against the Python ensemble itself
        add_to_manifest(loaded, manifest, checks, lambda x: ort_logits(session, x), data.split)
    if quantize:
        step("quantizing to int8")
        int8 = staging / "model.int8.onnx"
        manifest["quantization"] = quantize_int8(fp32, int8, data.calibration)
        check_onnx(int8)
        logits = ort_logits(ort_session(int8), data.x)
        accuracy["onnx_int8"] = _acc(logits, data.y)
        checks["onnx_int8_vs_pytorch"] = {
            "top1_agreement": float(np.mean(logits.argmax(1) == reference.argmax(1))),
            "max_abs_diff": float(np.abs(logits - reference).max())}
        fp32.unlink()  # the int8 bundle ships the int8 model only (fp32 figures stay recorded)
        served = int8
        manifest.update(precision="int8", model_file=int8.name)
    manifest["checks"] = checks
    manifest["metrics"] = {"accuracy": accuracy}
    variant = Variant(f"onnx-{manifest['precision']}", _ort_runner(served), served.stat().st_size,
                      {})
    return manifest, variant


def _torchscript(loaded: LoadedRun, data: EvalData, staging: Path,
                 step: Callable) -> tuple[dict[str, Any], Variant]:
    path = staging / "model.pt"
    method = to_torchscript(loaded.model, torch.from_numpy(data.x[:2]), path)
    module = load_torchscript(path)  # the file just written above, never a user's
    step("checking against PyTorch")
    diffs = parity(lambda x: torch_logits(loaded.model, x), lambda x: torch_logits(module, x),
                   data.x)
    check_parity(diffs, "TorchScript")
    accuracy = {"pytorch": _acc(torch_logits(loaded.model, data.x), data.y),
                "torchscript": _acc(torch_logits(module, data.x), data.y)}
    shape = ["batch", *data.sample_shape]
    manifest = {"format": "torchscript", "precision": "fp32", "model_file": path.name,
                "exporter": method, "input": {"name": "input", "shape": shape, "dtype": "float32"},
                "output": {"name": "logits", "shape": ["batch", len(loaded.classes)],
                           "dtype": "float32"},
                "checks": {"torchscript_parity": {**diffs, "tolerance": PARITY_TOLERANCE,
                                                  "passed": True}},
                "metrics": {"accuracy": accuracy}}
    variant = Variant("torchscript", lambda x: torch_logits(module, x), path.stat().st_size, {})
    return manifest, variant


def _ort_runner(path: Path) -> Callable[[np.ndarray], np.ndarray]:
    session = ort_session(path, torch.get_num_threads())
    return lambda x: ort_logits(session, x)


def _eager(loaded: LoadedRun) -> Variant:
    """Eager PyTorch; its size is that of its state dict as ``torch.save`` writes it."""
    import io

    buffer = io.BytesIO()
    torch.save(loaded.model.state_dict(), buffer)
    return Variant("eager", lambda x: torch_logits(loaded.model, x), buffer.tell(), {})


# -- the bundle ----------------------------------------------------------------------------------


def _write_bundle(loaded: LoadedRun, data: EvalData, staging: Path, name: str,
                  manifest: dict[str, Any], served: Variant) -> dict[str, Any]:
    from core.data.transforms import preprocess_spec

    info, run = loaded.info, loaded.ws.store.get_run(loaded.run_id)
    spec = preprocess_spec(info, loaded.image_size)
    probs = _softmax(served.run(data.x))
    manifest["metrics"].update(test_samples=int(len(data.y)), split=data.split,
                               val_acc=run.summary.get("final", {}).get("val/acc"))
    manifest.update(
        bundle=name, run_id=loaded.run_id, created_at=_now(), model=loaded.config.model.name,
        dataset=info.name, dataset_description=info.description, split_counts=info.split_counts,
        classes=loaded.classes, preprocess=spec, checkpoint=loaded.checkpoint.name,
        versions=_versions())
    bundles.write_json(staging / "labels.json", loaded.classes)
    bundles.write_json(staging / "preprocess.json", spec)
    bundles.write_json(staging / "reference.json", {
        "split": data.split, "samples": int(len(probs)),
        "accuracy": float(np.mean(probs.argmax(1) == data.y)),
        "confidence": [round(float(c), 5) for c in probs.max(1)],
        "predicted_counts": np.bincount(probs.argmax(1), minlength=len(loaded.classes)).tolist()})
    if manifest["format"] == "onnx":
        bundles.add_server(staging)
        (staging / "Dockerfile").write_text(dockerfile(f"lab2market-{loaded.run_id}-{name}"))
        (staging / "requirements.txt").write_text(requirements())
    (staging / "model_card.md").write_text(model_card(manifest))
    return write_manifest(staging, manifest)


def _record(ws: Workspace, run_id: str, name: str, staging: Path, target: Path) -> None:
    store = ws.store
    store.add_artifact(run_id, f"export:{name}", str(target))
    store.add_event(run_id, "export", f"Exported {name}", data={
        "bundle": name, "manifest_sha256": sha256_file(staging / MANIFEST)})


def _check_choice(fmt: str, quantize: str | None) -> None:
    if fmt not in bundles.FORMATS:
        raise InvalidConfig(f"format must be one of {', '.join(bundles.FORMATS)}; got {fmt!r}.")
    if quantize is not None and quantize not in bundles.QUANTIZATIONS:
        raise InvalidConfig(f"quantize must be int8; got {quantize!r}.")
    if quantize and fmt != "onnx":
        raise InvalidConfig("int8 quantization applies to ONNX exports: use --format onnx.")


def _stepper(progress: ProgressFn | None, total: int) -> Callable[[str], None]:
    done = [0]

    def step(message: str) -> None:
        if progress:
            progress(min(done[0], total), total, message)
        done[0] += 1

    return step


def _acc(logits: np.ndarray, y: np.ndarray) -> float:
    return float(np.mean(logits.argmax(1) == y))


def _softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(1, keepdims=True))
    return e / e.sum(1, keepdims=True)


def _now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def _versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}
