"""Evaluation latency: a cold inference pass over digits/test, the second open, and 10,000 images.

1. ``digits_test``: a small CNN run (trained here for one epoch unless ``--run`` names one) is
   evaluated on the test split (a) by the CLI in a fresh process (``python -m core evaluate
   --force``: interpreter, library imports, model load, inference, write), (b) in a fresh
   process after its library imports (torch, torchvision, scikit-learn: timed apart, as every
   inference job pays them before any work), and (c) again in a warm process. Goal: (b) under
   2 s on CPU.
2. ``second_open``: what reopening costs: read the stored file (checking the checkpoint's
   signature), and that plus deriving every metric and curve from it (the page then caches
   these on the file's path and mtime). Ratios: cold (b) over reading the file, and cold (b)
   plus the metrics over the second open.
3. ``large_split``: 10,000 generated ``shapes`` images at 32 px (a run trained on shapes at
   32 px), predicted in batches with a progress callback: throughput, batches, progress calls;
   then memory *measured*: the peak resident memory a fresh process grows by while it predicts
   the split in batches, and while it predicts it in one batch (what holding every input at once
   costs).

Prints one JSON object. ``--threads N`` sets torch's intra-op threads (default: torch's own), in
this process and in every subprocess (the CLI's through ``OMP_NUM_THREADS``). The CLI row runs
``evaluate --no-calibrate`` (no validation pass for temperature scaling), and says so.

    python benchmarks/evaluate_latency.py [--home DIR] [--run RUN] [--large 10000] [--threads N]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]  # train_support: runs trained as tests do

import numpy as np  # noqa: E402
from train_support import train_run  # noqa: E402

from core.analyze import metrics  # noqa: E402
from core.analyze.evaluate import evaluate, predict_split, stored, write_predictions  # noqa: E402
from core.workspace import Workspace  # noqa: E402

# A fresh process: the libraries every inference job imports first (timed apart), then one
# evaluation from nothing (model and dataset loaded, split predicted, file written).
COLD_SNIPPET = """
import json, sys, time
t = time.perf_counter()
import torch, torchvision, sklearn.datasets
{threads}
imports = time.perf_counter() - t
from core.analyze.evaluate import evaluate
from core.workspace import Workspace
ws = Workspace.open(sys.argv[2])
t = time.perf_counter()
preds = evaluate(ws, sys.argv[1], "test", force=True)
print(json.dumps({{"seconds": time.perf_counter() - t, "loop": preds.seconds, "n": len(preds),
                  "imports": imports}}))
"""


# A fresh process predicting the large split with a given batch size: its peak resident memory
# growth (ru_maxrss) over what it held once the run and the images were loaded.
MEMORY_SNIPPET = """
import json, resource, sys
import numpy as np
from core.analyze.evaluate import predict_split
from core.data.dataset import ArrayDataset
from core.data.registry import load_dataset
from core.data.shapes import generate_shapes
from core.models.loaded import load_run
from core.workspace import Workspace
{threads}
ws = Workspace.open(sys.argv[2])
loaded = load_run(ws, sys.argv[1])
n, batch = int(sys.argv[3]), int(sys.argv[4])
images, labels, _ = generate_shapes(n=n, size=32, seed=7)
info = load_dataset(ws, "shapes").info.copy()
info.split_counts = {{"train": 0, "val": 0, "test": n}}
dataset = ArrayDataset(info, images, labels, {{"test": np.arange(n)}})
def rss_mb():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * 4096 / 2**20
before = rss_mb()
predict_split(loaded, dataset, "test", batch_size=batch)
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"peak_growth_mb": peak - before}}))
"""


def thread_env(threads: int | None) -> dict[str, str]:
    """The environment of a subprocess that must run on ``threads`` torch threads."""
    env = dict(os.environ)
    if threads:
        env.update(OMP_NUM_THREADS=str(threads), MKL_NUM_THREADS=str(threads))
    return env


def rss_mb() -> float:
    """Resident memory now (Linux /proc), in MiB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def digits_test(ws: Workspace, run_id: str, threads: int | None) -> dict:
    command = ["evaluate", run_id, "--split", "test", "--no-calibrate", "--force", "--json"]
    t = time.perf_counter()
    cli = subprocess.run([sys.executable, "-m", "core", *command, "--home", str(ws.home)],
                         cwd=ROOT, capture_output=True, text=True, check=True,
                         env=thread_env(threads))
    cli_s = time.perf_counter() - t
    setting = f"torch.set_num_threads({threads})" if threads else ""
    fresh = json.loads(subprocess.run(
        [sys.executable, "-c", COLD_SNIPPET.format(threads=setting), run_id, str(ws.home)],
        cwd=ROOT, capture_output=True, text=True, check=True, env=thread_env(threads)).stdout)
    evaluate(ws, run_id, "test", force=True)  # warm this process up
    t = time.perf_counter()
    evaluate(ws, run_id, "test", force=True)
    warm_s = time.perf_counter() - t
    return {"samples": fresh["n"], "cli_command": "python -m core " + " ".join(command),
            "cli_threads": threads or "torch's default",
            "cli_fresh_process_no_calibrate_s": round(cli_s, 3),
            "library_imports_s": round(fresh["imports"], 3),
            "cold_after_imports_s": round(fresh["seconds"], 3),
            "cold_inference_loop_s": round(fresh["loop"], 3),
            "warm_s": round(warm_s, 4), "goal_s": 2.0,
            "meets_goal": fresh["seconds"] < 2.0,
            "accuracy": json.loads(cli.stdout)["overall"]["accuracy"]}


def second_open(ws: Workspace, run_id: str, repeats: int = 5) -> dict:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        preds = stored(ws, run_id, "test")
        metrics.report(preds.y_true, preds.probs, preds.classes)
        metrics.roc_curves(preds.y_true, preds.probs, preds.classes)
        metrics.pr_curves(preds.y_true, preds.probs, preds.classes)
        times.append(time.perf_counter() - t)
    t = time.perf_counter()
    found = stored(ws, run_id, "test")
    read_s = time.perf_counter() - t
    assert found is not None, "the stored file should still be fresh"
    return {"read_file_s": round(read_s, 5), "read_and_all_metrics_s": round(min(times), 4)}


def peak_memory_mb(ws: Workspace, run_id: str, n: int, batch_size: int,
                   threads: int | None) -> float:
    setting = f"import torch; torch.set_num_threads({threads})" if threads else ""
    out = subprocess.run([sys.executable, "-c", MEMORY_SNIPPET.format(threads=setting), run_id,
                          str(ws.home), str(n), str(batch_size)], cwd=ROOT, capture_output=True,
                         text=True, check=True, env=thread_env(threads))
    return round(json.loads(out.stdout)["peak_growth_mb"], 1)


def large_split(ws: Workspace, n: int, batch_size: int, threads: int | None) -> dict:
    from core.data.dataset import ArrayDataset
    from core.data.registry import load_dataset
    from core.data.shapes import generate_shapes
    from core.models.loaded import load_run

    run_id = train_run(ws, data={"dataset": "shapes", "image_size": 32})
    loaded = load_run(ws, run_id)
    images, labels, _ = generate_shapes(n=n, size=32, seed=7)
    info = load_dataset(ws, "shapes").info.copy()  # the run's normalisation, every class
    info.split_counts = {"train": 0, "val": 0, "test": n}
    dataset = ArrayDataset(info, images, labels, {"test": np.arange(n)})
    calls: list[int] = []
    rss: list[float] = []

    def progress(done: int, total: int, message: str = "") -> None:
        calls.append(done)
        rss.append(rss_mb())

    rss_before = rss_mb()
    t = time.perf_counter()
    preds = predict_split(loaded, dataset, "test", batch_size=batch_size, progress=progress)
    seconds = time.perf_counter() - t
    path = write_predictions(preds, ws.home / "large_test.npz")
    return {"samples": len(preds), "image_size": 32, "batch_size": batch_size,
            "seconds": round(seconds, 3), "images_per_s": round(len(preds) / seconds, 1),
            "batches": -(-n // batch_size), "progress_calls": len(calls),
            "rss_growth_during_pass_mb": round(max(rss) - rss_before, 1),
            "fresh_process_peak_growth_mb": {
                f"batches_of_{batch_size}": peak_memory_mb(ws, run_id, n, batch_size, threads),
                "one_batch_of_all": peak_memory_mb(ws, run_id, n, n, threads)},
            "stored_file_mb": round(path.stat().st_size / 2**20, 2),
            "accuracy": float(np.mean(preds.y_pred == preds.y_true))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--home", help="workspace (default: a temporary folder)")
    parser.add_argument("--run", help="an existing digits run to evaluate (default: train one)")
    parser.add_argument("--large", type=int, default=10_000, help="images in the large split")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--threads", type=int, help="torch.set_num_threads (default: torch's)")
    args = parser.parse_args()
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as tmp, Workspace.open(args.home or tmp) as ws:
        run_id = args.run or train_run(ws)
        cold = digits_test(ws, run_id, args.threads)
        reopen = second_open(ws, run_id)
        result = {
            "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
            "load_avg_1m": round(os.getloadavg()[0], 2),
            "digits_test": cold, "second_open": reopen,
            "ratio_cold_over_reading_the_file": round(
                cold["cold_after_imports_s"] / reopen["read_file_s"], 1),
            "ratio_cold_and_metrics_over_second_open": round(
                (cold["cold_after_imports_s"] + reopen["read_and_all_metrics_s"])
                / reopen["read_and_all_metrics_s"], 1),
            "large_split": large_split(ws, args.large, args.batch_size, args.threads),
        }
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
