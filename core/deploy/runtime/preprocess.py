"""THE preprocessing, in numpy: what training, evaluation, prediction and every bundle apply.

A ``spec`` (a bundle's ``preprocess.json``; the project builds it with ``image_spec`` /
``tabular_spec``) says everything a sample needs:

- image: any PIL mode -> ``L`` or ``RGB`` (``to_mode``) -> square of ``size`` with PIL bilinear
  (antialiased when shrinking) -> float32 CHW ``(pixel / 255 - mean) / std``.
- table: a row (list or {feature: value}) of finite numbers -> float32 ``(x - mean) / std``.

The project adds torch on top (``core.data.transforms``); the arithmetic is this module's, so
core and a bundle give the same array to the bit.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from PIL import Image

from .errors import ImageError, InputError

GRAY_MODES = frozenset({"1", "L", "LA", "La", "I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_HIGH_DEPTH_MODES = frozenset({"I", "I;16", "I;16B", "I;16L", "I;16N", "F"})
_ALPHA_MODES = frozenset({"RGBA", "RGBa", "LA", "La", "PA"})
WHITE = (255, 255, 255, 255)


# -- modes ---------------------------------------------------------------------------------------


def to_mode(img: Image.Image, mode: str) -> Image.Image:
    """Any PIL mode -> ``"L"`` or ``"RGB"``: what a viewer shows, in 8 bits.

    Transparency is composited on white; 16-bit, 32-bit and float images are scaled to 8 bits
    (``to_8bit``) rather than clipped, so a 16-bit scan does not come out all white.
    """
    if img.mode in _HIGH_DEPTH_MODES:
        img = to_8bit(img)
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in _ALPHA_MODES:
        background = Image.new("RGBA", img.size, WHITE)
        background.alpha_composite(img.convert("RGBA"))
        img = background.convert("RGB")
    if img.mode == mode:
        return img
    try:
        return img.convert(mode)
    except ValueError as exc:
        raise ImageError(f"Cannot convert an image in mode {img.mode} to {mode}: {exc}") from None


def to_8bit(img: Image.Image) -> Image.Image:
    """A single-channel high-depth image (I;16*, I, F) -> ``L``, by one fixed rule.

    - ``I;16*`` (16-bit): value / 257, so 0..65535 maps onto 0..255.
    - ``I`` (32-bit integers): as is when every value fits 0..255; / 257 when they fit 0..65535
      (16-bit data that Pillow opened as ``I``); otherwise the image's own range [min, max] is
      stretched linearly onto 0..255 (nothing else maps arbitrary 32-bit data sensibly).
    - ``F`` (float): x 255 when no value exceeds 1.0 (images in [0, 1]); NaN counts as 0.
    Then rounded to the nearest integer and clipped to 0..255.
    """
    arr = np.asarray(img).astype(np.float64)
    if img.mode.startswith("I;16"):
        arr = arr / 257.0
    elif img.mode == "I" and arr.size:
        arr = _int32_scaled(arr)
    elif img.mode == "F" and arr.size and np.nanmax(arr) <= 1.0:
        arr = arr * 255.0
    arr = np.nan_to_num(arr, nan=0.0)
    return Image.fromarray(np.clip(np.rint(arr), 0, 255).astype(np.uint8), mode="L")


def _int32_scaled(arr: np.ndarray) -> np.ndarray:
    low, high = float(arr.min()), float(arr.max())
    if low >= 0 and high <= 255:
        return arr
    if low >= 0 and high <= 65535:
        return arr / 257.0
    return (arr - low) * (255.0 / max(high - low, 1.0))


# -- images --------------------------------------------------------------------------------------


def resize_square(img: Image.Image, size: int) -> Image.Image:
    """Resize to ``size`` x ``size`` with PIL bilinear (antialiased when shrinking)."""
    if img.size == (size, size):
        return img
    return img.resize((size, size), Image.Resampling.BILINEAR)


def normalize_pixels(batch: Any, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """uint8 (N,H,W) or (N,H,W,C) -> float32 (N,C,H,W): ``(pixel / 255 - mean) / std``."""
    arr = np.asarray(batch, dtype=np.uint8)
    if arr.ndim == 3:
        arr = arr[..., None]
    x = arr.transpose(0, 3, 1, 2).astype(np.float32) / np.float32(255.0)
    x -= np.asarray(mean, dtype=np.float32).reshape(1, -1, 1, 1)
    x /= np.asarray(std, dtype=np.float32).reshape(1, -1, 1, 1)
    return np.ascontiguousarray(x)


def image_array(img: Image.Image, spec: Mapping[str, Any]) -> np.ndarray:
    """Any PIL image -> float32 (C,H,W) as the spec says: mode, square resize, normalise."""
    size = spec["size"][0]  # [height, width]: the project exports square sizes only
    arr = np.asarray(resize_square(to_mode(img, spec["mode"]), size), dtype=np.uint8)
    return normalize_pixels(arr[None], spec["mean"], spec["std"])[0]


# -- tables --------------------------------------------------------------------------------------


def feature_row(sample: Any, names: Sequence[str]) -> np.ndarray:
    """A float32 row of finite numbers from a sequence, an array or a {feature: value} dict."""
    if isinstance(sample, Mapping):
        missing = [n for n in names if n not in sample]
        if missing:
            raise InputError(f"Missing features: {', '.join(missing)}.")
        sample = [sample[n] for n in names]
    try:
        row = np.asarray(sample, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"A row must hold {len(names)} numbers ({', '.join(names)}).") from None
    if len(row) != len(names):
        raise InputError(f"Expected {len(names)} features ({', '.join(names)}), got {len(row)}.")
    if not np.isfinite(row).all():
        raise InputError("Features must be finite numbers (no NaN or infinity).")
    return row


def standardize(rows: Any, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """float rows (N,F) -> float32 ``(x - mean) / std``."""
    x = np.array(rows, dtype=np.float32)
    return (x - np.asarray(mean, np.float32)) / np.asarray(std, np.float32)


def feature_array(features: Any, spec: Mapping[str, Any]) -> np.ndarray:
    """A list (or {name: value}) of features -> standardised float32 (F,)."""
    row = feature_row(features, spec["feature_names"])
    return standardize(row[None], spec["mean"], spec["std"])[0]


# -- specs (what preprocess.json holds) ----------------------------------------------------------


def safe_std(std: Sequence[float]) -> list[float]:
    # A constant feature (or a flat channel) has std 0: dividing by it would give inf/nan.
    return [float(s) if s > 1e-12 else 1.0 for s in std]


def image_spec(channels: int, size: int, mean: Sequence[float],
               std: Sequence[float]) -> dict[str, Any]:
    return {
        "modality": "image",
        "channels": channels,
        "mode": "L" if channels == 1 else "RGB",
        "alpha": "composited on white",
        "high_depth": "I;16 / 257; I as is, / 257 or stretched by its range; F x 255 if <= 1",
        "size": [size, size],
        "resize": "PIL bilinear (antialiased), to a square, aspect ratio not kept",
        "layout": "CHW",
        "scale": "pixel / 255",
        "mean": [float(m) for m in mean],
        "std": safe_std(std),
        "formula": "(pixel / 255 - mean) / std",
    }


def tabular_spec(names: Sequence[str], mean: Sequence[float],
                 std: Sequence[float]) -> dict[str, Any]:
    return {
        "modality": "tabular",
        "feature_names": list(names),
        "dtype": "float32",
        "mean": [float(m) for m in mean],
        "std": safe_std(std),
        "formula": "(x - mean) / std",
    }
