"""PyTorch -> ONNX and TorchScript, and the checks every export passes.

ONNX: the ``torch.export``-based exporter (``dynamo=True``) first; if it fails on a model, the
legacy TorchScript-based one (``dynamo=False``). The manifest records which one was used. The
batch axis is dynamic either way. Parity: onnxruntime (or the TorchScript module) against the
eager model on real preprocessed samples, at batch 1 and 8.
"""

from __future__ import annotations

import contextlib
import logging
import sys
import warnings
from pathlib import Path

import numpy as np
import torch
from torch import nn

from core.errors import ExportFailed

log = logging.getLogger(__name__)

INPUT, OUTPUT = "input", "logits"
PARITY_TOLERANCE = 1e-4  # max |onnx - torch| on the logits, fp32
PARITY_BATCHES = (1, 8)
LEGACY_OPSET = 17


def to_onnx(model: nn.Module, example: torch.Tensor, path: Path) -> str:
    """Export with a dynamic batch axis; returns the exporter used (``dynamo`` | ``legacy``)."""
    model = model.eval().cpu()
    example = _batch_of(example, 2)  # torch.export specialises a batch of 1 to a constant
    try:
        # The new exporter reports its steps on stdout, which belongs to the CLI's result.
        with contextlib.redirect_stdout(sys.stderr), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                model, (example,), str(path), dynamo=True, input_names=[INPUT],
                output_names=[OUTPUT], dynamic_shapes=({0: torch.export.Dim("batch")},),
                external_data=False, verbose=False)
        return "dynamo"
    except Exception as exc:  # noqa: BLE001 - any failure of the new exporter: try the old one
        log.warning("The torch.export-based ONNX exporter failed (%s: %s); using the legacy "
                    "TorchScript-based exporter.", type(exc).__name__, exc)
    Path(path).unlink(missing_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model, (example,), str(path), dynamo=False, input_names=[INPUT],
            output_names=[OUTPUT], dynamic_axes={INPUT: {0: "batch"}, OUTPUT: {0: "batch"}},
            opset_version=LEGACY_OPSET)
    return "legacy"


def check_onnx(path: Path) -> dict[str, object]:
    """``onnx.checker`` (full), and the input/output signature with a symbolic batch axis."""
    import onnx

    model = onnx.load(str(path))
    try:
        onnx.checker.check_model(model, full_check=True)
    except Exception as exc:  # noqa: BLE001 - the checker raises several types
        raise ExportFailed(f"The exported ONNX model fails onnx.checker: {exc}") from None

    def shape(value) -> list:
        return [d.dim_param or d.dim_value for d in value.type.tensor_type.shape.dim]

    inputs, outputs = model.graph.input, model.graph.output
    if not isinstance(shape(inputs[0])[0], str):
        raise ExportFailed("The exported ONNX model has a fixed batch size; expected a dynamic "
                           "batch axis.")
    return {"opset": max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")),
            "input": {"name": inputs[0].name, "shape": shape(inputs[0]), "dtype": "float32"},
            "output": {"name": outputs[0].name, "shape": shape(outputs[0]), "dtype": "float32"}}


def ort_session(path_or_bytes, threads: int = 0):
    import onnxruntime as ort

    options = ort.SessionOptions()
    if threads:
        options.intra_op_num_threads = threads
    source = str(path_or_bytes) if isinstance(path_or_bytes, Path) else path_or_bytes
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def ort_logits(session, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    name = session.get_inputs()[0].name
    parts = [session.run(None, {name: x[i:i + batch_size]})[0]
             for i in range(0, len(x), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


@torch.inference_mode()
def torch_logits(model: nn.Module, x: np.ndarray, batch_size: int = 256) -> np.ndarray:
    parts = [model(torch.from_numpy(x[i:i + batch_size])).float().numpy()
             for i in range(0, len(x), batch_size)]
    return np.concatenate(parts) if parts else np.zeros((0, 0), np.float32)


def parity(reference, candidate, samples: np.ndarray) -> dict[str, float]:
    """Max |candidate - reference| on the logits of the first 1 and 8 samples (as batches)."""
    out = {}
    for b in PARITY_BATCHES:
        x = _batch_of(samples, b)
        out[f"batch_{b}"] = float(np.abs(candidate(x) - reference(x)).max())
    return out


def check_parity(diffs: dict[str, float], what: str) -> None:
    worst = max(diffs.values())
    if not worst <= PARITY_TOLERANCE:  # also catches NaN
        raise ExportFailed(f"The {what} model disagrees with PyTorch by {worst:.3g} (tolerance "
                           f"{PARITY_TOLERANCE:g}); the export is refused.")


def to_torchscript(model: nn.Module, example: torch.Tensor, path: Path) -> str:
    """Trace, freeze and save; returns the method used."""
    model = model.eval().cpu()
    with warnings.catch_warnings(), torch.inference_mode(False), torch.no_grad():
        warnings.simplefilter("ignore")  # torch.jit is deprecated upstream, still the format
        traced = torch.jit.freeze(torch.jit.trace(model, _batch_of(example, 2)))
        torch.jit.save(traced, str(path))
    return "torch.jit.trace+freeze"


def load_torchscript(path: Path) -> torch.jit.ScriptModule:
    """Only ever a file this process has just written (benchmarks, parity): never a user's."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return torch.jit.load(str(path), map_location="cpu").eval()


def _batch_of(x, n: int):
    """The first ``n`` samples of ``x``, cycling through them if there are fewer."""
    if len(x) >= n:
        return x[:n]
    reps = -(-n // len(x))
    stacked = torch.cat([x] * reps) if isinstance(x, torch.Tensor) else np.concatenate([x] * reps)
    return stacked[:n]
