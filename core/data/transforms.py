"""Tensors from samples: THE preprocessing shared by training, evaluation, prediction,
explanation and export, plus the training-only augmentations.

Image pipeline: convert to the dataset's channels (alpha composited on white) -> resize to a
square with PIL bilinear -> float CxHxW in [0, 1] -> normalise with the dataset's mean/std.
Tabular: float32 row standardised with the dataset's mean/std. A std of 0 counts as 1.

Transforms are classes, not closures, so DataLoader workers can pickle them. Augmentations draw
from torch's global RNG only, so ``torch.manual_seed`` makes them reproducible.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from PIL import Image
from torchvision.transforms import v2

from core.config import AUGMENTATIONS
from core.data.images import open_image, resize_square, to_channels
from core.data.info import DatasetInfo
from core.errors import InvalidConfig, InvalidImage, InvalidTable, UserError

ROTATE_DEGREES = 15.0
CROP_SCALE = (0.7, 1.0)
JITTER = 0.3  # brightness, contrast and saturation


class Preprocess:
    """Sample (PIL image, array, path, bytes; or a feature row / dict) -> normalised tensor."""

    def __init__(self, info: DatasetInfo, image_size: int | None = None):
        self.modality = info.modality
        self.channels = info.channels
        self.size = _size(info, image_size)
        self.feature_names = list(info.feature_names)
        self.mean = torch.tensor(info.mean, dtype=torch.float32)
        self.std = torch.tensor(_safe_std(info.std), dtype=torch.float32)

    def __call__(self, sample: Any) -> torch.Tensor:
        if self.modality == "tabular":
            return self.rows(as_row(sample, self.feature_names)[None])[0]
        return self.converted(to_channels(as_image(sample), self.channels))

    def converted(self, img: Image.Image) -> torch.Tensor:
        """An image already in the dataset's mode: resize, scale, normalise."""
        arr = np.asarray(resize_square(img, self.size), dtype=np.uint8)
        return self.pixels(torch.from_numpy(arr.copy())[None])[0]

    def pixels(self, batch: torch.Tensor) -> torch.Tensor:
        """uint8 (N,H,W) or (N,H,W,C) at the target size -> normalised float (N,C,H,W)."""
        if batch.ndim == 3:
            batch = batch.unsqueeze(-1)
        x = batch.permute(0, 3, 1, 2).contiguous().float().div_(255.0)
        return x.sub_(self.mean.view(1, -1, 1, 1)).div_(self.std.view(1, -1, 1, 1))

    def rows(self, x: np.ndarray) -> torch.Tensor:
        """float32 rows (N,F) -> standardised tensor (N,F)."""
        return (torch.from_numpy(np.array(x, dtype=np.float32)) - self.mean) / self.std


class TrainTransform:
    """Training augmentations (images only), then exactly the steps of ``Preprocess``."""

    def __init__(
        self, info: DatasetInfo, image_size: int | None = None, augment: Sequence[str] = ()
    ):
        self.preprocess = Preprocess(info, image_size)
        self.augment = None
        if info.modality == "image" and augment:
            self.augment = augmentation(self.preprocess.size, augment)

    def __call__(self, sample: Any) -> torch.Tensor:
        if self.augment is None:
            return self.preprocess(sample)
        img = to_channels(as_image(sample), self.preprocess.channels)
        return self.preprocess.converted(self.augment(img))


class _Resize:
    """The same PIL bilinear resize as ``Preprocess`` (torchvision's would differ slightly)."""

    def __init__(self, size: int):
        self.size = size

    def __call__(self, img: Image.Image) -> Image.Image:
        return resize_square(img, self.size)


def augmentation(size: int, augment: Sequence[str]) -> v2.Compose:
    """PIL -> PIL at ``size`` x ``size`` with the named augmentations (see core.config)."""
    check_augment(augment)
    steps: list[Any] = []
    if "crop" in augment:
        steps.append(v2.RandomResizedCrop(size, scale=CROP_SCALE, antialias=True))
    else:
        steps.append(_Resize(size))
    if "flip" in augment:
        steps.append(v2.RandomHorizontalFlip())
    if "rotate" in augment:
        steps.append(v2.RandomRotation(ROTATE_DEGREES))
    if "color" in augment:
        steps.append(v2.ColorJitter(brightness=JITTER, contrast=JITTER, saturation=JITTER))
    return v2.Compose(steps)


def make_preprocess(info: DatasetInfo, image_size: int | None = None) -> Preprocess:
    return Preprocess(info, image_size)


def make_train_transform(
    info: DatasetInfo, image_size: int | None = None, augment: Sequence[str] = ()
) -> TrainTransform:
    """Training transform; ``augment`` is ignored for tabular datasets."""
    return TrainTransform(info, image_size, tuple(augment))


def preprocess_spec(info: DatasetInfo, image_size: int | None = None) -> dict[str, Any]:
    """How ``make_preprocess`` turns an input into a tensor, for export bundles (JSON)."""
    if info.modality == "tabular":
        return {
            "modality": "tabular",
            "feature_names": list(info.feature_names),
            "dtype": "float32",
            "mean": list(info.mean),
            "std": _safe_std(info.std),
            "formula": "(x - mean) / std",
        }
    size = _size(info, image_size)
    return {
        "modality": "image",
        "channels": info.channels,
        "mode": "L" if info.channels == 1 else "RGB",
        "alpha": "composited on white",
        "size": [size, size],
        "resize": "PIL bilinear (antialiased), to a square, aspect ratio not kept",
        "layout": "CHW",
        "scale": "pixel / 255",
        "mean": list(info.mean),
        "std": _safe_std(info.std),
        "formula": "(pixel / 255 - mean) / std",
    }


def preview_augmentations(
    name_or_info: str | DatasetInfo,
    image: Any,
    augment: Sequence[str],
    n: int = 8,
    seed: int = 0,
    image_size: int | None = None,
    home: Any = None,
) -> list[Image.Image]:
    """``n`` draws of the training augmentations on one image, for the UI (seeded, and the
    global torch RNG is left as it was)."""
    info = name_or_info
    if not isinstance(info, DatasetInfo):
        from core.data.registry import get_info

        info = get_info(name_or_info, home)
    if info.modality != "image":
        raise UserError(f"{info.name} is a table: augmentations apply to image datasets only.")
    img = to_channels(as_image(image), info.channels)
    pipeline = augmentation(_size(info, image_size), augment)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return [pipeline(img) for _ in range(n)]


def check_augment(augment: Sequence[str]) -> None:
    unknown = [a for a in augment if a not in AUGMENTATIONS]
    if unknown:
        choices = ", ".join(AUGMENTATIONS)
        raise InvalidConfig(f"Unknown augmentation {unknown}; choose from {choices}.")


def as_image(sample: Any) -> Image.Image:
    """A PIL image from a PIL image, a uint8 array, a path, bytes or a binary stream."""
    if isinstance(sample, Image.Image):
        return sample
    if isinstance(sample, np.ndarray):
        if sample.dtype != np.uint8 or sample.ndim not in (2, 3):
            raise InvalidImage(f"Expected a uint8 HxW or HxWxC array, got {sample.dtype} "
                               f"{sample.shape}.")
        return Image.fromarray(np.ascontiguousarray(sample))
    return open_image(sample)


def as_row(sample: Any, feature_names: list[str]) -> np.ndarray:
    """A float32 feature row from a sequence, an array, a tensor or a {feature: value} dict."""
    if isinstance(sample, Mapping):
        missing = [f for f in feature_names if f not in sample]
        if missing:
            raise InvalidTable(f"Missing features: {', '.join(missing)}.")
        sample = [sample[f] for f in feature_names]
    try:
        row = np.asarray(sample, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError) as exc:
        raise InvalidTable(f"A row must hold {len(feature_names)} numbers ({exc}).") from None
    if len(row) != len(feature_names):
        raise InvalidTable(
            f"Expected {len(feature_names)} features ({', '.join(feature_names)}), got {len(row)}."
        )
    return row


def _size(info: DatasetInfo, image_size: int | None) -> int:
    size = int(image_size or info.image_size)
    if info.modality == "image" and size < 1:
        raise InvalidConfig(f"image_size must be >= 1 for {info.name}, got {size}")
    return size


def _safe_std(std: Sequence[float]) -> list[float]:
    # A constant feature (or a flat channel) has std 0: dividing by it would give inf/nan.
    return [float(s) if s > 1e-12 else 1.0 for s in std]
