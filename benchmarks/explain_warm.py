"""The Explain page's click, end to end, cold and warm: ``explain_latency.py --warm-path``.

What the page runs for a light method (``ui.explain_views.explain_here``): the run's model from
the dashboard's cache (loaded on the first click), ``read_input``, then
``core.explain.ensemble.explain`` (the CLI's call) with a ``preview`` that receives the map before
the trust checks. Two times per click: until the map exists (``overlay_s``: when the page draws
the overlay) and until the whole explanation (method, randomised-model copy, deletion curve) is
stored (``done_s``). Browser rendering is not included (``benchmarks/ui_latency.py`` measures
the browser).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RESNET_SIZE = 224
PER_CLASS = 12  # generated shapes per class for the ResNet-18 run (one epoch: a few seconds)

# A fresh interpreter with what the dashboard has already imported (the torch-free engine),
# timed from the click: import torch, load the run, explain one new image with Grad-CAM.
COLD = """
import json, sys, time
sys.path.insert(0, {root!r})
from core.explain.ensemble import explain
from core.explain.runner import read_input
from core.workspace import Workspace
marks = {{}}
start = time.perf_counter()
from core.models.loaded import load_run
with Workspace.open({home!r}) as ws:
    loaded = load_run(ws, {run!r})
    marks["model_s"] = time.perf_counter() - start
    x, sha, shown = read_input(loaded, {file!r})
    explain(loaded, {file!r}, 0, x, sha, shown, "gradcam",
            preview=lambda r: marks.setdefault("overlay_s", time.perf_counter() - start))
marks["done_s"] = time.perf_counter() - start
print(json.dumps({{k: round(v, 3) for k, v in marks.items()}}))
"""


def warm_path_report(rounds: int) -> dict:
    from core.explain.light import LIGHT_CAPS
    from core.workspace import Workspace

    methods = [m for m, modality in LIGHT_CAPS if modality == "image"]
    load_before = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="explain_warm_") as tmp, \
            Workspace.open(Path(tmp) / "ws") as ws:
        runs = {"digits (small CNN, 8x8)": _train(ws, {"dataset": "digits"}, {}),
                f"resnet18 ({RESNET_SIZE}x{RESNET_SIZE})": _resnet_run(ws, Path(tmp))}
        results = {}
        for label, (run_id, dataset) in runs.items():
            files = _test_images(ws, dataset, Path(tmp) / run_id, rounds + 3)
            results[label] = {
                "cold_gradcam": _cold(ws, run_id, files[0]),
                "warm": _warm(ws, run_id, files[1], files[2:2 + rounds], methods),
                "job_process_gradcam_s": _cli(ws, run_id, files[-1]),
                "cli_cache_hit_s": _cli(ws, run_id, files[-1]),
            }
            row = results[label]
            row["job_process_over_warm_gradcam"] = round(
                row["job_process_gradcam_s"] / row["warm"]["gradcam"]["done_s"], 1)
    import torch

    gradcam = {k: (v["cold_gradcam"]["overlay_s"], v["warm"]["gradcam"]["overlay_s"])
               for k, v in results.items()}
    return {
        "benchmark": "explain_warm_path", "device": "cpu", "torch": torch.__version__,
        "threads": torch.get_num_threads(), "warm_rounds": rounds, "methods": methods,
        "cpus": os.cpu_count(),  # other work on the machine slows every figure: its load
        "load_average_1min": {"before": round(load_before, 1),
                              "after": round(os.getloadavg()[0], 1)},
        "runs": results,
        "goals": "Grad-CAM overlay <= 1 s warm, <= 3 s cold (before browser rendering)",
        "passed": {k: {"warm": warm <= 1.0, "cold": cold <= 3.0}
                   for k, (cold, warm) in gradcam.items()},
    }


def _train(ws, data: dict, model: dict, train: dict | None = None) -> tuple[str, str]:
    from core.config import RunConfig
    from core.runs import create_run
    from core.train import execute_run

    raw = RunConfig().to_dict()
    raw["data"].update(data)
    raw["model"].update(model)
    raw["train"].update({"epochs": 1, **(train or {})})
    run = create_run(ws.store, RunConfig.from_dict(raw))
    summary = execute_run(ws, run.id)
    assert summary["status"] == "completed", summary
    return run.id, data["dataset"]


def _resnet_run(ws, tmp: Path) -> tuple[str, str]:
    """ResNet-18 (random init, nothing downloaded) trained one epoch on generated shapes at
    224 px: a real run whose latency, not its accuracy, is measured."""
    from PIL import Image

    from core.data import import_dataset
    from core.data.shapes import SHAPE_CLASSES, generate_shapes

    images, labels, _ = generate_shapes(n=PER_CLASS * len(SHAPE_CLASSES), size=RESNET_SIZE)
    root = tmp / "shapes_src"
    for k, (image, label) in enumerate(zip(images, labels, strict=True)):
        folder = root / SHAPE_CLASSES[label]
        folder.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(folder / f"{k}.png")
    import_dataset(ws, "shapes224", root)
    return _train(ws, {"dataset": "shapes224", "image_size": RESNET_SIZE},
                  {"name": "resnet18"}, {"batch_size": 16})


def _test_images(ws, dataset: str, folder: Path, count: int) -> list[Path]:
    """``count`` distinct images (PNG files, as the page saves its inputs), none explained yet."""
    from core.data import load_dataset

    data = load_dataset(ws, dataset)
    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for i in range(count):
        split = "test" if i < data.size("test") else "train"
        path = folder / f"{i}.png"
        data.raw(split, i % data.size(split)).save(path)
        files.append(path)
    return files


def _cold(ws, run_id: str, file: Path) -> dict:
    code = COLD.format(root=str(ROOT), home=str(ws.home), run=run_id, file=str(file))
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, cwd=ROOT)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _warm(ws, run_id: str, first: Path, files: list[Path], methods: list[str]) -> dict:
    """Each method once on ``first`` (untimed: the model and the libraries are then warm, as
    after a click a few minutes ago), then on each of ``files`` (new images): the medians."""
    from core.models.loaded import load_run

    loaded = load_run(ws, run_id)
    for method in methods:
        _click(loaded, first, method)
    rows = {}
    for method in methods:
        times = [_click(loaded, f, method) for f in files]
        rows[method] = {k: round(statistics.median(t[k] for t in times), 3)
                        for k in ("overlay_s", "done_s")}
    return rows


def _click(loaded, file: Path, method: str) -> dict:
    from core.explain.ensemble import explain
    from core.explain.runner import read_input

    marks = {}
    start = time.perf_counter()
    x, sha, shown = read_input(loaded, file)
    explain(loaded, file, 0, x, sha, shown, method,
            preview=lambda r: marks.setdefault("overlay_s", time.perf_counter() - start))
    marks["done_s"] = time.perf_counter() - start
    return marks


def _cli(ws, run_id: str, file: Path) -> float:
    """``python -m core explain RUN FILE --method gradcam`` from spawn to exit."""
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "core", "explain", run_id, str(file), "--method",
                    "gradcam", "--home", str(ws.home), "--json"], capture_output=True,
                   check=True, cwd=ROOT)
    return round(time.perf_counter() - start, 3)
