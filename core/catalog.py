"""The model catalog as the dashboard needs it, without importing torch.

``core.models`` imports torch at import time (its builders are ``nn.Module`` factories), and the
pages must stay torch-free so the first page load is fast. This module mirrors the registry's
names, modalities and whether torchvision publishes pretrained weights; ``tests/test_catalog.py``
asserts it equals ``core.models.list_models()``, so the two cannot drift.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ModelChoice:
    name: str
    modalities: tuple[str, ...]
    pretrained_available: bool
    description: str


MODELS: tuple[ModelChoice, ...] = (
    ModelChoice("mlp", ("tabular", "image"), False,
                "Multilayer perceptron; images are flattened. Fast on tables and tiny images."),
    ModelChoice("smallcnn", ("image",), False,
                "Small CNN (3 conv blocks); fast on CPU, any image size >= 4."),
    ModelChoice("resnet18", ("image",), True, "ResNet-18 (torchvision, 11M parameters)."),
    ModelChoice("mobilenet_v3_small", ("image",), True,
                "MobileNetV3-Small (torchvision, 2.5M parameters)."),
    ModelChoice("efficientnet_b0", ("image",), True,
                "EfficientNet-B0 (torchvision, 5.3M parameters)."),
)

MODEL_MODALITIES: dict[str, tuple[str, ...]] = {m.name: m.modalities for m in MODELS}


def model_choices(modality: str | None = None) -> list[str]:
    """Model names, in registry order, that accept ``modality`` (all when None)."""
    return [m.name for m in MODELS if modality is None or modality in m.modalities]


def get_choice(name: str) -> ModelChoice | None:
    return next((m for m in MODELS if m.name == name), None)


def default_model(modality: str) -> str:
    """What a newcomer should train first: the small CNN on images, the MLP on tables."""
    return "smallcnn" if modality == "image" else "mlp"
