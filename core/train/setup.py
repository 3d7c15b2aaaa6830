"""Small builders the trainer composes: device, mixed precision, optimizer, scheduler."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch

from core.config import TrainConfig
from core.errors import DeviceUnavailable, InvalidConfig


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """``auto`` picks CUDA when present (one GPU per DDP rank), else the CPU."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda"):
        if not torch.cuda.is_available():
            raise DeviceUnavailable(f"Device {name!r} was asked for, but this machine has no "
                                    "CUDA GPU. Use --device auto or --device cpu.")
        if name == "cuda":
            name = f"cuda:{local_rank}"
        index = torch.device(name).index or 0
        if index >= torch.cuda.device_count():
            raise DeviceUnavailable(f"{name} does not exist: this machine has "
                                    f"{torch.cuda.device_count()} GPU(s).")
    elif name != "cpu":
        raise DeviceUnavailable(f"Unknown device {name!r}: use auto, cpu, cuda or cuda:N.")
    return torch.device(name)


@dataclass(frozen=True)
class Precision:
    dtype: torch.dtype | None  # None: full precision

    @property
    def name(self) -> str:
        return {None: "fp32", torch.bfloat16: "bf16", torch.float16: "fp16"}[self.dtype]

    def autocast(self, device: torch.device) -> contextlib.AbstractContextManager:
        if self.dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(device_type=device.type, dtype=self.dtype)

    def scaler(self, device: torch.device) -> torch.amp.GradScaler:
        # Loss scaling exists for fp16's narrow range; bf16 and fp32 do not need it.
        return torch.amp.GradScaler(device.type, enabled=self.dtype is torch.float16)


def resolve_precision(mode: str, device: torch.device) -> Precision:
    if mode == "off":
        return Precision(None)
    if mode == "auto":
        if device.type != "cuda":
            return Precision(None)
        return Precision(torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16)
    if mode == "bf16":
        return Precision(torch.bfloat16)
    if mode == "fp16":
        return Precision(torch.float16)
    raise InvalidConfig(f"amp must be auto, off, bf16 or fp16; got {mode!r}")


def build_optimizer(params, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in params if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(params, lr=cfg.lr, momentum=0.9, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adam":
        return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    raise InvalidConfig(f"Unknown optimizer {cfg.optimizer!r}")


def build_scheduler(optimizer: torch.optim.Optimizer, cfg: TrainConfig,
                    steps_per_epoch: int) -> torch.optim.lr_scheduler.LRScheduler | None:
    """Every scheduler steps once per optimizer step, so resume restores it exactly."""
    total = max(1, cfg.epochs * steps_per_epoch)
    if cfg.scheduler == "none":
        return None
    if cfg.scheduler == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
    if cfg.scheduler == "step":
        return torch.optim.lr_scheduler.StepLR(
            optimizer, step_size=max(1, cfg.step_size * steps_per_epoch), gamma=cfg.gamma)
    if cfg.scheduler == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(optimizer, max_lr=cfg.lr, total_steps=total)
    raise InvalidConfig(f"Unknown scheduler {cfg.scheduler!r}")
