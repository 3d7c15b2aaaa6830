"""The dataset registry: built-ins by decorator, imported datasets from the workspace.

An imported dataset is a folder ``<home>/datasets/<name>/`` holding ``meta.json`` (the
``DatasetInfo``) next to its data; folders whose name starts with a dot are work in progress
(imports being staged, deletions) and are never listed.
"""

from __future__ import annotations

import copy
import functools
import json
import logging
import os
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from core.data.dataset import Dataset
from core.data.info import DatasetInfo
from core.errors import DatasetNotFound, UserError
from core.workspace import check_name, datasets_dir, is_valid_name

if TYPE_CHECKING:
    from core.workspace import Workspace

logger = logging.getLogger(__name__)

META_FILE = "meta.json"

_BUILTINS: dict[str, Callable[[], Dataset]] = {}


def register_builtin(name: str) -> Callable[[Callable[[], Dataset]], Callable[[], Dataset]]:
    """Register a builder of a built-in dataset; it runs once per process (cached)."""

    def decorator(builder: Callable[[], Dataset]) -> Callable[[], Dataset]:
        if name in _BUILTINS:
            raise ValueError(f"Built-in dataset {name!r} is registered twice")
        cached = functools.lru_cache(maxsize=1)(builder)
        _BUILTINS[name] = cached
        return cached

    return decorator


def builtin_names() -> list[str]:
    return list(_BUILTINS)


def list_datasets(ws: Workspace) -> list[DatasetInfo]:
    """Built-ins first (registration order), then imported datasets sorted by name."""
    infos = [builtin_dataset(name).info.copy() for name in _BUILTINS]
    root = datasets_dir(ws.home)
    for folder in sorted(root.iterdir()) if root.is_dir() else []:
        # Hidden work folders, names no command could open, and links (which may point out of
        # the workspace) are not datasets.
        if not is_valid_name("dataset", folder.name) or folder.is_symlink():
            continue
        if not (folder / META_FILE).is_file():
            continue
        try:
            infos.append(read_meta(folder))
        except (OSError, ValueError, TypeError) as exc:
            logger.warning("Skipping dataset folder %s: unreadable %s (%s)", folder, META_FILE, exc)
    return infos


def get_info(ws: Workspace, name: str) -> DatasetInfo:
    if name in _BUILTINS:
        return builtin_dataset(name).info.copy()
    folder = imported_folder(ws, name)
    try:
        return read_meta(folder)
    except (OSError, ValueError, TypeError) as exc:
        raise DatasetNotFound(
            f"Dataset {name!r} is damaged ({META_FILE} unreadable: {exc}). Delete and re-import it."
        ) from None


def load_dataset(ws: Workspace, name: str) -> Dataset:
    """The dataset's samples. Built-ins are shared, read-only arrays (built once per process)."""
    if name in _BUILTINS:
        dataset = copy.copy(builtin_dataset(name))  # shares the read-only arrays
        dataset.info = dataset.info.copy()  # callers may edit their info; the cache stays intact
        return dataset
    info = get_info(ws, name)
    folder = imported_folder(ws, name)
    if info.modality == "image":
        from core.data.folders import load_folder_dataset

        return load_folder_dataset(folder, info)
    from core.data.tables import load_table_dataset

    return load_table_dataset(folder, info)


def delete_dataset(ws: Workspace, name: str) -> None:
    """Delete an imported dataset (built-ins cannot be deleted)."""
    if name in _BUILTINS:
        raise UserError(f"{name!r} is a built-in dataset and cannot be deleted.")
    folder = imported_folder(ws, name)
    # Rename first so a half-deleted folder is never listed as a dataset.
    trash = folder.with_name(f".deleting-{name}-{uuid.uuid4().hex[:8]}")
    os.replace(folder, trash)
    shutil.rmtree(trash, ignore_errors=True)
    logger.info("Deleted dataset %s", name)


def check_new_name(ws: Workspace, name: str) -> Path:
    """Validate a name for a new dataset; return the folder it will live in."""
    check_name("dataset", name)
    if name in _BUILTINS:
        raise UserError(f"{name!r} is the name of a built-in dataset; choose another name.")
    folder = ws.dataset_dir(name)
    if folder.exists():
        raise UserError(f"A dataset named {name!r} already exists; delete it or choose another.")
    return folder


def read_meta(folder: Path) -> DatasetInfo:
    return DatasetInfo.from_dict(json.loads((folder / META_FILE).read_text(encoding="utf-8")))


def write_json(path: Path, payload: object) -> None:
    path.write_text(json.dumps(payload, indent=1), encoding="utf-8")


def replace_meta(folder: Path, info: DatasetInfo) -> None:
    """Rewrite a live dataset's meta.json atomically: a reader never sees half a file."""
    tmp = folder / f".{META_FILE}.{uuid.uuid4().hex[:8]}.tmp"
    try:
        write_json(tmp, info.to_dict())
        os.replace(tmp, folder / META_FILE)
    finally:
        tmp.unlink(missing_ok=True)


def available_names(ws: Workspace) -> list[str]:
    return [info.name for info in list_datasets(ws)]


def is_builtin(name: str) -> bool:
    return name in _BUILTINS


def builtin_dataset(name: str) -> Dataset:
    """The cached built-in itself (read-only arrays): callers must not edit it."""
    return _BUILTINS[name]()



def imported_folder(ws: Workspace, name: str) -> Path:
    """The folder of the imported dataset ``name``; an invalid name is refused before any path
    is built, and a name with no dataset raises ``DatasetNotFound`` listing the available ones."""
    folder = None
    if is_valid_name("dataset", name):
        folder = ws.dataset_dir(name)
    if folder is None or not (folder / META_FILE).is_file():
        raise DatasetNotFound(
            f"Unknown dataset {name!r}. Available: {', '.join(available_names(ws))}."
        )
    return folder
