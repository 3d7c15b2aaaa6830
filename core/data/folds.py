"""K-fold cross-validation: stratified folds over train+val; the test split is never part of one.

A fold is a dataset split another way: fold ``i`` of ``K`` validates on the ``i``-th fold of
train+val and trains on the other ``K - 1``; the test split stays exactly the dataset's. The
folds are a property of the dataset (seeded like its splits, not by the run's seed), so runs
with different training seeds, and the scikit-learn baseline, are compared on the same folds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from core.data.splits import SPLIT_SEED
from core.errors import InvalidConfig

if TYPE_CHECKING:
    from core.config import DataConfig
    from core.data.dataset import Dataset
    from core.workspace import Workspace

CV_SEED = SPLIT_SEED


def stratified_folds(pool: np.ndarray, labels: np.ndarray, k: int,
                     seed: int = CV_SEED) -> list[np.ndarray]:
    """Deal the sample indices ``pool`` (with their ``labels``) into ``k`` disjoint folds.

    Each class is shuffled (seeded) and the classes, one after the other, are dealt round-robin:
    every class is spread over the folds as evenly as it can be (counts differ by at most one),
    and so are the fold sizes. Each fold comes out sorted.
    """
    pool = np.asarray(pool, dtype=np.int64)
    labels = np.asarray(labels)
    if len(pool) != len(labels):
        raise ValueError("pool and labels must have the same length")
    if not 2 <= k <= len(pool):
        raise InvalidConfig(f"cv {k}: needs from 2 to {len(pool)} folds (the train and val "
                            "splits hold that many samples); lower --cv.")
    rng = np.random.default_rng(seed)
    dealt = np.concatenate([rng.permutation(pool[labels == c]) for c in np.unique(labels)])
    return [np.sort(dealt[i::k]) for i in range(k)]


def fold_splits(dataset: Dataset, k: int, fold: int) -> dict[str, np.ndarray]:
    """Fold ``fold`` of ``k`` as global sample indices: train (the other folds), val (this
    fold), test (the dataset's own, untouched)."""
    pool = np.concatenate([dataset.indices("train"), dataset.indices("val")])
    labels = np.concatenate([dataset.labels("train"), dataset.labels("val")])
    folds = stratified_folds(pool, labels, k)
    val = folds[fold]
    return {"train": np.setdiff1d(pool, val), "val": val, "test": dataset.indices("test")}


def with_fold(dataset: Dataset, k: int, fold: int) -> Dataset:
    """The dataset as fold ``fold`` of ``k`` sees it."""
    return dataset.with_splits(fold_splits(dataset, k, fold))


def load_for_config(ws: Workspace, data: DataConfig) -> Dataset:
    """The dataset a run with this data config trains on: its fold when it is a CV fold run."""
    from core.data.registry import load_dataset

    dataset = load_dataset(ws, data.dataset)
    if data.cv is not None and data.fold is not None:
        return with_fold(dataset, data.cv, data.fold)
    return dataset
