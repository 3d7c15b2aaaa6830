"""What the queue costs a user: the whole `train` command, and the hand-off between queued jobs.

Prints one JSON object. Everything is measured in one run, side by side with its floor:

* ``train_command``: ``python -m core train --dataset digits --epochs E`` (blocking: it queues a
  job and follows it) as the user waits for it, against the run's own training time and against
  the floor of any training process, a bare ``python -c "import core.train.trainer"``, and as a
  ratio to ``import torch`` plus the run's own training time (goal <= 1.5x).
* ``handoff``: three trainings queued with a cap of 1; the gap between one job's end and the next
  run's training start (its process started and imported, its status ``running``), against the
  same import floor.

Usage: ``python benchmarks/queue_latency.py [--epochs 10] [--jobs 3]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import runs  # noqa: E402
from core.config import RunConfig  # noqa: E402
from core.runs.store import Store  # noqa: E402


def timed(argv: list[str], home: Path) -> float:
    start = time.perf_counter()
    subprocess.run([sys.executable, *argv], cwd=ROOT, check=True, capture_output=True,
                   env={**os.environ, "LAB2MARKET_HOME": str(home)})
    return time.perf_counter() - start


def train_command(home: Path, epochs: int) -> dict:
    floor = min(timed(["-c", "import core.train.trainer"], home) for _ in range(3))
    torch_s = min(timed(["-c", "import torch"], home) for _ in range(3))
    whole = timed(["-m", "core", "train", "--dataset", "digits", "--epochs", str(epochs),
                   "--json"], home)
    with Store(home) as store:
        run = store.list_runs(limit=1)[0]
    training = run.duration or 0.0  # the job's own time: dataset, model, fit, checkpoints
    return {"whole_s": round(whole, 3), "training_s": round(training, 3),
            "import_floor_s": round(floor, 3), "import_torch_s": round(torch_s, 3),
            "status": run.status, "val_acc": run.summary.get("final", {}).get("val/acc"),
            "overhead_over_floor": round((whole - training) / floor, 2),
            # The goal of the "fast where a user waits" issue: <= 1.5x.
            "whole_vs_torch_plus_training": round(whole / (torch_s + training), 2)}


def handoff(home: Path, jobs: int) -> dict:
    floor = min(timed(["-c", "import core.train.trainer"], home) for _ in range(3))
    with Store(home) as store:
        runs.set_max_jobs(store, 1)
        ids = [runs.launch(store, RunConfig.from_dict(
            {"data": {"dataset": "digits"}, "train": {"epochs": 2}})).id for _ in range(jobs)]
        deadline = time.monotonic() + 600
        while time.monotonic() < deadline:
            runs.reconcile(store)
            if all(store.get_run(r).status in runs.TERMINAL for r in ids):
                break
            time.sleep(0.2)
        found = [store.latest_job(r, "train") for r in ids]
        started = [store.get_run(r).started_at for r in ids]
    gaps = [run_start - job.ended_at for job, run_start in zip(found, started[1:], strict=False)]
    overlap = any(b.started_at < a.ended_at for a, b in zip(found, found[1:], strict=False))
    return {"jobs": jobs, "statuses": [j.status for j in found],
            "gap_median_s": round(statistics.median(gaps), 3), "gap_max_s": round(max(gaps), 3),
            "import_floor_s": round(floor, 3), "overlapped": overlap,
            "gap_over_floor": round(statistics.median(gaps) / floor, 2)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--jobs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        result = {"train_command": train_command(Path(tmp) / "a", args.epochs),
                  "handoff": handoff(Path(tmp) / "b", args.jobs)}
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
