"""Shared by the compression tests: a tiny ``shapes`` dataset and runs trained in-process.

``mini_shapes`` imports 96 generated shape images (the ``shapes`` built-in's generator, 32 px)
as an image-folder dataset, so a resnet18 epoch takes a second or two on a shared CPU.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from PIL import Image

from core.config import RunConfig
from core.runs import create_run
from core.train import execute_run
from core.workspace import Workspace

MINI = "minishapes"


def mini_shapes(ws: Workspace, folder: Path, n: int = 96, size: int = 32) -> str:
    """Import ``n`` generated shapes as dataset ``minishapes`` (if not there yet)."""
    from core.data import import_dataset, list_datasets
    from core.data.shapes import SHAPE_CLASSES, generate_shapes

    if MINI in {d.name for d in list_datasets(ws)}:
        return MINI
    images, labels, _ = generate_shapes(n=n, size=size, seed=7)
    for i, (image, label) in enumerate(zip(images, labels, strict=True)):
        target = folder / SHAPE_CLASSES[label]
        target.mkdir(parents=True, exist_ok=True)
        Image.fromarray(image).save(target / f"{i:03d}.png")
    import_dataset(ws, MINI, folder)
    return MINI


def config(model: str, epochs: int = 1, **data: Any) -> RunConfig:
    raw = RunConfig().to_dict()
    raw["data"].update(dataset=MINI, **data)
    raw["model"]["name"] = model
    raw["train"].update(epochs=epochs, batch_size=32, lr=1e-3, seed=0)
    return RunConfig.from_dict(raw)


def train_now(ws: Workspace, cfg: RunConfig, kind: str = "trained", parent: str | None = None,
              callbacks: tuple = ()) -> str:
    """Record a run and train it in this process; returns its id (completed or not)."""
    run = create_run(ws.store, cfg, kind=kind, parent_run=parent)
    execute_run(ws, run.id, callbacks=list(callbacks))
    return run.id
