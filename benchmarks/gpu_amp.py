"""Mixed-precision speed-up: training steps/s of resnet18 with --amp off, bf16 and fp16.

The training step is the trainer's: its precision rules (``core.train.setup.resolve_precision``:
autocast with the dtype, a GradScaler for fp16 only), SGD with momentum, cross-entropy. What the
step is fed is not the trainer's data pipeline: one core resizing images would bound the run, not
the GPU. The batches are made once, on the device (a fixed pool of ``--pool`` random batches
cycled through), so only the model's work is timed. ``torch.cuda.synchronize()`` runs before the
clock is read at both ends (CUDA calls return before the work is done), after ``--warmup`` steps
(cuDNN autotuning, the allocator), over ``--steps`` steps. Modes are interleaved over
``--rounds`` rounds; the best round of each is reported, and the spread.

Meant for a CUDA machine (goal: mixed precision >= 2x fp32 on a recent GPU); ``--device cpu
--image-size 32 --steps 5`` is a smoke run. Prints one JSON object.

    python benchmarks/gpu_amp.py [--device cuda --image-size 224 --batch-size 128 --steps 100]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from types import SimpleNamespace

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from core.models import create_model  # noqa: E402
from core.train.setup import resolve_precision  # noqa: E402

CLASSES = 10


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def build(args: argparse.Namespace, device: torch.device) -> nn.Module:
    info = SimpleNamespace(modality="image", channels=3, classes=[str(i) for i in range(CLASSES)],
                           image_size=args.image_size, name="benchmark")
    torch.manual_seed(0)
    model = create_model(args.model, info, image_size=args.image_size).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    return model.train()


def steps_per_s(amp: str, model: nn.Module, batches: list, args: argparse.Namespace,
                device: torch.device) -> float:
    precision = resolve_precision(amp, device)
    scaler = precision.scaler(device)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.9)
    criterion = nn.CrossEntropyLoss()

    def step(i: int) -> None:
        x, y = batches[i % len(batches)]
        with precision.autocast(device):
            loss = criterion(model(x), y)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    for i in range(args.warmup):
        step(i)
    sync(device)
    start = time.perf_counter()
    for i in range(args.steps):
        step(i)
    sync(device)
    return args.steps / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--model", default="resnet18")
    parser.add_argument("--image-size", type=int, default=224)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--warmup", type=int, default=15)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--pool", type=int, default=4, help="distinct batches, made once")
    parser.add_argument("--modes", default="off,bf16,fp16")
    args = parser.parse_args()
    device = torch.device(args.device)
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    generator = torch.Generator(device="cpu").manual_seed(0)
    batches = []
    for _ in range(args.pool):
        x = torch.randn(args.batch_size, 3, args.image_size, args.image_size,
                        generator=generator).to(device)
        if device.type == "cuda":
            x = x.contiguous(memory_format=torch.channels_last)
        batches.append((x, torch.randint(0, CLASSES, (args.batch_size,),
                                         generator=generator).to(device)))
    modes = args.modes.split(",")
    rates: dict[str, list[float]] = {m: [] for m in modes}
    for _ in range(args.rounds):
        for amp in modes:  # a fresh model per mode and round: same start, no state carried
            rates[amp].append(steps_per_s(amp, build(args, device), batches, args, device))
    best = {m: max(r) for m, r in rates.items()}
    base = best.get("off")
    print(json.dumps({
        "benchmark": "gpu_amp", "device": str(device),
        "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else None,
        "torch": torch.__version__, "model": args.model, "image_size": args.image_size,
        "batch_size": args.batch_size, "steps": args.steps, "warmup": args.warmup,
        "rounds": args.rounds, "data": "random batches made once on the device",
        "samples_per_s": {m: round(r * args.batch_size, 1) for m, r in best.items()},
        "samples_per_s_median": {m: round(statistics.median(r) * args.batch_size, 1)
                                 for m, r in rates.items()},
        "speedup_vs_fp32": {m: round(r / base, 2) for m, r in best.items()} if base else None,
        "goal": 2.0,
    }, indent=2))


if __name__ == "__main__":
    main()
