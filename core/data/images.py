"""Images in the project: the serving runtime's decoder and mode rules, with the project's errors.

Decoding (allow-listed formats, a pixel cap checked before any pixel is decoded) and the
conversion of every PIL mode to ``L`` or ``RGB`` live in ``core.deploy.runtime`` (one copy of
each rule, shipped in every bundle). This module puts the project's ``InvalidImage`` /
``DamagedImage`` on its failures, and adds what only the project needs: the file extensions an
import looks for, and channel statistics.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

import numpy as np
from PIL import Image

from core.deploy.runtime import errors as _rt_errors
from core.deploy.runtime import images as _rt_images
from core.deploy.runtime import preprocess as _rt_pre
from core.deploy.runtime.images import ALLOWED_FORMATS, MAX_PIXELS, ImageSource
from core.deploy.runtime.preprocess import GRAY_MODES, resize_square
from core.errors import InvalidImage

__all__ = ["ALLOWED_FORMATS", "GRAY_MODES", "IMAGE_EXTENSIONS", "MAX_PIXELS", "DamagedImage",
           "channel_stats", "open_image", "probe_image", "resize_square", "to_channels"]

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})


class DamagedImage(InvalidImage):
    """A file of an allowed format whose content is damaged, e.g. a truncated JPEG."""


@contextmanager
def _project_errors() -> Iterator[None]:
    """The runtime's image errors, raised again as the project's user errors."""
    try:
        yield
    except _rt_errors.DamagedImageError as exc:
        raise DamagedImage(str(exc)) from None
    except _rt_errors.ImageError as exc:
        raise InvalidImage(str(exc)) from None


def open_image(source: ImageSource, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open and fully decode an image, or raise ``InvalidImage`` saying why not.

    Returns the image in whatever mode it has; conversion is ``to_channels``' job.
    """
    with _project_errors():
        return _rt_images.open_image(source, max_pixels)


def probe_image(path: Path, label: str | None = None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Check an image file cheaply without decoding its pixels (see the runtime's
    ``probe_image``): ``DamagedImage`` for a damaged file of an allowed format, ``InvalidImage``
    for anything else."""
    with _project_errors():
        return _rt_images.probe_image(path, label, max_pixels)


def to_channels(img: Image.Image, channels: int) -> Image.Image:
    """Convert any PIL mode to ``"L"`` (channels=1) or ``"RGB"`` (channels=3), by the runtime's
    rules (alpha on white; 16/32-bit and float scaled, see ``runtime.preprocess.to_8bit``)."""
    with _project_errors():
        return _rt_pre.to_mode(img, "L" if channels == 1 else "RGB")


def channel_stats(
    images: Iterable[np.ndarray], channels: int
) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units over uint8 arrays (...xHxW, or ...xHxWxC if C>1)."""
    total = 0
    sums = np.zeros(channels)
    sq = np.zeros(channels)
    levels = np.arange(256, dtype=np.float64) / 255.0
    for arr in images:
        pixels = arr.reshape(-1, channels)
        if pixels.dtype == np.uint8:  # a histogram per channel: exact, and ~10x faster than
            for c in range(channels):  # float sums (listing the built-ins computes this)
                counts = np.bincount(pixels[:, c], minlength=256)
                sums[c] += counts @ levels
                sq[c] += counts @ levels**2
        else:
            scaled = pixels.astype(np.float64) / 255.0
            sums += scaled.sum(0)
            sq += (scaled**2).sum(0)
        total += len(pixels)
    if not total:
        return [0.0] * channels, [1.0] * channels
    mean = sums / total
    std = np.sqrt(np.maximum(sq / total - mean**2, 0.0))
    return [round(float(m), 6) for m in mean], [round(float(s), 6) for s in std]
