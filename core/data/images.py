"""Opening untrusted images safely, and the one colour conversion every consumer shares.

Images are opened with an allow-list of formats (fewer parsers exposed to untrusted bytes) and a
pixel cap checked from the header before any pixel is decoded (a 20000x20000 PNG is a few KB on
disk and 400 MB in memory). Every failure is an ``InvalidImage`` naming the file.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import BinaryIO

import numpy as np
from PIL import Image, ImageOps

from core.errors import InvalidImage

logger = logging.getLogger(__name__)

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp", ".bmp", ".gif", ".tif", ".tiff"})
MAX_PIXELS = 40_000_000
GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_HIGH_DEPTH_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
WHITE = (255, 255, 255, 255)

ImageSource = str | os.PathLike | bytes | BinaryIO
# File signatures of the allowed formats: a file that starts like one but cannot be parsed is a
# damaged image (skipped in training), not a stray non-image file (refused at import).
_SIGNATURES = (
    (b"\x89PNG\r\n\x1a\n", "PNG"),
    (b"\xff\xd8\xff", "JPEG"),
    (b"GIF87a", "GIF"),
    (b"GIF89a", "GIF"),
    (b"II*\x00", "TIFF"),
    (b"MM\x00*", "TIFF"),
    (b"BM", "BMP"),
)


class DamagedImage(InvalidImage):
    """A file of an allowed format whose content is damaged, e.g. a truncated JPEG."""


def open_image(source: ImageSource, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open and fully decode an image, or raise ``InvalidImage`` saying why not.

    Returns the image in whatever mode it has; conversion is ``to_channels``' job.
    """
    label = _label(source)
    fh, owned = _as_stream(source)
    try:
        img = _open_checked(fh, label, max_pixels)
        try:
            img.load()
        except Exception as exc:  # noqa: BLE001 - any decoder failure on untrusted bytes
            raise InvalidImage(
                f"{label} is corrupt or truncated and cannot be decoded ({exc})."
            ) from None
        _apply_orientation(img, label)
        return img
    finally:
        if owned:
            fh.close()


def probe_image(path: Path, label: str | None = None, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Check an image file cheaply (format, pixel cap, structure) without decoding its pixels.

    Returns the unloaded image (``format``, ``mode``, ``size`` are valid; the pixels are not).
    Raises ``DamagedImage`` for a damaged file of an allowed format, ``InvalidImage`` for
    anything else. A truncated JPEG may pass: it fails when decoded (and is skipped in training).
    """
    label = label or Path(path).name
    with open(path, "rb") as fh:
        img = _open_checked(fh, label, max_pixels)
        try:
            img.verify()
        except Exception as exc:  # noqa: BLE001 - any parser failure on untrusted bytes
            raise DamagedImage(f"{label} is a damaged {img.format} file ({exc}).") from None
    return img


def _open_checked(fh: BinaryIO, label: str, max_pixels: int) -> Image.Image:
    try:
        img = Image.open(fh, formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        # PIL's own limit fired first (it is looser than ours): the same refusal, in our words.
        raise InvalidImage(
            f"{label} has too many pixels: it is above the pixel cap of {max_pixels:,} ({exc})."
        ) from None
    except Exception:  # noqa: BLE001 - unidentifiable or disallowed: the same answer
        fmt = _sniff(fh)
        if fmt:
            raise DamagedImage(
                f"{label} starts like a {fmt} file but is damaged or truncated; it cannot be read."
            ) from None
        raise InvalidImage(
            f"{label} is not a readable image in an allowed format "
            f"({', '.join(ALLOWED_FORMATS)})."
        ) from None
    width, height = img.size
    if width * height > max_pixels:
        raise InvalidImage(
            f"{label} is {width}x{height} = {width * height:,} pixels, above the pixel cap of "
            f"{max_pixels:,}. Resize it before using it."
        )
    if width < 1 or height < 1:
        raise InvalidImage(f"{label} has an empty size {width}x{height}.")
    return img


def _sniff(fh: BinaryIO) -> str | None:
    """The allowed format whose signature starts ``fh``, if any."""
    try:
        fh.seek(0)
        head = fh.read(16)
    except (OSError, ValueError):
        return None
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "WEBP"
    return next((fmt for magic, fmt in _SIGNATURES if head.startswith(magic)), None)


def _apply_orientation(img: Image.Image, label: str) -> None:
    """Turn phone photos upright (EXIF orientation), as every viewer shows them."""
    try:
        ImageOps.exif_transpose(img, in_place=True)
    except Exception as exc:  # noqa: BLE001 - a malformed EXIF block is not worth refusing
        logger.debug("Ignoring the unreadable EXIF orientation of %s: %s", label, exc)


def _as_stream(source: ImageSource) -> tuple[BinaryIO, bool]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source)), True
    if isinstance(source, (str, os.PathLike)):
        try:
            return open(source, "rb"), True
        except OSError as exc:
            raise InvalidImage(f"Cannot read image file {source}: {exc.strerror}.") from None
    return source, False


def _label(source: ImageSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    return getattr(source, "name", None) or "The image"


def to_channels(img: Image.Image, channels: int) -> Image.Image:
    """Convert any PIL mode to ``"L"`` (channels=1) or ``"RGB"`` (channels=3).

    Transparency is composited on white (what a viewer shows); 16/32-bit and float images are
    scaled to 8 bits rather than clipped, so a 16-bit scan does not come out all white.
    """
    if img.mode in _HIGH_DEPTH_MODES:
        img = _high_depth_to_l(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in _ALPHA_MODES:
        background = Image.new("RGBA", img.size, WHITE)
        background.alpha_composite(img.convert("RGBA"))
        img = background.convert("RGB")
    target = "L" if channels == 1 else "RGB"
    if img.mode == target:
        return img
    try:
        return img.convert(target)
    except ValueError as exc:
        raise InvalidImage(
            f"Cannot convert an image in mode {img.mode} to {target}: {exc}"
        ) from None


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    arr = np.asarray(img).astype(np.float64)
    if img.mode.startswith("I;16"):
        arr = arr / 257.0
    elif img.mode == "F" and arr.size and np.nanmax(arr) <= 1.0:
        arr = arr * 255.0  # float images are usually in [0, 1]
    elif img.mode == "I" and arr.size and arr.max() > 255:
        arr = arr / 257.0 if arr.max() <= 65535 else _stretch(arr)
    arr = np.nan_to_num(arr, nan=0.0)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")


def _stretch(arr: np.ndarray) -> np.ndarray:
    low, high = float(arr.min()), float(arr.max())
    return (arr - low) * (255.0 / max(high - low, 1.0))


def resize_square(img: Image.Image, size: int) -> Image.Image:
    """Resize to ``size`` x ``size`` with PIL bilinear (antialiased when shrinking)."""
    if img.size == (size, size):
        return img
    return img.resize((size, size), Image.Resampling.BILINEAR)


def channel_stats(
    images: Iterable[np.ndarray], channels: int
) -> tuple[list[float], list[float]]:
    """Per-channel mean and std in [0, 1] units over uint8 arrays (...xHxW, or ...xHxWxC if C>1)."""
    total = 0
    sums = np.zeros(channels)
    sq = np.zeros(channels)
    for arr in images:
        pixels = arr.reshape(-1, channels).astype(np.float64) / 255.0
        sums += pixels.sum(0)
        sq += (pixels**2).sum(0)
        total += len(pixels)
    if not total:
        return [0.0] * channels, [1.0] * channels
    mean = sums / total
    std = np.sqrt(np.maximum(sq / total - mean**2, 0.0))
    return [round(float(m), 6) for m in mean], [round(float(s), 6) for s in std]
