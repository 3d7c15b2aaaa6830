"""Export latency: eager PyTorch vs TorchScript vs ONNX fp32 vs ONNX int8 on CPU.

Part 1, speed and size: torchvision ResNet-18 (random init, 1000 classes, no download) at
224x224: p50/p95 latency at batch 1, throughput at batch 32, size on disk, ratios against
eager. The int8 model is calibrated on random normal inputs (the weights are random anyway: this
part measures speed and size only). All four run in one process on the same threads
(onnxruntime gets torch's thread count), interleaved in rounds so load on a shared machine hits
them alike.

Part 2, accuracy: a small CNN trained for a few epochs on ``digits`` (or ``shapes``), exported
the same way, test-split accuracy of each form, labelled as such.

Goals: ONNX int8 >= 3x faster than eager at batch 1, >= 3.5x smaller, accuracy within 1 point.
Prints one JSON object.

    python benchmarks/export_latency.py [--budget 15] [--threads N] [--dataset digits]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.deploy.latency import add_accuracy, add_ratios, build_variants, measure  # noqa: E402


def resnet18_part(budget_s: float, rounds: int) -> dict:
    import torchvision

    torch.manual_seed(0)
    model = torchvision.models.resnet18(weights=None).eval()
    rng = np.random.default_rng(0)
    calibration = rng.standard_normal((32, 3, 224, 224)).astype(np.float32)
    with tempfile.TemporaryDirectory(prefix="l2m-bench-") as tmp:
        start = time.perf_counter()
        variants = build_variants(model, torch.from_numpy(calibration[:2]), Path(tmp),
                                  calibration)
        export_s = time.perf_counter() - start
        rows = measure(variants, (3, 224, 224), budget_s=budget_s, rounds=rounds)
    add_ratios(rows)
    return {"model": "resnet18 (torchvision, random init, 1000 classes)",
            "input": [3, 224, 224], "export_and_quantize_s": round(export_s, 1), "rows": rows}


def accuracy_part(dataset: str, epochs: int, budget_s: float) -> dict:
    from core.config import RunConfig
    from core.deploy.export import EvalData
    from core.models.loaded import load_run
    from core.runs import create_run
    from core.train import execute_run
    from core.workspace import Workspace

    with tempfile.TemporaryDirectory(prefix="l2m-bench-ws-") as home, Workspace.open(home) as ws:
        raw = RunConfig().to_dict()
        raw["data"].update(dataset=dataset, image_size=16 if dataset == "shapes" else None)
        raw["train"].update(epochs=epochs, lr=3e-3 if dataset == "shapes" else 1e-3)
        run = create_run(ws.store, RunConfig.from_dict(raw))
        summary = execute_run(ws, run.id)
        loaded = load_run(ws, run.id)
        data = EvalData.of(loaded, calibration=200)
        with tempfile.TemporaryDirectory(prefix="l2m-bench-") as tmp:
            variants = build_variants(loaded.model, torch.from_numpy(data.x[:2]), Path(tmp),
                                      data.calibration)
            rows = measure(variants, data.sample_shape, budget_s=budget_s)
            add_accuracy(rows, variants, data.x, data.y)
    add_ratios(rows)
    return {"model": f"smallcnn trained {epochs} epoch(s) on {dataset} "
                     f"(val acc {summary['final'].get('val/acc', float('nan')):.3f})",
            "split": data.split, "test_samples": int(len(data.y)), "input": list(data.sample_shape),
            "rows": rows}


def goals(speed: dict, accuracy: dict) -> dict:
    rows = {r["variant"]: r for r in speed["rows"]}
    int8 = rows["onnx-int8"]
    acc = {r["variant"]: r for r in accuracy["rows"]}
    delta = acc["onnx-int8"]["accuracy_delta_points"]
    return {
        "int8_speedup_vs_eager_batch1": {"value": int8["speedup_vs_eager"], "goal": ">= 3",
                                         "met": int8["speedup_vs_eager"] >= 3},
        "int8_smaller_vs_eager": {"value": int8["smaller_vs_eager"], "goal": ">= 3.5",
                                  "met": int8["smaller_vs_eager"] >= 3.5},
        "int8_accuracy_delta_points": {"value": delta, "goal": "|delta| <= 1",
                                       "met": abs(delta) <= 1, "measured_on": accuracy["model"]},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--budget", type=float, default=15.0,
                        help="seconds of timing per form for ResNet-18 (15)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--threads", type=int, help="torch and onnxruntime threads "
                                                    "(default: torch's, i.e. the cores)")
    parser.add_argument("--dataset", default="digits", choices=("digits", "shapes"))
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    load_before = os.getloadavg()
    started = time.perf_counter()
    speed = resnet18_part(args.budget, args.rounds)
    accuracy = accuracy_part(args.dataset, args.epochs, budget_s=2.0)
    import onnxruntime

    print(json.dumps({
        "benchmark": "export_latency",
        "machine": {"cpu": _cpu(), "cores": os.cpu_count(), "threads": torch.get_num_threads(),
                    "load_average_before": [round(x, 2) for x in load_before],
                    "load_average_after": [round(x, 2) for x in os.getloadavg()],
                    "python": platform.python_version(), "torch": torch.__version__,
                    "onnxruntime": onnxruntime.__version__},
        "speed_and_size": speed,
        "accuracy": accuracy,
        "goals": goals(speed, accuracy),
        "seconds": round(time.perf_counter() - started, 1),
    }, indent=2))


def _cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


if __name__ == "__main__":
    main()
