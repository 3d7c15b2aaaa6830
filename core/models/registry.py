"""Model registry: small builders registered by name, adapted to a dataset, with transfer learning.

``create_model(name, info, cfg)`` builds a classifier for a dataset described by any object with
``modality``, ``classes`` and either ``channels`` + ``image_size`` (images) or ``feature_names``
(tables). It then applies the :class:`~core.config.ModelConfig`: torchvision weights from the local
torch hub cache (``pretrained``), a user file (``weights``), and ``freeze_backbone``.

Nothing here downloads: a missing weights file is a :class:`~core.errors.WeightsNotFound` that says
where to put it.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from core.checkpoint import load_checkpoint, model_state
from core.config import ModelConfig
from core.errors import InvalidConfig, ModelNotFound, WeightsNotFound

logger = logging.getLogger(__name__)

# builder(info, cfg, image_size) -> nn.Module with a fresh head sized to len(info.classes)
Builder = Callable[[Any, ModelConfig, int | None], nn.Module]

# torchvision's backbones downsample 32x; below this the last feature maps are 1x1 and accuracy
# suffers, although the forward pass still runs (every stride-2 layer is padded).
_TORCHVISION_SMALL_INPUT = 32


@dataclass(frozen=True)
class ModelSpec:
    name: str
    modalities: tuple[str, ...]  # subset of ("image", "tabular")
    description: str
    default_image_size: int | None  # None: the model takes the dataset's own image size
    pretrained_available: bool  # torchvision publishes ImageNet weights for it


_REGISTRY: dict[str, tuple[ModelSpec, Builder]] = {}


def register_model(
    name: str,
    *,
    modalities: tuple[str, ...],
    description: str,
    default_image_size: int | None = None,
    pretrained: bool = False,
) -> Callable[[Builder], Builder]:
    """Register ``builder(info, cfg, image_size) -> nn.Module`` under ``name``."""

    def decorator(builder: Builder) -> Builder:
        if name in _REGISTRY:
            raise ValueError(f"model {name!r} is already registered")
        spec = ModelSpec(name, tuple(modalities), description, default_image_size, pretrained)
        _REGISTRY[name] = (spec, builder)
        return builder

    return decorator


def list_models(modality: str | None = None) -> list[ModelSpec]:
    """Registered models, in registration order, optionally only those supporting ``modality``."""
    specs = [spec for spec, _ in _REGISTRY.values()]
    return [s for s in specs if modality is None or modality in s.modalities]


def get_spec(name: str) -> ModelSpec:
    if name not in _REGISTRY:
        raise ModelNotFound(f"Unknown model {name!r}. Available: {', '.join(_REGISTRY)}.")
    return _REGISTRY[name][0]


def create_model(
    name: str, info: Any, cfg: ModelConfig | None = None, *, image_size: int | None = None
) -> nn.Module:
    """Build model ``name`` for the dataset ``info`` and apply ``cfg`` (weights, freezing).

    ``image_size`` overrides ``info.image_size`` when the run resizes its images; only models with
    a size-dependent layer (``mlp`` on images) need it, the convolutional ones are size-agnostic.
    """
    spec = get_spec(name)
    cfg = cfg or ModelConfig(name=name)
    if info.modality not in spec.modalities:
        raise InvalidConfig(
            f"Model {name!r} does not support {info.modality} data. Models for {info.modality}: "
            f"{', '.join(s.name for s in list_models(info.modality))}."
        )
    if cfg.pretrained and cfg.weights:
        raise InvalidConfig("Use either --pretrained or --weights FILE, not both.")
    if cfg.pretrained and not spec.pretrained_available:
        raise InvalidConfig(f"Model {name!r} has no pretrained weights; drop --pretrained.")
    model = _REGISTRY[name][1](info, cfg, image_size)
    if cfg.weights:
        load_weights(model, Path(cfg.weights), name)
    if cfg.freeze_backbone:
        freeze_backbone(model)
    return model


# --- heads and freezing ----------------------------------------------------------------------


def classifier_head(model: nn.Module) -> nn.Linear:
    """The classification head: the last ``nn.Linear`` of every registered model."""
    linears = [m for m in model.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise InvalidConfig(f"{type(model).__name__} has no Linear classification head.")
    return linears[-1]


def head_parameter_names(model: nn.Module) -> set[str]:
    """Names (as in ``model.named_parameters()``) of the head's parameters."""
    head = classifier_head(model)
    prefix = next(n for n, m in model.named_modules() if m is head)
    return {f"{prefix}.{n}" for n, _ in head.named_parameters()}


def freeze_backbone(model: nn.Module) -> None:
    """Train only the head. BatchNorm running statistics still update in ``train()`` mode."""
    head = head_parameter_names(model)
    for pname, param in model.named_parameters():
        param.requires_grad = pname in head


# --- small models ----------------------------------------------------------------------------


def _input_features(info: Any, image_size: int | None) -> int:
    if info.modality == "tabular":
        return len(info.feature_names)
    size = image_size or info.image_size
    return info.channels * size * size


@register_model(
    "mlp",
    modalities=("tabular", "image"),
    description="Multilayer perceptron (256-128, ReLU, dropout 0.1); images are flattened.",
)
def _build_mlp(info: Any, cfg: ModelConfig, image_size: int | None) -> nn.Module:
    layers: list[nn.Module] = [nn.Flatten()]
    width = _input_features(info, image_size)
    for hidden in (256, 128):
        layers += [nn.Linear(width, hidden), nn.ReLU(inplace=True), nn.Dropout(0.1)]
        width = hidden
    layers.append(nn.Linear(width, len(info.classes)))
    return nn.Sequential(*layers)


class SmallCNN(nn.Module):
    """Three conv-BN-ReLU-pool blocks, global average pooling, dropout, linear head.

    Pools use ``ceil_mode`` so a 1x1 map stays 1x1: works from 4x4 (digits are 8x8) upwards.
    """

    def __init__(self, channels: int, num_classes: int, widths: tuple[int, ...] = (32, 64, 128)):
        super().__init__()
        blocks: list[nn.Module] = []
        in_ch = channels
        for width in widths:
            blocks += [
                nn.Conv2d(in_ch, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2, ceil_mode=True),
            ]
            in_ch = width
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.dropout = nn.Dropout(0.2)
        self.fc = nn.Linear(in_ch, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.pool(self.features(x)).flatten(1)
        return self.fc(self.dropout(x))


@register_model(
    "smallcnn",
    modalities=("image",),
    description="Small CNN (32-64-128 conv-BN-ReLU blocks); fast on CPU, any image size >= 4.",
)
def _build_smallcnn(info: Any, cfg: ModelConfig, image_size: int | None) -> nn.Module:
    return SmallCNN(info.channels, len(info.classes))


# --- torchvision models ----------------------------------------------------------------------


def pretrained_weights_path(name: str) -> Path:
    """Where the torchvision weights file for ``name`` must be (the torch hub cache)."""
    return Path(torch.hub.get_dir()) / "checkpoints" / _weights_url(name).rsplit("/", 1)[-1]


def _weights_url(name: str) -> str:
    from torchvision.models import get_model_weights

    if not get_spec(name).pretrained_available:
        raise InvalidConfig(f"Model {name!r} has no pretrained weights.")
    return get_model_weights(name).DEFAULT.url


def _torchvision_builder(name: str) -> Builder:
    def build(info: Any, cfg: ModelConfig, image_size: int | None) -> nn.Module:
        from torchvision import models

        size = image_size or info.image_size
        if size and size < _TORCHVISION_SMALL_INPUT:
            logger.warning(
                "%s downsamples 32x: at %dx%d its last feature maps are 1x1. It runs, but "
                "--image-size %d or more usually trains better.",
                name,
                size,
                size,
                _TORCHVISION_SMALL_INPUT,
            )
        # Built with torchvision's own 1000-class head so a pretrained file loads strictly;
        # the stem and head are adapted to the dataset afterwards.
        model = models.get_model(name, weights=None)
        if cfg.pretrained:
            _load_pretrained(model, name)
        if info.channels != 3:
            _replace_first_conv(model, info.channels, keep_weights=cfg.pretrained)
        head = classifier_head(model)
        _set_module(model, head, nn.Linear(head.in_features, len(info.classes)))
        return model

    return build


def _register_torchvision(name: str, description: str) -> None:
    register_model(name, modalities=("image",), description=description, pretrained=True)(
        _torchvision_builder(name)
    )


_register_torchvision("resnet18", "ResNet-18 (torchvision, 11M parameters).")
_register_torchvision("mobilenet_v3_small", "MobileNetV3-Small (torchvision, 2.5M parameters).")
_register_torchvision("efficientnet_b0", "EfficientNet-B0 (torchvision, 5.3M parameters).")


def _load_pretrained(model: nn.Module, name: str) -> None:
    path = pretrained_weights_path(name)
    if not path.is_file():
        raise WeightsNotFound(
            f"Pretrained weights for {name} are not on this machine, and nothing is downloaded. "
            f"Put the file at {path} (it comes from {_weights_url(name)}), set TORCH_HOME to a "
            "folder whose hub/checkpoints/ holds it, or pass --weights FILE instead."
        )
    state = _tensors(model_state(load_checkpoint(path)))
    try:
        model.load_state_dict(state, strict=True)
    except RuntimeError as exc:
        raise WeightsNotFound(
            f"{path} is not the torchvision {name} weights file: {str(exc)[:300]}"
        ) from None
    logger.info("Loaded pretrained %s weights from %s", name, path)


# --- first conv and module surgery -----------------------------------------------------------


def _first_conv_name(model: nn.Module) -> str:
    return next(n for n, m in model.named_modules() if isinstance(m, nn.Conv2d))


def _set_module(model: nn.Module, old: nn.Module, new: nn.Module) -> None:
    path = next(n for n, m in model.named_modules() if m is old)
    parent_name, _, attr = path.rpartition(".")
    setattr(model.get_submodule(parent_name) if parent_name else model, attr, new)


def _replace_first_conv(model: nn.Module, channels: int, keep_weights: bool) -> None:
    old = model.get_submodule(_first_conv_name(model))
    new = nn.Conv2d(
        channels,
        old.out_channels,
        old.kernel_size,
        old.stride,
        old.padding,
        old.dilation,
        old.groups,
        old.bias is not None,
        old.padding_mode,
    )
    if keep_weights:
        with torch.no_grad():
            new.weight.copy_(adapt_conv_weight(old.weight, channels))
            if old.bias is not None:
                new.bias.copy_(old.bias)
    _set_module(model, old, new)


def adapt_conv_weight(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """Map a conv kernel (out, c_in, k, k) to ``channels`` inputs: mean over c_in, repeated.

    Scaled by c_in / channels so that an image whose channels are all equal (grey in RGB)
    produces the same activations as before, which keeps the next BatchNorm's statistics valid.
    """
    mean = weight.mean(dim=1, keepdim=True) * (weight.shape[1] / channels)
    return mean.repeat(1, channels, 1, 1)


# --- weights=FILE ----------------------------------------------------------------------------


def _tensors(state: dict[str, Any]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if isinstance(v, torch.Tensor)}


def load_weights(model: nn.Module, path: Path, name: str = "") -> dict[str, int]:
    """Load every tensor of ``path`` that fits ``model`` by name and shape; return the counts.

    ``path`` is a torchvision state dict or another run's checkpoint. A head of another class
    count is skipped (the model keeps its fresh one); a first conv of another channel count is
    adapted with :func:`adapt_conv_weight`. Raises ``WeightsNotFound`` when fewer than half of the
    backbone's parameter tensors fit.
    """
    name = name or type(model).__name__
    source = _tensors(model_state(load_checkpoint(path)))
    target = model.state_dict()
    first_conv = _first_conv_name(model) + ".weight" if _has_conv(model) else None
    matched: dict[str, torch.Tensor] = {}
    for key, value in source.items():
        want = target.get(key)
        if want is None:
            continue
        if want.shape == value.shape:
            matched[key] = value
        elif key == first_conv and _same_but_channels(want, value):
            matched[key] = adapt_conv_weight(value.float(), want.shape[1]).to(want.dtype)
    head = head_parameter_names(model)
    backbone = [n for n, _ in model.named_parameters() if n not in head]
    fitted = sum(n in matched for n in backbone)
    if fitted < len(backbone) / 2:
        raise WeightsNotFound(
            f"{path.name} does not fit model {name}: only {fitted} of its {len(backbone)} "
            "backbone parameter tensors match by name and shape. Was it saved from another model?"
        )
    model.load_state_dict(matched, strict=False)
    counts = {"loaded": len(matched), "skipped": len(source) - len(matched)}
    logger.info(
        "Loaded %d tensors from %s into %s; skipped %d (head kept fresh: %s).",
        counts["loaded"],
        path.name,
        name,
        counts["skipped"],
        not head <= matched.keys(),
    )
    return counts


def _has_conv(model: nn.Module) -> bool:
    return any(isinstance(m, nn.Conv2d) for m in model.modules())


def _same_but_channels(want: torch.Tensor, have: torch.Tensor) -> bool:
    return (
        want.dim() == have.dim() == 4
        and want.shape[0] == have.shape[0]
        and want.shape[2:] == have.shape[2:]
    )
