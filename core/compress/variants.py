"""The variants table: a source run and its compressed descendants, side by side.

For each run with a checkpoint: parameters and MACs (Torch-Pruning's counter), checkpoint size,
ONNX fp32 and int8 sizes, ONNX latency at batch 1 and 32 (``core.deploy.latency``: the same
export, quantization and interleaved measurement Deploy uses, on the same threads), test
accuracy and macro F1 (``core.analyze.evaluate``'s stored pass), and the deltas to each row's
parent. All rows are measured together in one interleaved pass, so their latencies compare
side by side; the result is cached in ``runs/<source>/compress/variants.json`` and measured again
only when a row appears or a checkpoint changes. :func:`pareto` marks the variants no other
beats on both speed (or size) and accuracy.

Importing this module does not import torch (the page reads the cached table with it).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from pathlib import Path
from typing import Any

from core.atomic import write_atomic
from core.checkpoint import checkpoint_signature, run_checkpoint
from core.progress import ProgressFn
from core.runs.records import Run
from core.workspace import Workspace

log = logging.getLogger(__name__)

COMPRESSED_KINDS = ("pruned", "distilled")
TABLE_FILE = "variants.json"
DEFAULT_BUDGET_S = 2.0  # latency measurement per ONNX model (fp32 and int8 each)


def table_path(ws: Workspace, source_id: str) -> Path:
    return ws.run_dir(source_id) / "compress" / TABLE_FILE


def family(ws: Workspace, source_id: str) -> list[Run]:
    """The source run, then its pruned and distilled descendants (breadth first)."""
    store = ws.store
    found, queue = [store.get_run(source_id)], [source_id]
    while queue:
        children = [r for r in store.child_runs(queue.pop(0)) if r.kind in COMPRESSED_KINDS]
        found += children
        queue += [r.id for r in children]
    return found


def signatures(ws: Workspace, runs: list[Run]) -> dict[str, str]:
    """The checkpoint signature of every run that has one (what the cached table is keyed on)."""
    return {r.id: sig for r in runs if (sig := checkpoint_signature(ws, r.id)) is not None}


def cached_table(ws: Workspace, source_id: str) -> dict[str, Any] | None:
    """The last measured table, or None (never measured, unreadable)."""
    path = table_path(ws, source_id)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def variants(ws: Workspace, source_id: str, budget_s: float = DEFAULT_BUDGET_S,
             progress: ProgressFn | None = None, force: bool = False) -> dict[str, Any]:
    """The table (rows for every run of the family), measuring if anything is missing."""
    runs = family(ws, source_id)
    keys = signatures(ws, [r for r in runs if not r.is_active])  # a training one still changes
    cached = cached_table(ws, source_id)
    if force or cached is None or cached.get("signatures") != keys:
        measured = measure(ws, [r for r in runs if r.id in keys], budget_s, progress)
        cached = {"source": source_id, "signatures": keys, "measured_at": time.time(),
                  **measured}
        _write_json(table_path(ws, source_id), cached)
    return {**cached, "rows": rows(runs, cached)}


def rows(runs: list[Run], table: dict[str, Any] | None) -> list[dict[str, Any]]:
    """One row per run: what the store knows, the measured figures where the cached table has
    this run's current checkpoint, deltas to the parent, Pareto flags."""
    measured = (table or {}).get("measured", {})
    keys = (table or {}).get("signatures", {})
    out = []
    for run in runs:
        row = {"run_id": run.id, "name": run.name, "kind": run.kind, "parent": run.parent_run,
               "status": run.status, "model": run.model, "method": describe_method(run),
               **_from_summary(run)}
        if run.id in measured and run.id in keys:
            row.update(measured[run.id])
        out.append(row)
    by_id = {r["run_id"]: r for r in out}
    for run in runs:  # a pruned child knows its parent's counts before anything is measured
        parent = by_id.get(run.parent_run or "")
        found = run.summary.get("compress") or {}
        if parent is not None and parent.get("params") is None and "parent_params" in found:
            parent.update(params=found["parent_params"], macs=found["parent_macs"])
    for row in out:
        parent = by_id.get(row["parent"]) if row["parent"] else None
        if parent is not None:
            row.update(deltas(row, parent))
    for axis in ("latency_b1_ms", "onnx_fp32_bytes"):
        best = pareto(out, axis)
        for row in out:
            row[f"pareto_{axis}"] = row["run_id"] in best
    return out


def describe_method(run: Run) -> str:
    """How the run came to be, in a few words."""
    cfg = run.config
    if cfg.get("prune"):
        p = cfg["prune"]
        what = f"{p['method']} {p['amount']:.0%} of {p['target']}" \
            if p["method"] == "structured" else f"unstructured {p['amount']:.0%} ({p['scope']})"
        extra = f", {p['importance']}" if p["method"] == "structured" else ""
        return what + extra + (f", {p['steps']} rounds" if p["steps"] > 1 else "")
    if cfg.get("distill"):
        d = cfg["distill"]
        return f"distilled (T={d['temperature']:g}, alpha={d['alpha']:g})"
    return "source"


def _from_summary(run: Run) -> dict[str, Any]:
    found = run.summary.get("compress") or {}
    return {k: found[k] for k in ("params", "macs") if k in found}


def deltas(row: dict[str, Any], parent: dict[str, Any]) -> dict[str, Any]:
    """Accuracy change in points, and how many times smaller / faster than the parent."""
    out: dict[str, Any] = {}
    if _both(row, parent, "accuracy"):
        out["accuracy_delta_points"] = round((row["accuracy"] - parent["accuracy"]) * 100, 2)
    if _both(row, parent, "f1_macro"):
        out["f1_delta_points"] = round((row["f1_macro"] - parent["f1_macro"]) * 100, 2)
    for key, name in (("latency_b1_ms", "speedup_b1"), ("latency_b32_ms", "speedup_b32"),
                      ("params", "params_smaller"), ("onnx_fp32_bytes", "size_smaller")):
        if _both(row, parent, key) and row[key]:
            out[name] = round(parent[key] / row[key], 2)
    return out


def _both(a: dict[str, Any], b: dict[str, Any], key: str) -> bool:
    return a.get(key) is not None and b.get(key) is not None


def pareto(table_rows: list[dict[str, Any]], cost: str = "latency_b1_ms",
           gain: str = "accuracy") -> set[str]:
    """Ids of the rows no other row dominates (no more ``cost``, no less ``gain``, better in
    one); rows missing either figure take no part."""
    points = [(r["run_id"], r[cost], r[gain]) for r in table_rows
              if r.get(cost) is not None and r.get(gain) is not None]
    return {i for i, c, g in points
            if not any((c2 <= c and g2 >= g) and (c2 < c or g2 > g) for _, c2, g2 in points)}


# -- measuring (torch) ---------------------------------------------------------------------------


def measure(ws: Workspace, runs: list[Run], budget_s: float = DEFAULT_BUDGET_S,
            progress: ProgressFn | None = None) -> dict[str, Any]:
    """Every figure of every run, the latencies in one interleaved pass over all of them."""
    import torch

    from core.deploy.latency import measure as measure_latency

    total = 2 * len(runs) + 1
    done = 0

    def step(message: str) -> None:
        nonlocal done
        if progress:
            progress(done, total, message)
        done += 1

    measured: dict[str, dict[str, Any]] = {}
    variants_by_run: dict[str, list] = {}
    shapes: set[tuple[int, ...]] = set()
    with tempfile.TemporaryDirectory(prefix="l2m-variants-") as tmp:
        for run in runs:
            step(f"evaluating {run.id}")
            measured[run.id] = _accuracy(ws, run.id)
            step(f"exporting {run.id}")
            figures, found, shape = _export(ws, run.id, Path(tmp) / run.id)
            measured[run.id].update(figures)
            variants_by_run[run.id] = found
            shapes.add(shape)
        step("measuring latency")
        flat = [v for found in variants_by_run.values() for v in found]
        # One pass per input shape (runs of one dataset may still differ in image size).
        by_name = {}
        for shape in shapes:
            group = [v for v in flat if v.info["shape"] == shape]
            by_name.update({r["variant"]: r for r in measure_latency(group, shape, budget_s)})
    for run_id in measured:
        measured[run_id].update(_latency(by_name, run_id))
    step("done")
    return {"measured": measured, "threads": torch.get_num_threads(),
            "budget_s": budget_s}


def _accuracy(ws: Workspace, run_id: str) -> dict[str, Any]:
    from core.analyze.evaluate import evaluate
    from core.analyze.metrics import overall

    preds = evaluate(ws, run_id, "test")
    scores = overall(preds.y_true, preds.probs)
    return {"accuracy": scores.get("accuracy"), "f1_macro": scores.get("f1_macro"),
            "test_samples": len(preds)}


def _export(ws: Workspace, run_id: str, folder: Path) -> tuple[dict[str, Any], list, tuple]:
    """Counts and sizes of one run, and its ONNX fp32 / int8 forms ready to time."""
    import dataclasses

    import torch

    from core.compress.prune import count
    from core.deploy.export import CALIBRATION_SAMPLES, EvalData
    from core.deploy.latency import build_variants
    from core.models.loaded import load_run

    loaded = load_run(ws, run_id)
    data = EvalData.of(loaded, CALIBRATION_SAMPLES)
    example = torch.from_numpy(data.x[:1])
    counts = count(loaded.model, example)
    folder.mkdir(parents=True, exist_ok=True)
    built = build_variants(loaded.model, torch.from_numpy(data.x[:2]), folder, data.calibration,
                           names=("onnx-fp32", "onnx-int8"))
    shape = tuple(data.sample_shape)
    found = [dataclasses.replace(v, name=f"{run_id}/{v.name}", info={**v.info, "shape": shape})
             for v in built]
    sizes = {f"{v.name.replace('-', '_')}_bytes": v.size_bytes for v in built}
    checkpoint = run_checkpoint(ws, run_id)
    figures = {**counts, **sizes, "checkpoint_bytes": checkpoint.stat().st_size if checkpoint
               else None}
    if counts["nonzero_params"] < counts["params"]:
        figures["sparsity"] = round(1 - counts["nonzero_params"] / counts["params"], 4)
    return figures, found, shape


def _latency(by_name: dict[str, dict[str, Any]], run_id: str) -> dict[str, Any]:
    from core.deploy.latency import THROUGHPUT_BATCH

    fp32, int8 = by_name.get(f"{run_id}/onnx-fp32"), by_name.get(f"{run_id}/onnx-int8")
    out: dict[str, Any] = {}
    if fp32:
        out["latency_b1_ms"] = fp32["p50_ms"]
        out["latency_b32_ms"] = round(THROUGHPUT_BATCH * 1000 / fp32["throughput_per_s"], 3)
    if int8:
        out["int8_latency_b1_ms"] = int8["p50_ms"]
    return out


def _write_json(path: Path, payload: dict[str, Any]) -> None:
    """Atomically: a reader never sees half a table."""
    write_atomic(path, lambda out: json.dump(payload, out, indent=1, default=str), mode="w")
