"""Importing datasets into the workspace: a folder, a ZIP of one, or a CSV.

Every import is staged in a hidden work folder inside ``<home>/datasets/`` (same filesystem, so
the final ``os.rename`` is atomic), validated there, and only then renamed to
``<home>/datasets/<name>/``. Any failure removes the work folder: the workspace is left exactly as
it was.
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from core.data.archive import MAX_BYTES, MAX_ENTRIES, MAX_RATIO, safe_extract
from core.data.folders import JUNK_NAMES, build_image_dataset
from core.data.images import IMAGE_EXTENSIONS
from core.data.info import DatasetInfo
from core.data.registry import check_new_name
from core.data.tables import prepare_table, write_table_dataset
from core.errors import UserError

if TYPE_CHECKING:
    from core.workspace import Workspace

logger = logging.getLogger(__name__)

WORK_PREFIX = ".import-"
STALE_AFTER_S = 24 * 3600  # work folders left by a killed import are removed after this

Progress = Callable[[int, int], None]


def import_dataset(
    ws: Workspace,
    name: str,
    source: str | Path,
    target: str | None = None,
    progress: Progress | None = None,
) -> DatasetInfo:
    """Import ``source`` (a folder of class folders, a .zip of one, or a .csv) as ``name``.

    ``target`` names the label column and is required for a CSV. ``progress(done, total)`` is
    called while files are copied or extracted.
    """
    path = Path(source)
    if path.is_dir():
        return import_folder(ws, name, path, progress)
    if not path.is_file():
        raise UserError(f"Cannot import {source}: no such file or folder.")
    suffix = path.suffix.lower()
    if suffix == ".csv":
        return import_csv(ws, name, path, target, progress)
    if suffix == ".zip" or zipfile.is_zipfile(path):
        return import_zip(ws, name, path, progress)
    raise UserError(
        f"Cannot import {path.name}: expected a folder of class folders, a .zip of one, or a .csv."
    )


def import_folder(
    ws: Workspace, name: str, source: Path, progress: Progress | None = None
) -> DatasetInfo:
    with _staging(ws, name) as out:
        info = build_image_dataset(name, Path(source), out, progress)
    logger.info("Imported folder %s as dataset %s", source, name)
    return info


def import_csv(
    ws: Workspace,
    name: str,
    source: Path,
    target: str | None,
    progress: Progress | None = None,
) -> DatasetInfo:
    check_new_name(ws, name)  # a bad name is refused before the file is even read
    # Validated before staging: a refused table leaves no trace in the workspace.
    table = prepare_table(Path(source), target)
    with _staging(ws, name) as out:
        info = write_table_dataset(name, table, out, progress)
    logger.info("Imported table %s as dataset %s", source, name)
    return info


def import_zip(
    ws: Workspace,
    name: str,
    source: Path,
    progress: Progress | None = None,
    *,
    max_entries: int = MAX_ENTRIES,
    max_bytes: int = MAX_BYTES,
    max_ratio: float = MAX_RATIO,
) -> DatasetInfo:
    """Import a ZIP of an ImageFolder; the caps are keyword arguments so tests can lower them."""
    with _staging(ws, name) as out:
        extracted = out.parent / "extract"
        extracted.mkdir()
        # Extraction and then storing each count for half of the progress bar.
        phase1, phase2 = _halves(progress)
        safe_extract(
            Path(source),
            extracted,
            max_entries=max_entries,
            max_bytes=max_bytes,
            max_ratio=max_ratio,
            progress=phase1,
        )
        info = build_image_dataset(name, _unwrap(extracted), out, phase2, move=True)
    logger.info("Imported archive %s as dataset %s", Path(source).name, name)
    return info


def _unwrap(root: Path) -> Path:
    """The folder that holds the data: a single top folder (``data/cats``, ``data/dogs``) is
    stepped into, since that is how most tools zip a folder."""
    while True:
        entries = [e for e in root.iterdir() if not _junk(e.name)]
        if len(entries) != 1 or not entries[0].is_dir() or _is_data_level(entries[0]):
            return root
        root = entries[0]


def _is_data_level(folder: Path) -> bool:
    # A lone train/ or class folder is data, not a wrapper: the layout check will explain.
    if folder.name.lower() in {"train", "val", "valid", "validation", "test"}:
        return True
    return any(p.suffix.lower() in IMAGE_EXTENSIONS for p in folder.iterdir() if p.is_file())


def _junk(name: str) -> bool:
    return name.startswith(".") or name.lower() in JUNK_NAMES


def _halves(progress: Progress | None) -> tuple[Progress | None, Progress | None]:
    if progress is None:
        return None, None

    def first(done: int, total: int) -> None:
        progress(done, 2 * total)

    def second(done: int, total: int) -> None:
        progress(total + done, 2 * total)

    return first, second


@contextmanager
def _staging(ws: Workspace, name: str) -> Iterator[Path]:
    """Yield an empty folder to build the dataset in; rename it into place if the body succeeds.

    Whatever happens, the hidden work folder around it is removed.
    """
    final = check_new_name(ws, name)
    final.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale(final.parent)
    work = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=final.parent))
    try:
        out = work / "dataset"
        out.mkdir()
        yield out
        if final.exists():  # another import of the same name finished meanwhile
            raise UserError(f"A dataset named {name!r} already exists; choose another name.")
        os.rename(out, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _remove_stale(datasets: Path) -> None:
    cutoff = time.time() - STALE_AFTER_S
    for folder in datasets.glob(f"{WORK_PREFIX}*"):
        try:
            if folder.stat().st_mtime < cutoff:
                shutil.rmtree(folder, ignore_errors=True)
                logger.info("Removed the leftovers of an interrupted import: %s", folder.name)
        except OSError:
            continue

