"""Ensembles: what one ONNX graph costs against its members, and what combining buys.

For each dataset (``digits``, ``shapes``), three small CNNs are trained for a few epochs with
different seeds (``--epochs``; shapes at ``--shapes-size`` pixels so it runs in minutes on a
CPU), then ensembled with soft voting, weighted voting (weights fitted on val) and stacking
(logistic regression fitted on val).

- Accuracy: each ensemble's test accuracy against the best member's, in points.
- Latency: the soft ensemble exported as ONE ONNX graph (members as subgraphs, combiner in the
  graph) in one onnxruntime session, against the three members each exported alone in its own
  session: p50 at batch 1 and throughput at batch 32, measured interleaved in one process on
  the same threads (``core.deploy.latency.measure``). ``ratio_p50`` is the ensemble's p50 over
  the sum of the members' p50s (goal <= 1.1: one graph costs no more than running the members).

Prints one JSON object.

    python benchmarks/ensemble.py [--epochs 3] [--shapes-size 32] [--budget 6]
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

import torch  # noqa: E402

from core.deploy.latency import Variant, measure  # noqa: E402

METHODS = ("soft", "weighted", "stacking")
SEEDS = (0, 1, 2)


def train_members(ws, dataset: str, epochs: int, image_size: int | None) -> list[str]:
    from core.config import RunConfig
    from core.runs import create_run
    from core.train import execute_run

    ids = []
    for seed in SEEDS:
        raw = RunConfig().to_dict()
        raw["data"].update(dataset=dataset, image_size=image_size)
        raw["train"].update(epochs=epochs, seed=seed, batch_size=64)
        run = create_run(ws.store, RunConfig.from_dict(raw))
        summary = execute_run(ws, run.id)
        assert summary["status"] == "completed", summary
        ids.append(run.id)
    return ids


def accuracy_part(ws, members: list[str]) -> dict:
    from core.analyze import evaluate as ev
    from core.analyze.ensemble import create_ensemble

    def acc(run_id: str) -> float:
        preds = ev.evaluate(ws, run_id, "test")
        return float((preds.probs.argmax(1) == preds.y_true).mean())

    member_acc = [acc(m) for m in members]
    best = max(member_acc)
    out: dict = {"members_test_accuracy": [round(a, 4) for a in member_acc],
                 "best_member": round(best, 4), "ensembles": {}}
    for method in METHODS:
        run = create_ensemble(ws, members, method)
        a = acc(run.id)
        out["ensembles"][method] = {"run_id": run.id, "test_accuracy": round(a, 4),
                                    "gain_over_best_member_points": round(100 * (a - best), 2)}
    return out


def latency_part(ws, ensemble_id: str, budget_s: float) -> dict:
    from core.deploy.convert import ort_logits, ort_session, to_onnx
    from core.models.loaded import load_run

    ens = load_run(ws, ensemble_id)
    sample = ens.preprocess(load_dataset_raw(ws, ens.info.name))[None]
    threads = torch.get_num_threads()
    variants = []
    with tempfile.TemporaryDirectory(prefix="l2m-ens-bench-") as tmp:
        for name, model in [("ensemble", ens.model)] + [
                (f"member_{i}", m.model) for i, m in enumerate(ens.members)]:
            path = Path(tmp) / f"{name}.onnx"
            to_onnx(model, sample, path)
            session = ort_session(path, threads)
            variants.append(Variant(name, lambda x, s=session: ort_logits(s, x),
                                    path.stat().st_size, {}))
        rows = measure(variants, tuple(sample.shape[1:]), budget_s=budget_s)
    by = {r["variant"]: r for r in rows}
    members = [r for r in rows if r["variant"] != "ensemble"]
    p50_sum = sum(r["p50_ms"] for r in members)
    per_sample_sum = sum(1000 / r["throughput_per_s"] for r in members)
    return {"input_shape": list(sample.shape[1:]), "threads": threads,
            "ensemble_p50_ms": by["ensemble"]["p50_ms"], "members_p50_ms_sum": round(p50_sum, 3),
            "ratio_p50": round(by["ensemble"]["p50_ms"] / p50_sum, 3),
            "ensemble_ms_per_sample_batch32": round(1000 / by["ensemble"]["throughput_per_s"], 4),
            "members_ms_per_sample_batch32_sum": round(per_sample_sum, 4),
            "ratio_batch32": round((1000 / by["ensemble"]["throughput_per_s"]) / per_sample_sum,
                                   3),
            "goal_ratio_p50": 1.1, "rows": rows}


def load_dataset_raw(ws, name: str):
    from core.data import load_dataset

    return load_dataset(ws, name).raw("test", 0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--shapes-size", type=int, default=32)
    parser.add_argument("--budget", type=float, default=6.0, help="seconds per variant")
    parser.add_argument("--datasets", default="digits,shapes")
    args = parser.parse_args()

    from core.workspace import Workspace

    started = time.time()
    result: dict = {"benchmark": "ensemble", "epochs": args.epochs, "seeds": list(SEEDS),
                    "model": "smallcnn", "machine": platform.processor() or platform.machine(),
                    "torch": torch.__version__, "datasets": {}}
    with tempfile.TemporaryDirectory(prefix="l2m-ens-ws-") as home, Workspace.open(home) as ws:
        for dataset in args.datasets.split(","):
            size = args.shapes_size if dataset == "shapes" else None
            members = train_members(ws, dataset, args.epochs, size)
            part = accuracy_part(ws, members)
            part["image_size"] = size
            part["latency"] = latency_part(ws, part["ensembles"]["soft"]["run_id"], args.budget)
            result["datasets"][dataset] = part
    result["seconds"] = round(time.time() - started, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
