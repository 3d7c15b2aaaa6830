"""Latency of one model in its four forms: eager PyTorch, TorchScript, ONNX fp32, ONNX int8.

Each variant runs the same batches on the same threads (onnxruntime gets as many intra-op
threads as torch has). Measurements are interleaved in rounds (every variant once per round),
so a burst of load on a shared machine hits all variants alike rather than whichever ran then.
Figures: p50 and p95 latency at batch 1, throughput (samples/s) at batch 32, size on disk, and
ratios against eager PyTorch.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from core.deploy.convert import (
    load_torchscript,
    ort_session,
    to_onnx,
    to_torchscript,
    torch_logits,
)

VARIANTS = ("eager", "torchscript", "onnx-fp32", "onnx-int8")
THROUGHPUT_BATCH = 32


@dataclass
class Variant:
    name: str
    run: Callable[[np.ndarray], np.ndarray]  # float32 batch -> logits
    size_bytes: int
    info: dict[str, Any]


def build_variants(model: nn.Module, example: torch.Tensor, workdir: Path,
                   calibration: np.ndarray, names: Sequence[str] = VARIANTS,
                   threads: int | None = None) -> list[Variant]:
    """Export ``model`` into ``workdir`` in each named form and wrap each as a callable."""
    from core.deploy.quantize import quantize_int8

    threads = threads or torch.get_num_threads()
    model = model.eval().cpu()
    weights = workdir / "eager_state_dict.pt"
    torch.save(model.state_dict(), weights)
    out = []
    if "eager" in names:
        out.append(Variant("eager", lambda x: torch_logits(model, x), _size(weights), {}))
    if "torchscript" in names:
        path = workdir / "model.pt"
        method = to_torchscript(model, example, path)
        module = load_torchscript(path)  # the file just written, never a user's
        out.append(Variant("torchscript", lambda x: torch_logits(module, x), _size(path),
                           {"method": method}))
    if "onnx-fp32" in names or "onnx-int8" in names:
        fp32 = workdir / "model.onnx"
        exporter = to_onnx(model, example, fp32)
        if "onnx-fp32" in names:
            out.append(_onnx_variant("onnx-fp32", fp32, threads, {"exporter": exporter}))
        if "onnx-int8" in names:
            int8 = workdir / "model.int8.onnx"
            info = quantize_int8(fp32, int8, calibration)
            out.append(_onnx_variant("onnx-int8", int8, threads, {"exporter": exporter, **info}))
    return out


def _onnx_variant(name: str, path: Path, threads: int, info: dict[str, Any]) -> Variant:
    session = ort_session(path, threads)
    input_name = session.get_inputs()[0].name
    return Variant(name, lambda x: session.run(None, {input_name: x})[0], _size(path), info)


def _size(path: Path) -> int:
    return Path(path).stat().st_size


def measure(variants: Sequence[Variant], sample_shape: Sequence[int], budget_s: float = 6.0,
            rounds: int = 5, seed: int = 0) -> list[dict[str, Any]]:
    """Latency rows (one per variant), interleaved in ``rounds``; ``budget_s`` is per variant."""
    rng = np.random.default_rng(seed)
    one = rng.standard_normal((1, *sample_shape)).astype(np.float32)
    many = rng.standard_normal((THROUGHPUT_BATCH, *sample_shape)).astype(np.float32)
    single: dict[str, list[float]] = {v.name: [] for v in variants}
    batched: dict[str, list[float]] = {v.name: [] for v in variants}
    with torch.inference_mode():
        for v in variants:  # warm-up: first calls allocate and pick kernels
            for _ in range(3):
                v.run(one)
            v.run(many)
        for _ in range(rounds):
            for v in variants:
                single[v.name] += _timed(v.run, one, budget_s / rounds / 2, max_iters=200)
                batched[v.name] += _timed(v.run, many, budget_s / rounds / 2, max_iters=20)
    return [_row(v, single[v.name], batched[v.name]) for v in variants]


def _timed(fn: Callable, x: np.ndarray, budget_s: float, max_iters: int) -> list[float]:
    """At least one call; more until ``budget_s`` is spent or ``max_iters`` are done."""
    times: list[float] = []
    deadline = time.perf_counter() + budget_s
    while not times or (time.perf_counter() < deadline and len(times) < max_iters):
        start = time.perf_counter()
        fn(x)
        times.append(time.perf_counter() - start)
    return times


def _row(v: Variant, single: list[float], batched: list[float]) -> dict[str, Any]:
    ms = np.asarray(single) * 1000
    return {"variant": v.name, "p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p95_ms": round(float(np.percentile(ms, 95)), 3),
            "throughput_per_s": round(THROUGHPUT_BATCH / float(np.median(batched)), 1),
            "size_bytes": v.size_bytes, "iterations_batch_1": len(single),
            "iterations_batch_32": len(batched), **v.info}


def add_accuracy(rows: list[dict[str, Any]], variants: Sequence[Variant], x: np.ndarray,
                 y: np.ndarray, batch_size: int = 128) -> None:
    """Test-split accuracy of each variant, in place (``accuracy`` and ``test_samples``)."""
    by_name = {v.name: v for v in variants}
    for row in rows:
        run = by_name[row["variant"]].run
        preds = np.concatenate([run(x[i:i + batch_size]).argmax(1)
                                for i in range(0, len(x), batch_size)]) if len(x) else []
        row["accuracy"] = round(float(np.mean(np.asarray(preds) == y)), 6) if len(x) else None
        row["test_samples"] = int(len(x))


def add_ratios(rows: list[dict[str, Any]], baseline: str = "eager") -> None:
    """``speedup`` (p50 at batch 1), ``throughput_ratio`` and ``size_ratio`` against eager."""
    base = next((r for r in rows if r["variant"] == baseline), None)
    if base is None:
        return
    for row in rows:
        row["speedup_vs_eager"] = round(base["p50_ms"] / row["p50_ms"], 2)
        row["throughput_vs_eager"] = round(row["throughput_per_s"] / base["throughput_per_s"], 2)
        row["smaller_vs_eager"] = round(base["size_bytes"] / row["size_bytes"], 2)
        if row.get("accuracy") is not None and base.get("accuracy") is not None:
            row["accuracy_delta_points"] = round((row["accuracy"] - base["accuracy"]) * 100, 2)
