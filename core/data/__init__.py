"""Datasets: the built-ins, imported folders / ZIPs / CSVs, and their tensors.

``import core.data`` stays light (no torch, no torchvision, no sklearn, no pandas) because the
dashboard pages use it: the torch-facing helpers (``make_preprocess``, ``build_torch_split``,
...) are imported from ``core.data.transforms`` / ``core.data.torchdata`` on first use.
"""

from __future__ import annotations

from typing import Any

from core.data import builtins as _builtins  # noqa: F401  (registers the built-in datasets)
from core.data.dataset import Dataset
from core.data.fingerprints import check_fingerprint, fingerprint
from core.data.images import ALLOWED_FORMATS, IMAGE_EXTENSIONS, MAX_PIXELS, open_image
from core.data.importers import import_dataset
from core.data.info import SPLITS, DatasetInfo
from core.data.registry import (
    builtin_names,
    delete_dataset,
    get_info,
    list_datasets,
    load_dataset,
    register_builtin,
)

_LAZY = {
    "make_preprocess": "core.data.transforms",
    "make_train_transform": "core.data.transforms",
    "preprocess_spec": "core.data.transforms",
    "preview_augmentations": "core.data.transforms",
    "TorchSplit": "core.data.torchdata",
    "CorruptSample": "core.data.torchdata",
    "build_torch_split": "core.data.torchdata",
    "collate_skipping": "core.data.torchdata",
}


def __getattr__(name: str) -> Any:
    # PEP 562: torch is imported the first time one of these names is used, not before.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'core.data' has no attribute {name!r}")


__all__ = [
    "ALLOWED_FORMATS",
    "IMAGE_EXTENSIONS",
    "MAX_PIXELS",
    "SPLITS",
    "Dataset",
    "DatasetInfo",
    "builtin_names",
    "check_fingerprint",
    "delete_dataset",
    "fingerprint",
    "get_info",
    "import_dataset",
    "list_datasets",
    "load_dataset",
    "open_image",
    "register_builtin",
    *_LAZY,
]
