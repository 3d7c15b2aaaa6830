"""``create_model``: a registered model built for a dataset, with its weights and freezing.

``create_model(name, info, cfg)`` builds a classifier for a dataset described by any object with
``modality``, ``classes`` and either ``channels`` + ``image_size`` (images) or ``feature_names``
(tables). It then applies the :class:`~core.config.ModelConfig`: torchvision weights from the local
torch hub cache (``pretrained``), a user file (``weights``), and ``freeze_backbone``. Torch is
imported by the builders, when a model is built.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from core.config import ModelConfig
from core.errors import InvalidConfig
from core.models.registry import get_builder, get_spec, list_models


def create_model(name: str, info: Any, cfg: ModelConfig | None = None, *,
                 image_size: int | None = None) -> Any:
    """Build model ``name`` (an ``nn.Module``) for the dataset ``info`` and apply ``cfg``.

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
    if cfg.dropout is not None and spec.dropout is None:
        raise InvalidConfig(f"Model {name!r} has no dropout layer; drop --dropout.")
    model = get_builder(name)(info, cfg, image_size)
    if cfg.weights:
        from core.models.weights import load_weights

        load_weights(model, Path(cfg.weights), name)
    if cfg.freeze_backbone:
        from core.models.surgery import freeze_backbone

        freeze_backbone(model)
    return model
