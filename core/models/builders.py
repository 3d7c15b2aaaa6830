"""The built-in models, registered by name. Every builder imports torch inside its body, so
importing this module (which ``core.models`` does) registers the names without loading torch.
"""

from __future__ import annotations

import logging
from typing import Any

from core.models.registry import register_model

logger = logging.getLogger(__name__)

# torchvision's backbones downsample 32x; below this the last feature maps are 1x1 and accuracy
# suffers, although the forward pass still runs (every stride-2 layer is padded).
_TORCHVISION_SMALL_INPUT = 32


def _input_features(info: Any, image_size: int | None) -> int:
    if info.modality == "tabular":
        return len(info.feature_names)
    size = image_size or info.image_size
    return info.channels * size * size


def _dropout(cfg: Any, default: float) -> float:
    """The config's dropout rate, else the model's own."""
    rate = getattr(cfg, "dropout", None)
    return default if rate is None else float(rate)


@register_model(
    "mlp",
    modalities=("tabular", "image"),
    description="Multilayer perceptron (256-128, ReLU, dropout 0.1); images are flattened.",
    dropout=0.1,
)
def build_mlp(info: Any, cfg: Any, image_size: int | None) -> Any:
    from core.models.nets import mlp

    return mlp(_input_features(info, image_size), len(info.classes), dropout=_dropout(cfg, 0.1))


@register_model(
    "smallcnn",
    modalities=("image",),
    description="Small CNN (32-64-128 conv-BN-ReLU blocks); fast on CPU, any image size >= 4.",
    dropout=0.2,
)
def build_smallcnn(info: Any, cfg: Any, image_size: int | None) -> Any:
    from core.models.nets import SmallCNN

    return SmallCNN(info.channels, len(info.classes), dropout=_dropout(cfg, 0.2))


def torchvision_builder(name: str, dropout: float | None = None):
    """A builder of torchvision's ``name``, its stem and head adapted to the dataset;
    ``dropout``: the rate torchvision builds it with (None: it has no dropout layer)."""

    def build(info: Any, cfg: Any, image_size: int | None) -> Any:
        from torchvision import models

        from core.models.surgery import replace_first_conv, replace_head
        from core.models.weights import load_pretrained

        size = image_size or info.image_size
        if size and size < _TORCHVISION_SMALL_INPUT:
            logger.warning(
                "%s downsamples 32x: at %dx%d its last feature maps are 1x1. It runs, but "
                "--image-size %d or more usually trains better.",
                name, size, size, _TORCHVISION_SMALL_INPUT,
            )
        # Built with torchvision's own 1000-class head so a pretrained file loads strictly;
        # the stem and head are adapted to the dataset afterwards.
        extra = {} if dropout is None else {"dropout": _dropout(cfg, dropout)}
        model = models.get_model(name, weights=None, **extra)
        if cfg.pretrained:
            load_pretrained(model, name)
        if info.channels != 3:
            replace_first_conv(model, info.channels, keep_weights=cfg.pretrained)
        replace_head(model, len(info.classes))
        return model

    return build


for _name, _description, _rate in (
    ("resnet18", "ResNet-18 (torchvision, 11M parameters).", None),
    ("mobilenet_v3_small", "MobileNetV3-Small (torchvision, 2.5M parameters).", 0.2),
    ("efficientnet_b0", "EfficientNet-B0 (torchvision, 5.3M parameters).", 0.2),
):
    register_model(_name, modalities=("image",), description=_description, pretrained=True,
                   dropout=_rate)(torchvision_builder(_name, _rate))
