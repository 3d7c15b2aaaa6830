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
NO_TEST_SPLIT = ("train_on_val needs a held-out test split, and {dataset} has none: re-import it "
                 "with a test split, or train on train and validate on val.")
TRAIN_ON_VAL_NOTE = ("It trains on train+val with no validation split: no early stopping and no "
                     "best epoch on val (the last epoch's weights are kept); the test split is "
                     "its only score.")


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


def with_val_in_train(dataset: Dataset) -> Dataset:
    """The dataset as a ``train_on_val`` run sees it: train+val to train on, no validation
    split, the test split untouched (and required: it is the only honest score left)."""
    if not dataset.size("test"):
        raise InvalidConfig(NO_TEST_SPLIT.format(dataset=dataset.info.name))
    pool = np.concatenate([dataset.indices("train"), dataset.indices("val")])
    return dataset.with_splits({"train": np.sort(pool), "val": pool[:0],
                                "test": dataset.indices("test")})


def check_train_on_val(ws: Workspace, data: DataConfig) -> None:
    """Refuse a ``train_on_val`` config before it is queued when the dataset has no test split."""
    from core.data.registry import get_info

    if data.train_on_val and not get_info(ws, data.dataset).split_counts.get("test", 0):
        raise InvalidConfig(NO_TEST_SPLIT.format(dataset=data.dataset))


def load_for_config(ws: Workspace, data: DataConfig) -> Dataset:
    """The dataset a run with this data config trains on: its fold when it is a CV fold run,
    train+val as its training split when it trains on val."""
    from core.data.registry import load_dataset

    dataset = load_dataset(ws, data.dataset)
    if data.cv is not None and data.fold is not None:
        return with_fold(dataset, data.cv, data.fold)
    if data.train_on_val:
        return with_val_in_train(dataset)
    return dataset
