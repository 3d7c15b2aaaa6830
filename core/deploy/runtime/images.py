"""Opening untrusted images safely: the one decoder of the project and of every bundle.

Images are opened with an allow-list of formats (fewer parsers exposed to untrusted bytes) and a
pixel cap checked from the header before any pixel is decoded (a 20000x20000 PNG is a few KB on
disk and 400 MB in memory). Every failure is an ``ImageError`` whose message names the file.
"""

from __future__ import annotations

import io
import logging
import os
from pathlib import Path
from typing import BinaryIO

from PIL import Image, ImageOps

from .errors import DamagedImageError, ImageError

log = logging.getLogger(__name__)

ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
MAX_PIXELS = 40_000_000

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


def open_image(source: ImageSource, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Open and fully decode an image (upright, in its own mode), or raise ``ImageError``."""
    label = _label(source)
    fh, owned = _as_stream(source)
    try:
        img = _open_checked(fh, label, max_pixels)
        try:
            img.load()
        except Exception as exc:  # noqa: BLE001 - any decoder failure on untrusted bytes
            raise ImageError(
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
    Raises ``DamagedImageError`` for a damaged file of an allowed format, ``ImageError`` for
    anything else. A truncated JPEG may pass: it fails when decoded.
    """
    label = label or Path(path).name
    with open(path, "rb") as fh:
        img = _open_checked(fh, label, max_pixels)
        try:
            img.verify()
        except Exception as exc:  # noqa: BLE001 - any parser failure on untrusted bytes
            raise DamagedImageError(f"{label} is a damaged {img.format} file ({exc}).") from None
    return img


def _open_checked(fh: BinaryIO, label: str, max_pixels: int) -> Image.Image:
    try:
        img = Image.open(fh, formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError as exc:
        # PIL's own limit fired first (it is looser than ours): the same refusal, in our words.
        raise ImageError(
            f"{label} has too many pixels: it is above the pixel cap of {max_pixels:,} ({exc})."
        ) from None
    except Exception:  # noqa: BLE001 - unidentifiable or disallowed: the same answer
        fmt = _sniff(fh)
        if fmt:
            raise DamagedImageError(
                f"{label} starts like a {fmt} file but is damaged or truncated; it cannot be read."
            ) from None
        raise ImageError(
            f"{label} is not a readable image in an allowed format "
            f"({', '.join(ALLOWED_FORMATS)})."
        ) from None
    width, height = img.size
    if width * height > max_pixels:
        raise ImageError(
            f"{label} is {width}x{height} = {width * height:,} pixels, above the pixel cap of "
            f"{max_pixels:,}. Resize it before using it."
        )
    if width < 1 or height < 1:
        raise ImageError(f"{label} has an empty size {width}x{height}.")
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
        log.debug("Ignoring the unreadable EXIF orientation of %s: %s", label, exc)


def _as_stream(source: ImageSource) -> tuple[BinaryIO, bool]:
    if isinstance(source, (bytes, bytearray, memoryview)):
        return io.BytesIO(bytes(source)), True
    if isinstance(source, (str, os.PathLike)):
        try:
            return open(source, "rb"), True
        except OSError as exc:
            raise ImageError(f"Cannot read image file {source}: {exc.strerror}.") from None
    return source, False


def _label(source: ImageSource) -> str:
    if isinstance(source, (str, os.PathLike)):
        return Path(source).name
    return getattr(source, "name", None) or "The image"
