"""Compression on ``shapes`` at 64 px: structured pruning of ResNet-18, and distillation.

Part 1, pruning: a ResNet-18 trained on ``shapes`` (the source), pruned by 30 / 50 / 70% of its
channels (L1 magnitude, Torch-Pruning), each fine-tuned briefly. The variants table
(``core.compress.variants``) then measures the source and every variant side by side in one
interleaved pass, the way Deploy measures latency (ONNX fp32, same threads): latency ratio to
the source at batch 1 and 32, parameters and MACs, test accuracy and its delta in points.
Goals: 50% pruning >= 1.8x faster at batch 1 on CPU; accuracy within 1 point of the source.

Part 2, distillation: a smallcnn student distilled from that ResNet-18 (T=4, alpha=0.7) against
the same student trained alone with the same budget (epochs, seed, data): test accuracy and
agreement with the teacher's test predictions. Goal: not worse, and closer to the teacher.

Everything trains in this process on the CPU (or a GPU if present). ``--samples`` below 2000
imports that many generated shapes (the built-in's generator) instead of the full built-in, for
a short run. Prints one JSON object.

    python benchmarks/compress.py [--samples 2000] [--epochs 6] [--finetune-epochs 2]
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
import torch  # noqa: E402

from core.config import PruneConfig, RunConfig  # noqa: E402
from core.runs import create_run  # noqa: E402
from core.train import execute_run  # noqa: E402
from core.workspace import Workspace  # noqa: E402


def dataset(ws: Workspace, samples: int, size: int) -> str:
    if samples >= 2000 and size == 64:
        return "shapes"
    from PIL import Image

    from core.data import import_dataset
    from core.data.shapes import SHAPE_CLASSES, generate_shapes

    images, labels, _ = generate_shapes(n=samples, size=size)
    folder = Path(tempfile.mkdtemp(prefix="shapes-"))
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        (folder / SHAPE_CLASSES[label]).mkdir(exist_ok=True)
        Image.fromarray(image).save(folder / SHAPE_CLASSES[label] / f"{i:05d}.png")
    import_dataset(ws, "shapes_subset", folder)
    return "shapes_subset"


def config(name: str, model: str, epochs: int, image_size: int) -> RunConfig:
    raw = RunConfig().to_dict()
    raw["data"].update(dataset=name, image_size=image_size)
    raw["model"]["name"] = model
    raw["train"].update(epochs=epochs, batch_size=64, lr=1e-3, seed=0, monitor="val/acc",
                        mode="max", resource_every=0)
    return RunConfig.from_dict(raw)


def train(ws: Workspace, cfg: RunConfig, kind: str = "trained", parent: str | None = None
          ) -> str:
    run = create_run(ws.store, cfg, kind=kind, parent_run=parent)
    summary = execute_run(ws, run.id)
    assert summary["status"] == "completed", summary
    return run.id


def pruning(ws: Workspace, source: str, amounts: list[float], epochs: int,
            budget: float) -> dict:
    from core.compress import pruned_config
    from core.compress.variants import variants

    ids = {}
    for amount in amounts:
        cfg = pruned_config(ws.store, source, PruneConfig(amount=amount), finetune_epochs=epochs)
        ids[amount] = train(ws, cfg, kind="pruned", parent=source)
    rows = {r["run_id"]: r for r in variants(ws, source, budget_s=budget)["rows"]}
    keep = ("params", "macs", "latency_b1_ms", "latency_b32_ms", "int8_latency_b1_ms",
            "onnx_fp32_bytes", "onnx_int8_bytes", "accuracy", "f1_macro")
    out = {"source": {k: rows[source].get(k) for k in keep}, "variants": []}
    for amount, run_id in ids.items():
        row = rows[run_id]
        out["variants"].append({
            "amount_of_channels": amount, **{k: row.get(k) for k in keep},
            "params_ratio": round(row["params"] / rows[source]["params"], 3),
            "macs_ratio": round(row["macs"] / rows[source]["macs"], 3),
            "speedup_b1": row.get("speedup_b1"), "speedup_b32": row.get("speedup_b32"),
            "accuracy_delta_points": row.get("accuracy_delta_points")})
    half = next((v for v in out["variants"] if v["amount_of_channels"] == 0.5), None)
    if half:
        out["goal_50pct_speedup_b1_ge_1.8"] = half["speedup_b1"] >= 1.8
        out["goal_50pct_accuracy_within_1pt"] = abs(half["accuracy_delta_points"]) <= 1.0
    return out


def distillation(ws: Workspace, name: str, teacher: str, epochs: int, image_size: int) -> dict:
    from core.analyze.evaluate import evaluate
    from core.compress import distilled_config

    student = config(name, "smallcnn", epochs, image_size)
    alone = train(ws, student)
    cfg = distilled_config(ws.store, teacher, student, temperature=4.0, alpha=0.7)
    distilled = train(ws, cfg, kind="distilled", parent=teacher)
    reference = evaluate(ws, teacher, "test")
    out = {"teacher_accuracy": _accuracy(reference), "epochs": epochs}
    for label, run_id in (("alone", alone), ("distilled", distilled)):
        preds = evaluate(ws, run_id, "test")
        out[label] = {"accuracy": _accuracy(preds),
                      "agreement_with_teacher": round(float(np.mean(
                          preds.y_pred == reference.y_pred)), 4)}
    out["goal_not_worse"] = out["distilled"]["accuracy"] >= out["alone"]["accuracy"]
    out["goal_closer_to_teacher"] = (out["distilled"]["agreement_with_teacher"]
                                     >= out["alone"]["agreement_with_teacher"])
    return out


def _accuracy(preds) -> float:
    return round(float(np.mean(preds.y_pred == preds.y_true)), 4)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--samples", type=int, default=2000)
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=6, help="source (teacher) epochs")
    parser.add_argument("--finetune-epochs", type=int, default=2)
    parser.add_argument("--distill-epochs", type=int, default=6)
    parser.add_argument("--amounts", default="0.3,0.5,0.7")
    parser.add_argument("--budget", type=float, default=3.0, help="latency seconds per model")
    args = parser.parse_args()
    started = time.time()
    with tempfile.TemporaryDirectory(prefix="l2m-bench-compress-") as home, \
            Workspace.open(home) as ws:
        name = dataset(ws, args.samples, args.image_size)
        source = train(ws, config(name, "resnet18", args.epochs, args.image_size))
        result = {
            "benchmark": "compress", "dataset": name, "samples": args.samples,
            "image_size": args.image_size, "source_epochs": args.epochs,
            "finetune_epochs": args.finetune_epochs, "threads": torch.get_num_threads(),
            "device": "cuda" if torch.cuda.is_available() else "cpu",
            "cpu": platform.processor() or platform.machine(),
            "pruning": pruning(ws, source, [float(a) for a in args.amounts.split(",")],
                               args.finetune_epochs, args.budget),
            "distillation": distillation(ws, name, source, args.distill_epochs,
                                         args.image_size),
        }
    result["seconds"] = round(time.time() - started, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
