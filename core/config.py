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
MODES = ("min", "max")  # of the monitored metric
# MLflow tracking URIs; a bare path would become a folder relative to whatever the job's cwd is.
MLFLOW_SCHEMES = ("http://", "https://", "file:", "sqlite:///", "postgresql://", "mysql://",
                  "databricks")
MAX_FOLDS = 50  # cross-validation folds (more is leave-almost-one-out: a loop, not a queue)


def _opt(default: Any, doc: str, **meta: Any) -> Any:
    """A config field whose ``metadata`` carries its help (``doc``) and, where it has them, its
    ``choices`` and CLI ``flag``: ``core.cli`` builds the train flags from these, so every field
    has a flag and its help lives next to its default."""
    meta["doc"] = doc
    if isinstance(default, list):  # a mutable default needs a factory
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)


@dataclass
class DataConfig:
    dataset: str = _opt("digits", "a built-in or imported dataset (`datasets list`)")
    image_size: int | None = _opt(None, "resize images to N x N (default: the dataset's "
                                        "native/default size)")
    augment: list[str] = _opt([], "training-only augmentations, comma-separated",
                              choices=AUGMENTATIONS)
    num_workers: int = _opt(0, "DataLoader workers; 0 is fastest for the small built-ins")
    pin_memory: bool = _opt(False, "pin host memory (only useful when training on CUDA)")
    cv: int | None = _opt(None, "k-fold cross-validation: K runs (one per stratified fold of "
                                "train+val, the test split held out) under one parent")
    fold: int | None = _opt(None, "with --cv K: train only this fold (0..K-1), validating on it; "
                                  "each fold run's config carries it")
    train_on_val: bool = _opt(False, "train on train+val and validate on nothing (the final model "
                                     "after cross-validation): needs a test split; no early "
                                     "stopping or best epoch on val, the last epoch is kept")


@dataclass
class ModelConfig:
    name: str = _opt("smallcnn", "a registered model (`models`); default: smallcnn for "
                                 "images, mlp for tables", flag="--model")
    pretrained: bool = _opt(False, "torchvision weights from the local torch cache")
    weights: str | None = _opt(None, "a torchvision state dict or another run's checkpoint")
    freeze_backbone: bool = _opt(False, "train only the classification head")
    dropout: float | None = _opt(None, "dropout rate in [0, 1) of the models that have dropout "
                                       "(`models`); default: the model's own")


@dataclass
class TrainConfig:
    epochs: int = _opt(10, "passes over the training split")
    batch_size: int = _opt(64, "samples per micro-batch")
    lr: float = _opt(1e-3, "learning rate")
    optimizer: str = _opt("adam", "optimizer", choices=OPTIMIZERS)
    weight_decay: float = _opt(0.0, "weight decay")
    scheduler: str = _opt("none", "learning-rate schedule", choices=SCHEDULERS)
    step_size: int = _opt(5, "epochs between decays, for --scheduler step")
    gamma: float = _opt(0.1, "decay factor, for --scheduler step")
    label_smoothing: float = _opt(0.0, "label smoothing in [0, 1)")
    amp: str = _opt("auto", "mixed precision; auto: bf16/fp16 on CUDA, off on CPU",
                    choices=AMP_MODES)
    grad_accum: int = _opt(1, "micro-batches per optimizer step")
    patience: int | None = _opt(None, "early stopping: epochs without improvement (default: off)")
    monitor: str = _opt("val/loss", "metric for early stopping and best.pt")
    mode: str = _opt("min", "min for losses, max for accuracies", choices=MODES)
    seed: int = _opt(0, "random seed (the same config reproduces the run)")
    device: str = _opt("auto", "auto | cpu | cuda | cuda:N")
    nproc: int = _opt(1, "processes for distributed data parallel (torchrun)")
    memory_gb: float | None = _opt(None, "host memory (GB) the job reserves on a cluster "
                                         "executor (Ray); default: 2 per process")
    max_grad_norm: float | None = _opt(None, "gradient clipping norm (default: off)")
    class_weights: bool = _opt(False, "weight the loss by inverse class frequency in the "
                                      "training split (for imbalanced classes)")
    balanced_sampler: bool = _opt(False, "draw training samples class-balanced (with "
                                         "replacement; each epoch keeps its length)")
    resource_every: float = _opt(5.0, "seconds between samples of CPU, RAM and GPU use into "
                                      "the run's metrics (0: off)")
    mlflow: str | None = _opt(None, "log to MLflow at this tracking URI (http://HOST:PORT, "
                                    "file:///DIR); default: the workspace's, else off; "
                                    "off: not this run")
    tensorboard: str | None = _opt(None, "write TensorBoard logs under this folder (a relative "
                                         "one is in the workspace; a subfolder per run); "
                                         "default: the workspace's, else off; off: not this "
                                         "run")


PRUNE_METHODS = ("structured", "unstructured")
IMPORTANCES = ("l1", "l2", "bn", "taylor")  # structured; unstructured ranks by magnitude
PRUNE_TARGETS = ("channels", "params", "macs")  # what --amount is a fraction of
PRUNE_SCOPES = ("global", "layer")  # unstructured: one threshold for all layers, or per layer


@dataclass
class PruneConfig:
    """How a run of kind ``pruned`` is made from ``source`` (its parent run's best weights)."""

    source: str = ""
    method: str = "structured"
    amount: float = 0.5  # fraction removed of each layer's channels, or of the params / MACs
    target: str = "channels"
    importance: str = "l1"
    steps: int = 1  # prune + fine-tune rounds; train.epochs is split evenly between them
    scope: str = "global"

    def validate(self, epochs: int) -> None:
        _choice("prune method", self.method, PRUNE_METHODS)
        _choice("prune target", self.target, PRUNE_TARGETS)
        _choice("importance", self.importance, IMPORTANCES)
        _choice("prune scope", self.scope, PRUNE_SCOPES)
        if not 0 < self.amount < 1:
            raise InvalidConfig(f"amount must be between 0 and 1 (a fraction), got {self.amount}")
        if self.steps < 1:
            raise InvalidConfig(f"steps must be >= 1, got {self.steps}")
        if epochs % self.steps:
            raise InvalidConfig(f"steps ({self.steps}) must divide the epochs ({epochs}) evenly")


@dataclass
class DistillConfig:
    """How a run of kind ``distilled`` learns from ``teacher``: alpha * T^2 * KL + (1-alpha) CE."""

    teacher: str = ""
    temperature: float = 4.0
    alpha: float = 0.7

    def validate(self) -> None:
        if not self.temperature > 0:
            raise InvalidConfig(f"temperature must be > 0, got {self.temperature}")
        if not 0 <= self.alpha <= 1:
            raise InvalidConfig(f"alpha must be in [0, 1], got {self.alpha}")


@dataclass
class RunConfig:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    # Only pruned / distilled runs have these sections (left out of config.json otherwise).
    prune: PruneConfig | None = None
    distill: DistillConfig | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: v for k, v in dataclasses.asdict(self).items() if v is not None}

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> RunConfig:
        unknown = set(raw) - {"data", "model", "train", "prune", "distill"}
        if unknown:
            raise InvalidConfig(f"Unknown config sections: {sorted(unknown)}")
        cfg = cls(
            data=_build(DataConfig, raw.get("data", {})),
            model=_build(ModelConfig, raw.get("model", {})),
            train=_build(TrainConfig, raw.get("train", {})),
            prune=_build(PruneConfig, raw["prune"]) if raw.get("prune") else None,
            distill=_build(DistillConfig, raw["distill"]) if raw.get("distill") else None,
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
        _choice("mode", t.mode, MODES)
        for aug in self.data.augment:
            _choice("augment", aug, AUGMENTATIONS)
        _positive("epochs", t.epochs)
        _positive("batch_size", t.batch_size)
        _positive("grad_accum", t.grad_accum)
        _positive("nproc", t.nproc)
        if t.memory_gb is not None and t.memory_gb <= 0:
            raise InvalidConfig(f"memory_gb must be > 0 (or unset), got {t.memory_gb}")
        if t.lr <= 0:
            raise InvalidConfig(f"lr must be > 0, got {t.lr}")
        if not 0 <= t.label_smoothing < 1:
            raise InvalidConfig(f"label_smoothing must be in [0, 1), got {t.label_smoothing}")
        if t.mlflow and t.mlflow != "off" and not t.mlflow.startswith(MLFLOW_SCHEMES):
            raise InvalidConfig(f"mlflow must be a tracking URI (http://HOST:PORT, "
                                f"file:///DIR, sqlite:///FILE) or off; got {t.mlflow!r}")
        if t.resource_every < 0:
            raise InvalidConfig(f"resource_every must be >= 0 seconds, got {t.resource_every}")
        if t.patience is not None and t.patience < 1:
            raise InvalidConfig(f"patience must be >= 1 (or unset), got {t.patience}")
        if self.data.image_size is not None and not 4 <= self.data.image_size <= 1024:
            raise InvalidConfig(f"image_size must be in [4, 1024], got {self.data.image_size}")
        _check_folds(self.data)
        _check_train_on_val(self)
        if self.prune is not None:
            self.prune.validate(t.epochs)
        if self.distill is not None:
            self.distill.validate()
        if self.model.dropout is not None and not 0 <= self.model.dropout < 1:
            raise InvalidConfig(f"dropout must be in [0, 1), got {self.model.dropout}")
        if self.model.pretrained and self.model.weights:
            raise InvalidConfig("Use either --pretrained or --weights FILE, not both.")


def _check_train_on_val(cfg: RunConfig) -> None:
    """Training on val leaves nothing to validate on: nothing on val can stop or pick epochs."""
    if not cfg.data.train_on_val:
        return
    if cfg.data.cv is not None:
        raise InvalidConfig("train_on_val trains one final model on all of train+val; "
                            "cross-validation splits them: drop one of --cv and --train-on-val.")
    if cfg.train.patience is not None and cfg.train.monitor.startswith("val/"):
        raise InvalidConfig(f"train_on_val leaves no validation split, so early stopping on "
                            f"{cfg.train.monitor} cannot run: drop --patience (the run trains "
                            "all its epochs and keeps the last one).")


def _check_folds(data: DataConfig) -> None:
    if data.cv is not None and not 2 <= data.cv <= MAX_FOLDS:
        raise InvalidConfig(f"cv must be from 2 to {MAX_FOLDS} folds, got {data.cv}")
    if data.fold is not None:
        if data.cv is None:
            raise InvalidConfig("fold needs cv: give --cv K with --fold I")
        if not 0 <= data.fold < data.cv:
            raise InvalidConfig(f"fold must be from 0 to {data.cv - 1} (cv {data.cv}), "
                                f"got {data.fold}")


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
