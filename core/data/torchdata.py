"""PyTorch views of a dataset split, and a collate that skips corrupt samples.

In-memory datasets (the built-ins, CSV tables) without augmentation are preprocessed once into
one stacked tensor: ``__getitem__`` is then a tensor index and ``__getitems__`` (which DataLoader
calls with a whole batch of indices) a single ``index_select``, so the data loop costs about
what a bare loop over tensors costs. File-backed datasets, and augmented training, transform
per sample.

A corrupt sample (a truncated JPEG, a file gone missing) is not an exception: ``TorchSplit[i]``
returns ``CorruptSample(i)``, and ``collate_skipping`` drops it and reports its index.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any, NamedTuple

import numpy as np
import torch
from torch.utils.data import Dataset as TorchDataset

from core.data.dataset import Dataset
from core.data.transforms import Preprocess, check_augment, make_preprocess, make_train_transform
from core.errors import InvalidImage

logger = logging.getLogger(__name__)

MAX_PRECOMPUTED_BYTES = 512 * 1024**2  # beyond this, transform per sample rather than hold it


class CorruptSample(NamedTuple):
    """What ``TorchSplit[i]`` returns for a sample that cannot be read (``collate_skipping``
    drops it and reports ``index``)."""

    index: int


class _TensorBatch(Sequence):
    """A batch fetched with one ``index_select``: the stacked tensors, which ``collate_skipping``
    returns as they are, viewed as a sequence of ``(x, y, i)`` items (built only if another
    collate asks for them)."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor):
        self.x, self.y, self.idx = x, y, idx

    def __len__(self) -> int:
        return len(self.idx)

    def __getitem__(self, k: int | slice) -> Any:
        if isinstance(k, slice):
            return [self[j] for j in range(*k.indices(len(self)))]
        return self.x[k], int(self.y[k]), int(self.idx[k])


class TorchSplit(TorchDataset):
    """``split[i] -> (tensor, label, i)``, or ``CorruptSample(i)`` when the sample is corrupt."""

    def __init__(
        self,
        dataset: Dataset,
        split: str,
        transform: Any,
        tensors: tuple[torch.Tensor, torch.Tensor] | None = None,
    ):
        self.dataset = dataset
        self.split = split
        self.transform = transform
        self.labels = dataset.labels(split)
        self.tensors = tensors  # (x, y) when precomputed, else None

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i: int) -> tuple[torch.Tensor, int, int] | CorruptSample:
        i = int(i)
        if self.tensors is not None:
            return self.tensors[0][i], int(self.labels[i]), i
        try:
            sample = self.dataset.raw(self.split, i)
        except (InvalidImage, OSError) as exc:
            logger.debug("Skipping corrupt sample %s/%s[%d]: %s", self.dataset.info.name,
                         self.split, i, exc)
            return CorruptSample(i)
        return self.transform(sample), int(self.labels[i]), i

    def __getitems__(self, indices: Sequence[int]) -> Sequence:
        if self.tensors is None:
            return [self[i] for i in indices]
        idx = torch.as_tensor(indices, dtype=torch.long)
        # index_select, not x[idx]: advanced indexing is ~100x slower on CPU for 4-D tensors.
        x, y = self.tensors
        return _TensorBatch(x.index_select(0, idx), y.index_select(0, idx), idx)


def build_torch_split(
    dataset: Dataset,
    split: str,
    image_size: int | None = None,
    train: bool = False,
    augment: Sequence[str] = (),
) -> TorchSplit:
    """A torch Dataset over one split; augmentations apply only when ``train`` is true."""
    info = dataset.info
    augment = tuple(augment) if train and info.modality == "image" else ()
    check_augment(augment)
    if augment:
        return TorchSplit(dataset, split, make_train_transform(info, image_size, augment))
    preprocess = make_preprocess(info, image_size)
    tensors = _precompute(dataset, split, preprocess) if dataset.in_memory else None
    return TorchSplit(dataset, split, preprocess, tensors)


def _precompute(
    dataset: Dataset, split: str, preprocess: Preprocess
) -> tuple[torch.Tensor, torch.Tensor] | None:
    """The whole split preprocessed once, with exactly the per-sample arithmetic."""
    data = dataset.array(split)
    labels = torch.from_numpy(np.asarray(dataset.labels(split), dtype=np.int64))
    if data is None:
        return None
    if preprocess.modality == "tabular":
        return preprocess.rows(data), labels
    channels = 1 if data.ndim == 3 else data.shape[-1]
    if len(data) * channels * preprocess.size**2 * 4 > MAX_PRECOMPUTED_BYTES:
        return None
    if data.shape[1:3] == (preprocess.size, preprocess.size):
        return preprocess.pixels(torch.from_numpy(np.ascontiguousarray(data))), labels
    if not len(data):
        return torch.empty(0, channels, preprocess.size, preprocess.size), labels
    return torch.stack([preprocess(dataset.raw(split, i)) for i in range(len(data))]), labels


def collate_skipping(batch: list) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[int]]:
    """Stack a batch of ``(x, y, i)``, dropping corrupt samples.

    Returns ``(x, y, indices, skipped)``: ``y`` and ``indices`` are int64 tensors, ``skipped``
    the indices of the ``CorruptSample`` entries (bare ``None`` entries are dropped too, with no
    index to report). A batch with nothing left gives empty tensors: ``len(y) == 0``.
    """
    if isinstance(batch, _TensorBatch):
        return batch.x, batch.y, batch.idx, []
    kept, skipped = [], []
    for item in batch:
        if isinstance(item, CorruptSample):
            skipped.append(item.index)
        elif item is not None:
            kept.append(item)
    if not kept:
        empty = torch.empty(0, dtype=torch.long)
        return torch.empty(0), empty, empty.clone(), skipped
    xs, ys, idx = zip(*kept, strict=True)
    return torch.stack(xs), torch.tensor(ys, dtype=torch.long), torch.tensor(idx), skipped
