"""``Dataset``: a dataset's samples by split, for in-memory arrays and for image folders."""

from __future__ import annotations

import copy
import dataclasses
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from core.data.images import open_image, to_channels
from core.data.info import SPLITS, DatasetInfo
from core.data.splits import class_counts, stratified_split
from core.errors import InvalidConfig


class Dataset:
    """Samples by split. ``i`` is always a position inside the split, ``0 <= i < size(split)``.

    Subclasses say how to fetch one sample; the split bookkeeping is shared.
    """

    in_memory = False  # True when every sample is an array row (torchdata can pre-stack them)

    def __init__(self, info: DatasetInfo, labels: np.ndarray, splits: dict[str, np.ndarray]):
        self.info = info
        self._labels = np.asarray(labels, dtype=np.int64)
        self._splits = {s: np.asarray(splits.get(s, ()), dtype=np.int64) for s in SPLITS}

    def size(self, split: str) -> int:
        return len(self._index(split))

    def __len__(self) -> int:
        return sum(len(idx) for idx in self._splits.values())

    def labels(self, split: str) -> np.ndarray:
        """Class indices (int64) of the split's samples, in order."""
        return self._labels[self._index(split)]

    def indices(self, split: str) -> np.ndarray:
        """The split's samples as indices into the whole dataset (int64, in split order)."""
        return self._index(split).copy()

    def with_splits(self, splits: dict[str, np.ndarray]) -> Dataset:
        """The same samples split another way (a cross-validation fold): a shallow copy whose
        split sizes and class counts follow ``splits``. The preprocessing statistics in
        ``info`` (tabular mean/std) stay the dataset's, so a fold run is evaluated, explained
        and served with the preprocessing it was trained with."""
        view = copy.copy(self)
        view._splits = {s: np.asarray(splits.get(s, ()), dtype=np.int64) for s in SPLITS}
        view.info = dataclasses.replace(
            self.info.copy(), split_counts={s: len(i) for s, i in view._splits.items()},
            class_counts_by_split=class_counts(self._labels, view._splits, len(self.info.classes)))
        return view

    def ids(self, split: str) -> list[str]:
        """Stable, unique sample ids, in split order."""
        return [f"{split}/{i:05d}" for i in range(self.size(split))]

    def raw(self, split: str, i: int) -> Image.Image | np.ndarray:
        """Image datasets: a PIL image in mode L or RGB. Tabular: the unscaled float32 row."""
        raise NotImplementedError

    def mask(self, split: str, i: int) -> np.ndarray | None:
        """The bool HxW mask of the object, where the dataset has one (``shapes``)."""
        return None

    def path(self, split: str, i: int) -> Path | None:
        """The sample's file, for file-backed datasets."""
        return None

    def array(self, split: str) -> np.ndarray | None:
        """In-memory datasets: the split's samples as one array (uint8 images or float32 rows)."""
        return None

    def _index(self, split: str) -> np.ndarray:
        try:
            return self._splits[split]
        except KeyError:
            choices = ", ".join(SPLITS)
            raise InvalidConfig(f"split must be one of {choices}; got {split!r}") from None

    def _sample(self, split: str, i: int) -> int:
        """The global sample index of position ``i`` in ``split``."""
        index = self._index(split)
        if not 0 <= i < len(index):
            raise IndexError(f"{self.info.name}/{split} has {len(index)} samples; got index {i}")
        return int(index[i])

    def __repr__(self) -> str:
        sizes = ", ".join(f"{s}={len(idx)}" for s, idx in self._splits.items())
        return f"{type(self).__name__}({self.info.name!r}, {self.info.modality}, {sizes})"


class ArrayDataset(Dataset):
    """Samples held in one array: images (N,H,W) / (N,H,W,3) uint8, or rows (N,F) float32."""

    in_memory = True

    def __init__(
        self,
        info: DatasetInfo,
        data: np.ndarray,
        labels: np.ndarray,
        splits: dict[str, np.ndarray],
        masks: np.ndarray | None = None,
    ):
        super().__init__(info, labels, splits)
        self._data = data
        self._masks = masks

    def raw(self, split: str, i: int) -> Image.Image | np.ndarray:
        sample = self._data[self._sample(split, i)]
        if self.info.modality == "tabular":
            return np.array(sample, dtype=np.float32)
        return Image.fromarray(np.ascontiguousarray(sample))  # uint8: HxW -> L, HxWx3 -> RGB

    def mask(self, split: str, i: int) -> np.ndarray | None:
        if self._masks is None:
            return None
        return np.array(self._masks[self._sample(split, i)], dtype=bool)

    def array(self, split: str) -> np.ndarray:
        return self._data[self._index(split)]


class FolderDataset(Dataset):
    """Images stored as files under ``root`` (an imported dataset's ``images/`` folder)."""

    def __init__(
        self,
        info: DatasetInfo,
        root: Path,
        files: list[str],
        labels: np.ndarray,
        splits: dict[str, np.ndarray],
    ):
        super().__init__(info, labels, splits)
        self.root = Path(root)
        self._files = files

    def ids(self, split: str) -> list[str]:
        return [self._files[j] for j in self._index(split)]

    def raw(self, split: str, i: int) -> Image.Image:
        """The decoded image; a corrupt or truncated file raises ``InvalidImage``."""
        return to_channels(open_image(self.path(split, i)), self.info.channels)

    def path(self, split: str, i: int) -> Path:
        return self.root / self._files[self._sample(split, i)]


def tabular_stats(
    x: np.ndarray, feature_names: list[str]
) -> tuple[list[float], list[float], dict[str, list[float]]]:
    """Per-feature mean, std (population) and [min, max] of the rows ``x`` (the train split)."""
    x = np.asarray(x, dtype=np.float64)
    mean = x.mean(0) if len(x) else np.zeros(x.shape[1])
    std = x.std(0) if len(x) else np.ones(x.shape[1])
    lows = x.min(0) if len(x) else np.zeros(x.shape[1])
    highs = x.max(0) if len(x) else np.zeros(x.shape[1])
    ranges = {
        name: [float(lo), float(hi)]
        for name, lo, hi in zip(feature_names, lows, highs, strict=True)
    }
    return [float(m) for m in mean], [float(s) for s in std], ranges


def split_info(
    name: str,
    modality: str,
    classes: list[str],
    labels: np.ndarray,
    splits: dict[str, np.ndarray],
    **fields: Any,
) -> DatasetInfo:
    """The ``DatasetInfo`` of a dataset whose samples ``labels`` are split by ``splits``: the size
    of each split and its samples per class, plus ``fields`` (the modality's own stats)."""
    return DatasetInfo(
        name=name,
        modality=modality,
        classes=classes,
        split_counts={s: len(idx) for s, idx in splits.items()},
        class_counts_by_split=class_counts(labels, splits, len(classes)),
        **fields,
    )


def tabular_info(
    name: str,
    x: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    feature_names: list[str],
    **fields: Any,
) -> tuple[DatasetInfo, dict[str, np.ndarray]]:
    """A table's stratified split and its ``DatasetInfo`` (feature stats of the train rows)."""
    splits = stratified_split(labels)
    mean, std, ranges = tabular_stats(x[splits["train"]], feature_names)
    info = split_info(name, "tabular", classes, labels, splits, feature_names=feature_names,
                      feature_ranges=ranges, mean=mean, std=std, **fields)
    return info, splits
