"""Tensors from samples: THE preprocessing shared by training, evaluation, prediction,
explanation and export, plus the training-only augmentations.

The arithmetic is the serving runtime's (``core.deploy.runtime.preprocess``, numpy), driven by
the same spec a bundle ships as ``preprocess.json``; this module wraps its arrays in tensors.
Image pipeline: convert to the dataset's channels (alpha composited on white) -> resize to a
square with PIL bilinear -> float CxHxW in [0, 1] -> normalise with the dataset's mean/std.
Tabular: float32 row standardised with the dataset's mean/std. A std of 0 counts as 1.

Transforms are classes, not closures, so DataLoader workers can pickle them. Augmentations draw
from torch's global RNG only, so ``torch.manual_seed`` makes them reproducible.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from PIL import Image

from core.config import AUGMENTATIONS
from core.data.images import open_image, resize_square, to_channels
from core.data.info import DatasetInfo
from core.deploy.runtime.errors import InputError
from core.deploy.runtime.preprocess import (
    feature_row,
    image_array,
    image_spec,
    normalize_pixels,
    standardize,
    tabular_spec,
)
from core.errors import InvalidConfig, InvalidImage, InvalidTable, UserError

if TYPE_CHECKING:
    from core.workspace import Workspace

ROTATE_DEGREES = 15.0
CROP_SCALE = (0.7, 1.0)
JITTER = 0.3  # brightness, contrast and saturation


class Preprocess:
    """Sample (PIL image, array, path, bytes; or a feature row / dict) -> normalised tensor."""

    def __init__(self, info: DatasetInfo, image_size: int | None = None):
        self.spec = preprocess_spec(info, image_size)
        self.modality = info.modality
        self.channels = info.channels
        self.size = _size(info, image_size)
        self.feature_names = list(info.feature_names)

    def __call__(self, sample: Any) -> torch.Tensor:
        if self.modality == "tabular":
            return self.rows(as_row(sample, self.feature_names)[None])[0]
        return self.converted(to_channels(as_image(sample), self.channels))

    def converted(self, img: Image.Image) -> torch.Tensor:
        """An image already in the dataset's mode: resize, scale, normalise."""
        return torch.from_numpy(image_array(img, self.spec))

    def pixels(self, batch: torch.Tensor | np.ndarray) -> torch.Tensor:
        """uint8 (N,H,W) or (N,H,W,C) at the target size -> normalised float (N,C,H,W)."""
        return torch.from_numpy(normalize_pixels(batch, self.spec["mean"], self.spec["std"]))

    def rows(self, x: np.ndarray) -> torch.Tensor:
        """float32 rows (N,F) -> standardised tensor (N,F)."""
        return torch.from_numpy(standardize(x, self.spec["mean"], self.spec["std"]))


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


def augmentation(size: int, augment: Sequence[str]) -> Any:
    """PIL -> PIL at ``size`` x ``size`` with the named augmentations (see core.config): a
    torchvision ``v2.Compose``."""
    # torchvision is imported here, not at the top: its import (1-2 s, all its models) is the
    # biggest fixed cost of a job, and only augmentation needs it.
    from torchvision.transforms import v2

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
        return tabular_spec(info.feature_names, info.mean, info.std)
    return image_spec(info.channels, _size(info, image_size), info.mean, info.std)


def preview_augmentations(
    ws: Workspace,
    name_or_info: str | DatasetInfo,
    image: Any,
    augment: Sequence[str],
    n: int = 8,
    seed: int = 0,
    image_size: int | None = None,
) -> list[Image.Image]:
    """``n`` draws of the training augmentations on one image, for the UI (seeded, and the
    global torch RNG is left as it was)."""
    info = name_or_info
    if not isinstance(info, DatasetInfo):
        from core.data.registry import get_info

        info = get_info(ws, name_or_info)
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
    try:
        return feature_row(sample, feature_names)
    except InputError as exc:
        raise InvalidTable(str(exc)) from None


def _size(info: DatasetInfo, image_size: int | None) -> int:
    size = int(image_size or info.image_size)
    if info.modality == "image" and size < 1:
        raise InvalidConfig(f"image_size must be >= 1 for {info.name}, got {size}")
    return size
