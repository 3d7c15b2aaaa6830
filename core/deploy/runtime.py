"""Bundles on the serving side: verification, numpy preprocessing, the onnxruntime model.

Self-contained on purpose: this file is copied into every ONNX bundle as ``runtime.py`` (next to
``serve.py``, from ``core/deploy/webapp.py``), so it imports nothing from ``core`` and never
torch: only the standard library, numpy and Pillow, plus onnxruntime when a model is loaded.
The preprocessing is the project's (``core.data.transforms``) rewritten in numpy from the
bundle's ``preprocess.json``; a test holds the two to 1e-5 on real samples.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, ImageOps

log = logging.getLogger("lab2market.serve")

PRODUCER = "lab2market"
MANIFEST = "manifest.json"
ALLOWED_FORMATS = ("PNG", "JPEG", "WEBP", "BMP", "GIF", "TIFF")
_ALPHA_MODES = ("RGBA", "RGBa", "LA", "La", "PA")
_HIGH_DEPTH = ("I", "I;16", "I;16B", "I;16L", "I;16N", "F")


class BundleError(Exception):
    """The folder is not a bundle this project exported, or a file changed since the export."""


class InputError(Exception):
    """A request's payload cannot be used (answered 422 with this message)."""


@dataclass
class Settings:
    token: str | None = None  # a bearer token required on /predict and /metadata
    max_body_bytes: int = 8 * 1024 * 1024
    max_pixels: int = 40_000_000  # checked from the image header, before decoding
    max_concurrency: int = 4  # requests in flight; one more is answered 429 at once
    timeout_s: float = 10.0  # reading the body, and the inference itself
    top_k: int = 3
    log_path: Path | None = None  # JSONL request log (None: no log)
    threads: int = 0  # onnxruntime intra-op threads (0: its default)


# -- bundles ---------------------------------------------------------------------------------


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def read_manifest(folder: Path) -> dict[str, Any]:
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{folder} has no {MANIFEST}: it is not an exported bundle.")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path} is not readable JSON ({exc}).") from None
    if not isinstance(manifest, dict) or manifest.get("producer") != PRODUCER:
        raise BundleError(f"{folder} was not exported by Lab2Market; it is refused.")
    files = manifest.get("files")
    if not isinstance(files, dict) or manifest.get("model_file") not in files:
        raise BundleError(f"{path} lists no model file; it is refused.")
    for name in files:
        if not isinstance(name, str) or Path(name).name != name or name in (".", "..", MANIFEST):
            raise BundleError(f"{path} lists an unsafe file name {name!r}; it is refused.")
    return manifest


def _file(folder: Path, name: str) -> Path:
    path = Path(folder) / name
    if path.is_symlink() or not path.is_file():
        raise BundleError(f"{name} is missing from the bundle {folder} (or is not a plain file).")
    return path


def verify_bundle(folder: Path) -> dict[str, Any]:
    """The manifest, once every file it lists matches its sha256; else ``BundleError``."""
    manifest = read_manifest(folder)
    for name, entry in manifest["files"].items():
        if sha256_file(_file(folder, name)) != entry.get("sha256"):
            raise BundleError(f"{name} in {folder} differs from the manifest (sha256): the bundle "
                              "was modified after export and is refused. Export it again.")
    return manifest


def read_verified(folder: Path, name: str, manifest: dict[str, Any]) -> bytes:
    """A file's bytes, hashed as read: what is used is exactly what was checked."""
    data = _file(folder, name).read_bytes()
    if sha256_bytes(data) != manifest["files"][name]["sha256"]:
        raise BundleError(f"{name} in {folder} differs from the manifest; it is refused.")
    return data


# -- preprocessing (numpy / Pillow, from preprocess.json) -----------------------------------------


def open_image(data: bytes, max_pixels: int, mode: str) -> Image.Image:
    """Decode upload bytes with an allow-list of formats and a pixel cap, in ``mode``."""
    try:
        img = Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS)
    except Image.DecompressionBombError:
        raise InputError(f"The image has too many pixels (cap {max_pixels:,}).") from None
    except Exception:  # noqa: BLE001 - untrusted bytes: one answer for every parser failure
        raise InputError("The upload is not a readable image in an allowed format "
                         f"({', '.join(ALLOWED_FORMATS)}).") from None
    width, height = img.size
    if width * height > max_pixels:
        raise InputError(f"The image is {width}x{height} = {width * height:,} pixels, above the "
                         f"pixel cap of {max_pixels:,}. Resize it first.")
    try:
        img.load()
    except Exception as exc:  # noqa: BLE001
        raise InputError(f"The image is corrupt or truncated ({exc}).") from None
    try:
        ImageOps.exif_transpose(img, in_place=True)
    except Exception:  # noqa: BLE001 - an unreadable EXIF block is not worth refusing
        pass
    return to_mode(img, mode)


def to_mode(img: Image.Image, mode: str) -> Image.Image:
    """``L`` or ``RGB``; alpha composited on white, 16-bit scaled (as the project does)."""
    if img.mode in _HIGH_DEPTH:
        arr = np.asarray(img).astype(np.float64)
        if img.mode.startswith("I;16") or (img.mode == "I" and arr.size and arr.max() > 255):
            arr = arr / 257.0
        elif img.mode == "F" and arr.size and np.nanmax(arr) <= 1.0:
            arr = arr * 255.0
        img = Image.fromarray(np.clip(np.rint(np.nan_to_num(arr)), 0, 255).astype(np.uint8))
    if img.mode == "P":
        img = img.convert("RGBA" if "transparency" in img.info else "RGB")
    if img.mode in _ALPHA_MODES:
        background = Image.new("RGBA", img.size, (255, 255, 255, 255))
        background.alpha_composite(img.convert("RGBA"))
        img = background.convert("RGB")
    return img if img.mode == mode else img.convert(mode)


def image_array(img: Image.Image, spec: dict[str, Any]) -> np.ndarray:
    """An image in the spec's mode -> float32 (C, H, W): resize, /255, (x - mean) / std."""
    height, width = spec["size"]
    if img.size != (width, height):
        img = img.resize((width, height), Image.Resampling.BILINEAR)
    arr = np.asarray(img, dtype=np.uint8).astype(np.float32)
    arr = (arr[..., None] if arr.ndim == 2 else arr).transpose(2, 0, 1) / np.float32(255.0)
    mean = np.asarray(spec["mean"], dtype=np.float32).reshape(-1, 1, 1)
    std = np.asarray(spec["std"], dtype=np.float32).reshape(-1, 1, 1)
    return np.ascontiguousarray((arr - mean) / std, dtype=np.float32)


def feature_array(features: Any, spec: dict[str, Any]) -> np.ndarray:
    """A list (or {name: value}) of features -> standardised float32 (F,)."""
    names = spec["feature_names"]
    if isinstance(features, dict):
        missing = [n for n in names if n not in features]
        if missing:
            raise InputError(f"Missing features: {', '.join(missing)}.")
        features = [features[n] for n in names]
    try:
        row = np.asarray(features, dtype=np.float32).reshape(-1)
    except (TypeError, ValueError):
        raise InputError(f"'features' must hold {len(names)} numbers.") from None
    if len(row) != len(names) or not np.isfinite(row).all():
        raise InputError(f"Expected {len(names)} finite numbers ({', '.join(names)}), "
                         f"got {len(row)}.")
    return (row - np.asarray(spec["mean"], np.float32)) / np.asarray(spec["std"], np.float32)


# -- the model -------------------------------------------------------------------------------


class BundleModel:
    """A verified ONNX bundle on onnxruntime: ``predict(batch) -> probabilities``."""

    def __init__(self, folder: str | os.PathLike, threads: int = 0):
        import onnxruntime as ort

        self.folder = Path(folder).resolve()
        self.manifest = verify_bundle(self.folder)
        model_file = self.manifest["model_file"]
        if not model_file.endswith(".onnx"):
            raise BundleError(f"{self.folder} holds a {self.manifest.get('format')} model; the "
                              "server runs ONNX bundles only (export with --format onnx).")
        self.spec = json.loads(read_verified(self.folder, "preprocess.json", self.manifest))
        self.classes = json.loads(read_verified(self.folder, "labels.json", self.manifest))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            read_verified(self.folder, model_file, self.manifest), options,
            providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        digest = sha256_file(self.folder / MANIFEST)[:12]
        self.version = f"{self.manifest.get('run_id')}/{self.manifest.get('bundle')}@{digest}"

    @property
    def modality(self) -> str:
        return self.spec["modality"]

    def predict(self, batch: np.ndarray) -> np.ndarray:
        logits = self.session.run(None, {self.input_name: batch.astype(np.float32)})[0]
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    def top_k(self, probs: np.ndarray, k: int) -> list[dict[str, Any]]:
        order = np.argsort(-probs)[: max(1, min(k, len(self.classes)))]
        return [{"class": self.classes[i], "index": int(i), "probability": float(probs[i])}
                for i in order]

    def metadata(self) -> dict[str, Any]:
        m = self.manifest
        return {"model_version": self.version, "bundle": m.get("bundle"), "run_id": m.get("run_id"),
                "format": m.get("format"), "precision": m.get("precision"),
                "classes": self.classes, "input": m.get("input"), "preprocess": self.spec,
                "exported_at": m.get("created_at")}


class RequestLog:
    """Append-only JSONL of served requests; rotated to ``.1`` beyond ``max_bytes``."""

    def __init__(self, path: Path, max_bytes: int = 20 * 1024 * 1024):
        self.path, self.max_bytes = Path(path), max_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            try:
                if self.path.exists() and self.path.stat().st_size > self.max_bytes:
                    os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(line)
            except OSError as exc:  # a full disk must not take the server down
                log.warning("Cannot write the request log %s: %s", self.path, exc)
