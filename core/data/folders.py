"""ImageFolder datasets: scan a folder of class subfolders, validate it, store and load it.

Layout accepted: ``<root>/<class>/**/<image>`` (split 70/15/15 here), or the same under
``train/``, ``val/`` (or ``valid/``, ``validation/``) and optionally ``test/``, which keeps the
given split. Hidden files, ``.DS_Store``, ``Thumbs.db``, ``desktop.ini``, ``__MACOSX`` and files
without an image extension are ignored. A file with an image extension must be a valid image in an
allowed format, or the whole import is refused naming it.

Stored as ``<dataset>/images/<relative path>`` plus ``index.json`` listing every sample's file,
class and split, and ``meta.json``.
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import statistics
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from core.data.dataset import FolderDataset, split_info
from core.data.fingerprints import dataset_hash
from core.data.images import (
    GRAY_MODES,
    IMAGE_EXTENSIONS,
    DamagedImage,
    channel_stats,
    open_image,
    probe_image,
    resize_square,
    to_channels,
)
from core.data.info import SPLITS, DatasetInfo
from core.data.registry import META_FILE, write_json
from core.data.splits import stratified_split
from core.errors import InvalidArchive, InvalidImage
from core.progress import ProgressFn

logger = logging.getLogger(__name__)

INDEX_FILE = "index.json"
IMAGES_DIR = "images"
JUNK_NAMES = frozenset({".ds_store", "thumbs.db", "desktop.ini", "__macosx"})
SPLIT_ALIASES = {
    "train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"
}
DEFAULT_IMAGE_SIZE = 64  # keeps CPU training quick; --image-size overrides it per run
MIN_IMAGE_SIZE = 8
STATS_SAMPLES = 500  # mean/std from at most this many train images



@dataclass
class Sample:
    rel: str  # posix path relative to the scanned root (and, once stored, to images/)
    cls: str
    split: str | None  # None: to be split here


def scan_image_folder(root: Path) -> list[Sample]:
    """List the image files of an ImageFolder layout, sorted by path; refuse other layouts."""
    root = Path(root)
    dirs, loose = _children(root)
    if loose:
        raise InvalidArchive(
            f"Images must be inside class folders; found {loose[0]!r} at the top level."
        )
    split_dirs = {SPLIT_ALIASES[d.lower()]: d for d in dirs if d.lower() in SPLIT_ALIASES}
    if "train" not in split_dirs:
        return [s for d in dirs for s in _class_samples(root, d, None)]
    if "val" not in split_dirs:
        raise InvalidArchive(
            "Found a train/ folder but no val/ folder: add val/ (and optionally test/) with the "
            "same class folders, or put the class folders at the top level to split automatically."
        )
    ignored = sorted(set(dirs) - set(split_dirs.values()))
    if ignored:
        logger.warning("Ignoring folders next to train/ and val/: %s", ignored)
    samples = []
    for split, folder in split_dirs.items():
        sub_dirs, loose = _children(root / folder)
        if loose:
            raise InvalidArchive(f"Images in {folder}/ must be inside class folders: {loose[0]!r}.")
        samples += [s for d in sub_dirs for s in _class_samples(root, f"{folder}/{d}", split)]
    return samples


def _children(folder: Path) -> tuple[list[str], list[str]]:
    """(sub-folder names, loose image file names) of ``folder``, junk left out, sorted."""
    dirs, loose = [], []
    for entry in sorted(os.scandir(folder), key=lambda e: e.name):
        if _is_junk(entry.name):
            continue
        if entry.is_dir():
            dirs.append(entry.name)
        elif Path(entry.name).suffix.lower() in IMAGE_EXTENSIONS:
            loose.append(entry.name)
    return dirs, loose


def _class_samples(root: Path, class_rel: str, split: str | None) -> list[Sample]:
    cls = class_rel.rsplit("/", 1)[-1]
    found = []
    for here, sub_dirs, files in os.walk(root / class_rel):
        sub_dirs[:] = sorted(d for d in sub_dirs if not _is_junk(d))
        rel_here = Path(here).relative_to(root).as_posix()
        for name in sorted(files):
            if not _is_junk(name) and Path(name).suffix.lower() in IMAGE_EXTENSIONS:
                found.append(Sample(f"{rel_here}/{name}", cls, split))
    return found


def _is_junk(name: str) -> bool:
    return name.startswith(".") or name.lower() in JUNK_NAMES


def build_image_dataset(
    name: str, root: Path, out: Path, progress: ProgressFn | None = None, move: bool = False
) -> DatasetInfo:
    """Validate the ImageFolder at ``root`` and store it as dataset ``name`` in the new ``out``.

    Every image is probed (format allow-list, pixel cap, structure) before it is copied (or
    moved, when ``root`` is a throw-away extraction). Raises a ``UserError`` naming the problem.
    """
    samples = scan_image_folder(root)
    classes, labels, splits = _classes_and_splits(samples)
    modes, sizes, damaged = [], [], []
    for done, sample in enumerate(samples, start=1):
        try:
            img = probe_image(root / sample.rel, label=sample.rel)
            modes.append(img.mode)
            sizes.append(min(img.size))
        except DamagedImage as exc:
            # A damaged photo among good ones is kept, and skipped (and counted) in training.
            logger.warning("%s", exc)
            damaged.append(sample.rel)
        _store(root / sample.rel, out / IMAGES_DIR / sample.rel, move)
        if progress:
            progress(done, len(samples))
    if not modes:
        raise InvalidImage("None of the images can be read: every file is damaged.")
    channels = 1 if all(m in GRAY_MODES for m in modes) else 3
    image_size = default_image_size(sizes)
    files = [s.rel for s in samples]
    mean, std = _pixel_stats(out / IMAGES_DIR, [files[j] for j in splits["train"]], channels,
                             image_size)
    info = split_info(name, "image", classes, labels, splits, channels=channels,
                      image_size=image_size, mean=mean, std=std, builtin=False,
                      description=_description(len(samples), len(classes), damaged))
    split_of = {int(j): s for s, idx in splits.items() for j in idx}
    index = [
        {"file": f, "class": classes[labels[j]], "split": split_of[j]} for j, f in enumerate(files)
    ]
    write_json(out / INDEX_FILE, {"samples": index})
    info.content_hash = dataset_hash(out, "image")
    write_json(out / META_FILE, info.to_dict())
    return info


def stored_files(folder: Path) -> list[str]:
    """The files a stored image dataset's content hash covers: the index, then every image."""
    records = json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))["samples"]
    return [INDEX_FILE, *(f"{IMAGES_DIR}/{r['file']}" for r in records)]


def _description(n_images: int, n_classes: int, damaged: list[str]) -> str:
    text = f"Imported image folder: {n_images:,} images, {n_classes} classes."
    if damaged:
        text += f" {len(damaged)} damaged image(s) will be skipped in training."
    return text


def _classes_and_splits(
    samples: list[Sample],
) -> tuple[list[str], np.ndarray, dict[str, np.ndarray]]:
    presplit = any(s.split for s in samples)
    pool = [s.cls for s in samples if s.split in (None, "train")]
    classes = sorted(set(pool))
    if len(classes) < 2:
        where = "train/" if presplit else "the folder"
        raise InvalidArchive(
            f"A dataset needs at least 2 class folders with images in {where}; found "
            f"{len(classes)}{': ' + classes[0] if classes else ''}."
        )
    extra = sorted({s.cls for s in samples} - set(classes))
    if extra:
        raise InvalidArchive(f"Classes {extra} appear in val/ or test/ but not in train/.")
    lookup = {c: k for k, c in enumerate(classes)}
    labels = np.array([lookup[s.cls] for s in samples], dtype=np.int64)
    if not presplit:
        return classes, labels, stratified_split(labels)
    splits = {
        split: np.array([j for j, s in enumerate(samples) if s.split == split], dtype=np.int64)
        for split in SPLITS
    }
    return classes, labels, splits


def _store(src: Path, dst: Path, move: bool) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    if move:
        os.replace(src, dst)
    else:
        shutil.copyfile(src, dst)


def default_image_size(min_sides: list[int]) -> int:
    """64 when the images are at least that big (typical: photos), else their median side."""
    median = statistics.median(min_sides) if min_sides else DEFAULT_IMAGE_SIZE
    return DEFAULT_IMAGE_SIZE if median >= DEFAULT_IMAGE_SIZE else max(MIN_IMAGE_SIZE, int(median))


def _pixel_stats(
    images: Path, files: list[str], channels: int, size: int
) -> tuple[list[float], list[float]]:
    """Per-channel mean/std over up to STATS_SAMPLES train images (evenly spaced, resized)."""
    picks = np.unique(np.linspace(0, len(files) - 1, min(STATS_SAMPLES, len(files))).astype(int))
    arrays = []
    for j in picks:
        try:
            img = to_channels(open_image(images / files[j]), channels)
        except InvalidImage as exc:  # e.g. a truncated JPEG: skipped in training too
            logger.debug("Stats skip %s: %s", files[j], exc)
            continue
        arrays.append(np.asarray(resize_square(img, size)))
    if not arrays:
        raise InvalidImage("None of the training images can be decoded; check the files.")
    return channel_stats(arrays, channels)


def load_folder_dataset(folder: Path, info: DatasetInfo) -> FolderDataset:
    records = json.loads((folder / INDEX_FILE).read_text(encoding="utf-8"))["samples"]
    lookup = {c: k for k, c in enumerate(info.classes)}
    labels = np.array([lookup[r["class"]] for r in records], dtype=np.int64)
    splits = {
        split: np.array([j for j, r in enumerate(records) if r["split"] == split], dtype=np.int64)
        for split in SPLITS
    }
    files = [r["file"] for r in records]
    return FolderDataset(info, folder / IMAGES_DIR, files, labels, splits)
