"""Mixed-precision speed-up: the trainer's throughput with --amp off, bf16 and fp16.

Trains resnet18 on `shapes` at 224x224 (by default) through the real Trainer, one configuration
after another in one process, and prints samples/s and the ratios to fp32 as JSON. Meant for a
CUDA machine (goal on an H200: mixed precision >= 2x fp32); `--device cpu --image-size 32` is a
smoke run.

    python benchmarks/gpu_amp.py [--device cuda --image-size 224 --batch-size 128 --epochs 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402

from core.config import RunConfig  # noqa: E402
from core.train.trainer import Trainer  # noqa: E402
from core.workspace import Workspace  # noqa: E402


def throughput(amp: str, args: argparse.Namespace, ws: Workspace) -> float:
    config = RunConfig.from_dict({
        "data": {"dataset": "shapes", "image_size": args.image_size,
                 "num_workers": args.workers, "pin_memory": args.device != "cpu"},
        "model": {"name": args.model},
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "amp": amp,
                  "device": args.device, "optimizer": "sgd", "lr": 0.01},
    })
    trainer = Trainer(ws, config, ws.home / f"amp-{amp}")
    trainer.fit()
    # The first epoch includes cuDNN autotuning and allocator warm-up; report the last.
    return trainer.history[-1]["throughput"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--workers", type=int, default=0)
    parser.add_argument("--modes", default="off,bf16,fp16")
    args = parser.parse_args()
    if args.device.startswith("cuda"):
        torch.backends.cudnn.benchmark = True
    rates = {}
    with tempfile.TemporaryDirectory() as tmp, Workspace.open(tmp) as ws:
        for amp in args.modes.split(","):
            rates[amp] = throughput(amp, args, ws)
    base = rates.get("off")
    print(json.dumps({
        "benchmark": "gpu_amp", "device": args.device,
        "gpu": torch.cuda.get_device_name() if args.device.startswith("cuda") else None,
        "model": args.model, "image_size": args.image_size, "batch_size": args.batch_size,
        "samples_per_s": {k: round(v, 1) for k, v in rates.items()},
        "speedup_vs_fp32": {k: round(v / base, 2) for k, v in rates.items()} if base else None,
        "goal": 2.0,
    }, indent=2))


if __name__ == "__main__":
    main()
