"""Typed run configuration, saved as ``config.json`` beside each run.

The same config reproduces the run (it carries the seed). CLI flags and page forms both build a
``RunConfig``; unknown keys are refused rather than silently ignored.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from core.errors import InvalidConfig

AMP_MODES = ("auto", "off", "bf16", "fp16")
OPTIMIZERS = ("sgd", "adam", "adamw")
SCHEDULERS = ("none", "cosine", "step", "onecycle")
AUGMENTATIONS = ("flip", "rotate", "crop", "color")


@dataclass
class DataConfig:
    dataset: str = "digits"
    image_size: int | None = None  # None: the dataset's native/default size
    augment: list[str] = field(default_factory=list)  # subset of AUGMENTATIONS, training only
    num_workers: int = 0  # DataLoader workers; 0 is fastest for the small built-ins
    pin_memory: bool = False  # only useful when training on CUDA


@dataclass
class ModelConfig:
    name: str = "smallcnn"
    pretrained: bool = False  # torchvision weights from the local torch cache
    weights: str | None = None  # a torchvision state dict or another run's checkpoint
    freeze_backbone: bool = False  # train only the classification head


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 64
    lr: float = 1e-3
    optimizer: str = "adam"
    weight_decay: float = 0.0
    scheduler: str = "none"
    step_size: int = 5  # epochs between decays, for scheduler=step
    gamma: float = 0.1  # decay factor, for scheduler=step
    label_smoothing: float = 0.0
    amp: str = "auto"  # auto: bf16/fp16 on CUDA, off on CPU
    grad_accum: int = 1  # micro-batches per optimizer step
    patience: int | None = None  # early stopping: epochs without improvement (None: off)
    monitor: str = "val/loss"
    mode: str = "min"  # "min" for losses, "max" for accuracies
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    nproc: int = 1  # processes for distributed data parallel (torchrun)
    max_grad_norm: float | None = None  # gradient clipping (None: off)


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        unknown = set(raw) - {"data", "model", "train"}
        if unknown:
            raise InvalidConfig(f"Unknown config sections: {sorted(unknown)}")
        cfg = cls(
            data=_build(DataConfig, raw.get("data", {})),
            model=_build(ModelConfig, raw.get("model", {})),
            train=_build(TrainConfig, raw.get("train", {})),
        )
        cfg.validate()
        return cfg

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(self.to_dict(), indent=2))

    @classmethod
    def load(cls, path: Path) -> RunConfig:
        return cls.from_dict(json.loads(Path(path).read_text()))

    def validate(self) -> None:
        t = self.train
        _choice("amp", t.amp, AMP_MODES)
        _choice("optimizer", t.optimizer, OPTIMIZERS)
        _choice("scheduler", t.scheduler, SCHEDULERS)
        _choice("mode", t.mode, ("min", "max"))
        for aug in self.data.augment:
            _choice("augment", aug, AUGMENTATIONS)
        _positive("epochs", t.epochs)
        _positive("batch_size", t.batch_size)
        _positive("grad_accum", t.grad_accum)
        _positive("nproc", t.nproc)
        if t.lr <= 0:
            raise InvalidConfig(f"lr must be > 0, got {t.lr}")
        if not 0 <= t.label_smoothing < 1:
            raise InvalidConfig(f"label_smoothing must be in [0, 1), got {t.label_smoothing}")
        if t.patience is not None and t.patience < 1:
            raise InvalidConfig(f"patience must be >= 1 (or unset), got {t.patience}")
        if self.data.image_size is not None and not 4 <= self.data.image_size <= 1024:
            raise InvalidConfig(f"image_size must be in [4, 1024], got {self.data.image_size}")
        if self.model.pretrained and self.model.weights:
            raise InvalidConfig("Use either --pretrained or --weights FILE, not both.")


def _build(kind: type, values: dict[str, Any]) -> Any:
    names = {f.name for f in dataclasses.fields(kind)}
    unknown = set(values) - names
    if unknown:
        raise InvalidConfig(f"Unknown {kind.__name__} fields: {sorted(unknown)}")
    return kind(**values)


def _choice(name: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise InvalidConfig(f"{name} must be one of {', '.join(choices)}; got {value!r}")


def _positive(name: str, value: int) -> None:
    if value < 1:
        raise InvalidConfig(f"{name} must be >= 1, got {value}")
