"""A deterministic, resumable, shardable sampler.

The order of epoch ``e`` depends only on (seed, e), so a run resumed from a checkpoint sees the
same batches it would have seen, and ``start_batch`` skips the batches an interrupted epoch had
already trained on without loading them.

With ``weights`` it draws each epoch's ``size`` indices with replacement in proportion to the
weights (:func:`balanced_weights` makes every class equally likely): the draw is seeded by
(seed, epoch) too, so a class-balanced epoch resumes exactly and shards over DDP ranks the same.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    def __init__(self, size: int, *, shuffle: bool, seed: int = 0, rank: int = 0,
                 world_size: int = 1, pad: bool = False, weights: np.ndarray | None = None):
        self.size = size
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.float64)
        self.shuffle = shuffle
        self.seed = seed
        self.rank = rank
        self.world_size = world_size
        # Training shards must be equal in length or DDP ranks would wait on each other forever;
        # evaluation shards need no padding because their results are summed, not synchronised.
        self.pad = pad
        self.epoch = 0
        self.start = 0  # index into this rank's shard where iteration begins

    def set_epoch(self, epoch: int, start_batch: int = 0, batch_size: int = 1) -> None:
        self.epoch = epoch
        self.start = start_batch * batch_size

    def _indices(self) -> list[int]:
        if self.weights is not None and self.size:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.multinomial(self.weights, self.size, replacement=True,
                                      generator=gen).tolist()
        elif self.shuffle:
            gen = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
            order = torch.randperm(self.size, generator=gen).tolist()
        else:
            order = list(range(self.size))
        if self.pad and self.world_size > 1:
            total = math.ceil(self.size / self.world_size) * self.world_size
            order += order[: total - len(order)]
        return order[self.rank :: self.world_size]

    def shard_len(self) -> int:
        if self.pad and self.world_size > 1:
            return math.ceil(self.size / self.world_size)
        return len(range(self.rank, self.size, self.world_size))

    def __iter__(self) -> Iterator[int]:
        return iter(self._indices()[self.start :])

    def __len__(self) -> int:
        return max(0, self.shard_len() - self.start)


def balanced_weights(labels: np.ndarray) -> np.ndarray:
    """Per-sample weights that make every class present equally likely to be drawn."""
    labels = np.asarray(labels, dtype=np.int64)
    counts = np.bincount(labels)
    return 1.0 / counts[labels] if len(labels) else np.zeros(0)


def inverse_frequency(labels: np.ndarray, num_classes: int) -> np.ndarray:
    """Class weights ``N / (K * n_c)`` (mean 1 over the samples); an absent class gets 1."""
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=num_classes)
    present = counts > 0
    weights = np.ones(num_classes)
    weights[present] = counts.sum() / (present.sum() * counts[present])
    return weights
