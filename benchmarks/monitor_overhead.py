"""Resource monitor overhead: training throughput with the monitor on against off.

The same run (same config and seed) is trained in rounds interleaved — off, on at the default
interval (5 s), on at 1 s (five times the default rate) — so machine drift hits all of them.
Throughput is the trainer's own ``throughput`` metric (training samples/s, validation excluded)
of the epochs after the first, with the store logger on in every variant. Reported per variant:
the median over rounds and the ratio to "off" (median, min, max over rounds). Goal: overhead <= 2%
(ratio >= 0.98) at the default interval.

On a shared, loaded machine the throughput of two identical runs differs by more than 2%, so the
script also measures what the monitor costs directly, which load does not blur: the CPU time of
one sample (``time.thread_time`` around ``ResourceSampler.sample()``, median of 50), and that
cost as a share of one core at the default interval (``sample_cpu_share_default``).

Prints one JSON object.

    python benchmarks/monitor_overhead.py [--dataset shapes --image-size 32 --epochs 4 --rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.config import RunConfig  # noqa: E402
from core.runs import create_run  # noqa: E402
from core.train.callbacks import StoreLogger  # noqa: E402
from core.train.monitor import ResourceMonitor, ResourceSampler  # noqa: E402
from core.train.trainer import Trainer  # noqa: E402
from core.workspace import Workspace  # noqa: E402

VARIANTS = {"off": None, "default_5s": 5.0, "every_1s": 1.0}


def throughput(ws: Workspace, config: RunConfig, every_s: float | None) -> tuple[float, int]:
    """Median samples/s of the epochs after the first; and how many samples the monitor took."""
    run = create_run(ws.store, config)
    callbacks = [StoreLogger(ws.store, run.id)]
    if every_s is not None:
        callbacks.append(ResourceMonitor(ws.store, run.id, every_s=every_s))
    Trainer(ws, config, ws.run_dir(run.id), callbacks=callbacks).fit()
    rates = [v for _, v in ws.store.get_metrics(run.id, keys=["throughput"])["throughput"]]
    samples = len(ws.store.get_metrics(run.id, keys=["sys/ram_mb"]).get("sys/ram_mb", []))
    return statistics.median(rates[1:] or rates), samples


def sample_cost_ms(samples: int = 50) -> float:
    """CPU milliseconds of one reading of this process tree and every GPU (median)."""
    sampler = ResourceSampler()
    costs = []
    for _ in range(samples):
        t0 = time.thread_time()
        sampler.sample()
        costs.append((time.thread_time() - t0) * 1000)
    return statistics.median(costs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    raw = RunConfig().to_dict()
    raw["data"].update(dataset=args.dataset, image_size=args.image_size)
    raw["train"].update(epochs=args.epochs, batch_size=64, resource_every=0)
    config = RunConfig.from_dict(raw)
    found: dict[str, list[float]] = {name: [] for name in VARIANTS}
    samples: dict[str, int] = {}
    load_before = os.getloadavg()[0]  # a loaded machine blurs the throughput ratios: say so
    with tempfile.TemporaryDirectory() as home, Workspace.open(home) as ws:
        for _ in range(args.rounds):
            for name, every in VARIANTS.items():
                rate, samples[name] = throughput(ws, config, every)
                found[name].append(rate)
    cost = sample_cost_ms()
    off = found["off"]
    ratios = {name: [r / o for r, o in zip(rates, off, strict=True)]
              for name, rates in found.items() if name != "off"}
    print(json.dumps({
        "benchmark": "monitor_overhead", "dataset": args.dataset, "image_size": args.image_size,
        "epochs": args.epochs, "rounds": args.rounds, "cpu_count": os.cpu_count(),
        "gpus_seen": ResourceSampler().gpu_count,
        "throughput_samples_per_s": {k: round(statistics.median(v), 1) for k, v in found.items()},
        "throughput_ratio_to_off": {k: {"median": round(statistics.median(v), 4),
                                        "min": round(min(v), 4), "max": round(max(v), 4)}
                                    for k, v in ratios.items()},
        "overhead_pct_default": round(100 * (1 - statistics.median(ratios["default_5s"])), 2),
        "sample_cpu_ms": round(cost, 3),
        "sample_cpu_share_default": round(cost / 1000 / VARIANTS["default_5s"], 6),
        "sample_cpu_share_every_1s": round(cost / 1000 / VARIANTS["every_1s"], 6),
        "monitor_samples_last_round": samples,
        "load_average_1m": {"before": round(load_before, 2),
                            "after": round(os.getloadavg()[0], 2)},
        "goal": "overhead <= 2% at the default 5 s interval",
    }, indent=2))


if __name__ == "__main__":
    main()
