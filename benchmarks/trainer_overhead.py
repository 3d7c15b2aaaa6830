"""Trainer overhead: the Trainer against a loop written by hand, on the same model and data.

Two figures, each measured in rounds interleaved (hand-written, trainer, [Lightning], ...) so
machine drift hits all of them; the spread over rounds (min, median, max) is reported:

* ``training_throughput``: training samples/s in the epochs after the first (the trainer with its
  real callbacks: store writes, early stopping) over a bare DataLoader loop's. Goal >= 0.95.
* ``whole_fit``: the wall time of a whole ``fit()`` (data preparation, validation every epoch,
  checkpoints, the store's metric flushes) against a hand-written loop doing the same validation
  and checkpointing (``torch.save`` of model and optimizer to a temp file renamed into place every
  epoch, copied when validation accuracy improves), on ``--fit-dataset`` (digits). When
  Lightning is installed, its ``Trainer`` on the same model, data and checkpointing too.

Prints one JSON object.

    python benchmarks/trainer_overhead.py [--dataset shapes --image-size 32 --epochs 3 --rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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


def hand_written_fit(config: RunConfig, ws: Workspace, folder: Path) -> float:
    """A whole fit as a person writes it: tensors, DataLoaders, Adam, per epoch a training
    pass, a validation pass (loss, accuracy) and checkpoints. Returns its wall time."""
    start = time.perf_counter()
    torch.manual_seed(config.train.seed)
    dataset = load_dataset(ws, config.data.dataset)
    size = config.data.image_size or dataset.info.image_size
    loaders = {split: _loader(dataset, split, size, config.train.batch_size, split == "train")
               for split in ("train", "val")}
    model = create_model(config.model.name, dataset.info, config.model, image_size=size)
    optimizer = torch.optim.Adam(model.parameters(), lr=config.train.lr)
    criterion = nn.CrossEntropyLoss()
    best = -1.0
    folder.mkdir(parents=True, exist_ok=True)
    for epoch in range(config.train.epochs):
        model.train()
        for x, y in loaders["train"]:
            loss = criterion(model(x), y)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        model.eval()
        correct, total, val_loss = 0, 0, 0.0
        with torch.no_grad():
            for x, y in loaders["val"]:
                logits = model(x)
                val_loss += float(criterion(logits, y)) * len(y)
                correct += int((logits.argmax(1) == y).sum())
                total += len(y)
        accuracy = correct / total
        tmp = folder / ".last.pt.tmp"
        torch.save({"model": model.state_dict(), "optimizer": optimizer.state_dict(),
                    "epoch": epoch, "val_acc": accuracy}, tmp)
        os.replace(tmp, folder / "last.pt")
        if accuracy > best:
            best = accuracy
            shutil.copyfile(folder / "last.pt", folder / "best.pt")
    return time.perf_counter() - start


def _loader(dataset, split: str, size: int, batch_size: int, shuffle: bool):
    data = build_torch_split(dataset, split, size)
    xs = torch.stack([data[i][0] for i in range(len(data))])
    ys = torch.tensor([data[i][1] for i in range(len(data))])
    return torch.utils.data.DataLoader(torch.utils.data.TensorDataset(xs, ys),
                                       batch_size=batch_size, shuffle=shuffle)


def trainer_fit(config: RunConfig, ws: Workspace) -> float:
    """The project's whole ``fit()``, with the callbacks a run gets (store, early stopping)."""
    start = time.perf_counter()
    trainer_loop(config, ws)
    return time.perf_counter() - start


def lightning_fit(config: RunConfig, ws: Workspace, folder: Path) -> float | None:
    """Lightning's Trainer on the same model, data, validation and checkpointing; None when
    Lightning is not installed."""
    try:
        import lightning as L
    except ImportError:
        return None
    from lightning.pytorch.callbacks import ModelCheckpoint

    start = time.perf_counter()
    torch.manual_seed(config.train.seed)
    dataset = load_dataset(ws, config.data.dataset)
    size = config.data.image_size or dataset.info.image_size
    train = _loader(dataset, "train", size, config.train.batch_size, True)
    val = _loader(dataset, "val", size, config.train.batch_size, False)
    net = create_model(config.model.name, dataset.info, config.model, image_size=size)

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.net = net

        def training_step(self, batch, _index):
            x, y = batch
            return nn.functional.cross_entropy(self.net(x), y)

        def validation_step(self, batch, _index):
            x, y = batch
            logits = self.net(x)
            self.log("val_loss", nn.functional.cross_entropy(logits, y))
            self.log("val_acc", (logits.argmax(1) == y).float().mean())

        def configure_optimizers(self):
            return torch.optim.Adam(self.parameters(), lr=config.train.lr)

    checkpoint = ModelCheckpoint(dirpath=folder, monitor="val_acc", mode="max", save_last=True)
    L.Trainer(max_epochs=config.train.epochs, accelerator="cpu", devices=1, logger=False,
              enable_progress_bar=False, enable_model_summary=False, callbacks=[checkpoint],
              num_sanity_val_steps=0).fit(Module(), train, val)
    return time.perf_counter() - start


def spread(times: list[float]) -> dict[str, float]:
    return {"min_s": round(min(times), 3), "median_s": round(statistics.median(times), 3),
            "max_s": round(max(times), 3)}


def whole_fit(args: argparse.Namespace, ws: Workspace, tmp: Path) -> dict:
    config = RunConfig.from_dict({
        "data": {"dataset": args.fit_dataset}, "model": {"name": args.model},
        "train": {"epochs": args.fit_epochs, "batch_size": args.batch_size, "device": "cpu",
                  "amp": "off"},
    })
    times: dict[str, list[float]] = {"hand_written": [], "trainer": [], "lightning": []}
    for i in range(args.rounds):
        times["hand_written"].append(hand_written_fit(config, ws, tmp / f"hand-{i}"))
        times["trainer"].append(trainer_fit(config, ws))
        lightning = lightning_fit(config, ws, tmp / f"lightning-{i}")
        if lightning is not None:
            times["lightning"].append(lightning)
    hand, ours = statistics.median(times["hand_written"]), statistics.median(times["trainer"])
    out = {"dataset": args.fit_dataset, "epochs": args.fit_epochs, "rounds": args.rounds,
           "hand_written": spread(times["hand_written"]), "trainer": spread(times["trainer"]),
           "trainer_over_hand_written": round(ours / hand, 3)}
    if times["lightning"]:
        out["lightning"] = spread(times["lightning"])
        out["trainer_over_lightning"] = round(ours / statistics.median(times["lightning"]), 3)
    else:
        out["lightning"] = "not installed"
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="shapes")
    parser.add_argument("--model", default="smallcnn")
    parser.add_argument("--image-size", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--fit-dataset", default="digits")
    parser.add_argument("--fit-epochs", type=int, default=5)
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
        fit = whole_fit(args, ws, Path(tmp))
    ratio = statistics.median(ours) / statistics.median(bare)
    print(json.dumps({
        "benchmark": "trainer_overhead", "model": args.model, "batch_size": args.batch_size,
        "threads": torch.get_num_threads(), "load_avg_1m": round(os.getloadavg()[0], 2),
        "training_throughput": {
            "dataset": args.dataset, "image_size": args.image_size, "epochs": args.epochs,
            "bare_samples_per_s": round(statistics.median(bare), 1),
            "trainer_samples_per_s": round(statistics.median(ours), 1),
            "bare_spread": [round(min(bare), 1), round(max(bare), 1)],
            "trainer_spread": [round(min(ours), 1), round(max(ours), 1)],
            "ratio": round(ratio, 3), "goal": 0.95, "meets_goal": ratio >= 0.95},
        "whole_fit": fit,
    }, indent=2))


if __name__ == "__main__":
    main()
