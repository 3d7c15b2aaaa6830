"""Dataset fingerprints: what a run was trained on, so a changed dataset is noticed, not used.

A fingerprint is a small JSON-able dict: the modality, the classes, the features (tables) or the
image size and channels (images), the split sizes and a content hash of the data. Each run records
its dataset's fingerprint when it is created; ``load_run`` compares it with the dataset as it is
now, so re-importing a different table under the same name cannot make an old run evaluate,
predict or export on the wrong data.

It must be cheap (it is taken at every run creation): an imported dataset's content hash is
computed once, at import, and kept in its ``meta.json``; a built-in's is computed from its arrays
once per process.
"""

from __future__ import annotations

import functools
import hashlib
import logging
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.data.info import SPLITS, DatasetInfo
from core.data.registry import (
    builtin_dataset,
    builtin_names,
    get_info,
    imported_folder,
    is_builtin,
    replace_meta,
)
from core.errors import DatasetChanged

if TYPE_CHECKING:
    from core.workspace import Workspace

logger = logging.getLogger(__name__)

HASH_PREFIX = "sha256:"
_CHUNK = 1024**2
# Compared in this order; the name is not compared (it is how the dataset was found).
COMPARED = ("modality", "classes", "features", "image_size", "channels", "split_counts",
            "content_hash")
_LABELS = {"features": "features", "image_size": "image size", "channels": "channels",
           "split_counts": "split sizes", "content_hash": "content hash"}


def fingerprint(ws: Workspace, name: str) -> dict[str, Any]:
    """The fingerprint of dataset ``name`` as it is now (raises ``DatasetNotFound``)."""
    info = get_info(ws, name)
    if is_builtin(name):
        digest = _builtin_hash(name)
    else:
        digest = info.content_hash or _backfill_hash(imported_folder(ws, name), info)
    shape: dict[str, Any] = (
        {"features": list(info.feature_names)} if info.modality == "tabular"
        else {"image_size": info.image_size, "channels": info.channels}
    )
    return {
        "name": info.name,
        "modality": info.modality,
        "classes": list(info.classes),
        **shape,
        "split_counts": {s: int(info.split_counts.get(s, 0)) for s in SPLITS},
        "content_hash": digest or None,  # None: unknown (then only the facts above are compared)
    }


def check_fingerprint(
    ws: Workspace,
    recorded: dict[str, Any] | None,
    name: str,
    run_id: str | None = None,
) -> None:
    """Raise ``DatasetChanged`` if dataset ``name`` no longer matches ``recorded``.

    ``recorded=None`` (a run created before fingerprints existed) passes. A fact missing on either
    side (an unknown content hash, a key from a newer version) is not compared.
    """
    if not recorded:
        return
    current = fingerprint(ws, name)
    changes = [
        _describe(key, recorded[key], current[key])
        for key in COMPARED
        if recorded.get(key) is not None and current.get(key) is not None
        and _normal(recorded[key]) != _normal(current[key])
    ]
    if changes:
        run = f"run {run_id}" if run_id else "the run"
        raise DatasetChanged(
            f"Dataset {name!r} changed since {run} was trained ({' / '.join(changes)}); "
            f"re-import the original data or train a new run."
        )


def hash_files(folder: Path, relative_paths: Iterable[str]) -> str:
    """``sha256:<hex>`` of the named files of ``folder``: each one's path, size and bytes."""
    digest = hashlib.sha256()
    for rel in relative_paths:
        path = Path(folder) / rel
        digest.update(f"{rel}\0{path.stat().st_size}\0".encode())
        with open(path, "rb") as handle:
            while chunk := handle.read(_CHUNK):
                digest.update(chunk)
    return HASH_PREFIX + digest.hexdigest()


def dataset_hash(folder: Path, modality: str) -> str:
    """The content hash of the dataset stored in ``folder`` (at import, or later for old ones)."""
    # Imported here: tables and folders import this module to hash what they store.
    if modality == "tabular":
        from core.data.tables import stored_files
    else:
        from core.data.folders import stored_files
    return hash_files(folder, stored_files(folder))


def prepare_builtins() -> None:
    """Build every built-in dataset and its content hash in this process, once: what the warm
    job parent (core.runs.warm_parent) does before it forks jobs, so that no job, and no study
    driver recording a trial, repeats it (digits 17 ms; shapes 0.5 s and a 32 MB hash)."""
    for name in builtin_names():
        _builtin_hash(name)


@functools.cache
def _builtin_hash(name: str) -> str:
    """A built-in's arrays and labels, split by split (built-ins are fixed within a process)."""
    dataset = builtin_dataset(name)
    digest = hashlib.sha256()
    for split in SPLITS:
        data = dataset.array(split)
        if data is None:  # not an in-memory dataset: nothing cheap to hash
            return ""
        labels = np.ascontiguousarray(dataset.labels(split))
        digest.update(f"{split}\0{data.dtype}\0{data.shape}\0".encode())
        digest.update(np.ascontiguousarray(data).data)
        digest.update(labels.data)
    return HASH_PREFIX + digest.hexdigest()


def _backfill_hash(folder: Path, info: DatasetInfo) -> str:
    """Hash a dataset imported before fingerprints existed, and keep the hash in its meta.json."""
    try:
        digest = dataset_hash(folder, info.modality)
    except (OSError, ValueError, KeyError) as exc:
        logger.warning("Cannot hash dataset %s (%s): its content hash is unknown", info.name, exc)
        return ""
    info.content_hash = digest
    try:
        replace_meta(folder, info)
    except OSError as exc:  # a read-only workspace: the hash is recomputed next time
        logger.warning("Cannot store the content hash of dataset %s: %s", info.name, exc)
    return digest


def _normal(value: Any) -> Any:
    # JSON turns tuples into lists and int keys into strings: compare what JSON would store.
    if isinstance(value, dict):
        return {str(k): _normal(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_normal(v) for v in value]
    return value


def _describe(key: str, before: Any, after: Any) -> str:
    label = _LABELS.get(key, key)
    return f"{label} {_short(key, before)} -> {_short(key, after)}"


def _short(key: str, value: Any) -> str:
    if key == "content_hash":
        return str(value).removeprefix(HASH_PREFIX)[:12]
    if isinstance(value, dict):
        return "/".join(f"{k}={v}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        shown = ", ".join(map(str, value[:6]))
        return f"[{shown}{f', ... ({len(value)} in all)' if len(value) > 6 else ''}]"
    return str(value)
