"""A deterministic, resumable, shardable sampler.

The order of epoch ``e`` depends only on (seed, e), so a run resumed from a checkpoint sees the
same batches it would have seen, and ``start_batch`` skips the batches an interrupted epoch had
already trained on without loading them.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import torch
from torch.utils.data import Sampler


class EpochSampler(Sampler[int]):
    def __init__(self, size: int, *, shuffle: bool, seed: int = 0, rank: int = 0,
                 world_size: int = 1, pad: bool = False):
        self.size = size
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
        if self.shuffle:
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
