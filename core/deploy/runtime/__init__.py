"""The serving runtime: what a bundle needs to serve itself, and what the project decodes and
preprocesses with. One copy of every rule: the project imports this package, and export copies
the folder whole into each ONNX bundle (run there with ``python -m runtime``).

Standard library, numpy and Pillow only (onnxruntime for ``model``; FastAPI and uvicorn for
``app``, ``server`` and ``__main__``), relative imports only, never ``core`` nor torch.

- ``images``      decoding untrusted bytes: allow-listed formats, a pixel cap
- ``preprocess``  modes to L/RGB (alpha, 16/32-bit, float), resize, normalise; feature rows
- ``manifest``    every file of a bundle with its sha256: written at export, checked at start
- ``model``       ``BundleModel`` (onnxruntime) and the JSONL ``RequestLog``
- ``settings``    ``Settings`` and the server's flags
- ``app``         ``create_app``: the FastAPI routes;  ``server``: uvicorn with header deadlines

Names are re-exported lazily, so importing the package (as ``core.data`` does) loads no web
framework.
"""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "BundleError": "errors", "InputError": "errors", "ImageError": "errors",
    "DamagedImageError": "errors", "SettingsError": "errors",
    "ALLOWED_FORMATS": "images", "MAX_PIXELS": "images", "open_image": "images",
    "probe_image": "images",
    "GRAY_MODES": "preprocess", "to_mode": "preprocess", "to_8bit": "preprocess",
    "resize_square": "preprocess", "normalize_pixels": "preprocess",
    "image_array": "preprocess", "feature_row": "preprocess", "standardize": "preprocess",
    "feature_array": "preprocess", "image_spec": "preprocess", "tabular_spec": "preprocess",
    "MANIFEST": "manifest", "PRODUCER": "manifest", "sha256_bytes": "manifest",
    "sha256_file": "manifest", "read_manifest": "manifest", "verify_bundle": "manifest",
    "write_manifest": "manifest", "read_verified": "manifest",
    "BundleModel": "model", "RequestLog": "model",
    "Settings": "settings", "add_server_arguments": "settings", "settings_from_args": "settings",
    "create_app": "app", "run": "server",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
