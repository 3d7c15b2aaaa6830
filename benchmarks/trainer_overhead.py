"""Trainer overhead: the Trainer's training samples/s over a bare PyTorch loop's.

Same model, data, batch size and thread count, in one process, interleaved (bare, trainer, bare,
trainer, ...) so machine drift hits both. The trainer runs with its real callbacks (store writes,
early stopping). Prints one JSON object. Goal: ratio >= 0.95.

    python benchmarks/trainer_overhead.py [--dataset shapes --image-size 32 --epochs 3 --rounds 3]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch  # noqa: E402
from torch import nn  # noqa: E402

from core.config import RunConfig  # noqa: E402
from core.data import load_dataset  # noqa: E402
from core.data.torchdata import build_torch_split  # noqa: E402
from core.models import create_model  # noqa: E402
from core.train.callbacks import EarlyStopping, StoreLogger  # noqa: E402
from core.train.trainer import Trainer  # noqa: E402
from core.workspace import Workspace  # noqa: E402


def bare_loop(config: RunConfig, ws: Workspace) -> float:
    """What a person writes by hand: TensorDataset, DataLoader, Adam, forward/backward/step."""
    torch.manual_seed(config.train.seed)
    dataset = load_dataset(ws, config.data.dataset)
    size = config.data.image_size or dataset.info.image_size
    split = build_torch_split(dataset, "train", size)
    xs = torch.stack([split[i][0] for i in range(len(split))])
    ys = torch.tensor([split[i][1] for i in range(len(split))])
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xs, ys),
                                         batch_size=config.train.batch_size, shuffle=True)
    model = create_model(config.model.name, dataset.info, config.model, image_size=size)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    criterion = nn.CrossEntropyLoss()
    rates = []
    for _ in range(config.train.epochs):
        model.train()
        seen, t0 = 0, time.perf_counter()
        for x, y in loader:
            loss = criterion(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            seen += len(y)
        rates.append(seen / (time.perf_counter() - t0))
    return statistics.median(rates[1:] or rates)  # the first epoch warms caches up


def trainer_loop(config: RunConfig, ws: Workspace) -> float:
    store = ws.store
    run = store.create_run(config.to_dict())
    t = config.train
    trainer = Trainer(ws, config, ws.run_dir(run.id),
                      callbacks=[EarlyStopping(t.monitor, t.mode, t.patience),
                                 StoreLogger(store, run.id)])
    trainer.fit()
    rates = [h["throughput"] for h in trainer.history]
    return statistics.median(rates[1:] or rates)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--model", default="smallcnn")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    config = RunConfig.from_dict({
        "data": {"dataset": args.dataset, "image_size": args.image_size},
        "model": {"name": args.model},
        "train": {"epochs": args.epochs, "batch_size": args.batch_size, "device": "cpu",
                  "amp": "off"},
    })
    bare, ours = [], []
    with tempfile.TemporaryDirectory() as tmp, Workspace.open(tmp) as ws:
        for _ in range(args.rounds):
            bare.append(bare_loop(config, ws))
            ours.append(trainer_loop(config, ws))
    ratio = statistics.median(ours) / statistics.median(bare)
    print(json.dumps({
        "benchmark": "trainer_overhead", "dataset": args.dataset, "model": args.model,
        "image_size": args.image_size, "batch_size": args.batch_size,
        "threads": torch.get_num_threads(),
        "bare_samples_per_s": round(statistics.median(bare), 1),
        "trainer_samples_per_s": round(statistics.median(ours), 1),
        "ratio": round(ratio, 3), "goal": 0.95, "meets_goal": ratio >= 0.95,
    }, indent=2))


if __name__ == "__main__":
    main()
