"""Deterministic stratified train/val/test splits that also work for tiny classes."""

from __future__ import annotations

import numpy as np

SPLIT_SEED = 0
VAL_FRACTION = 0.15
TEST_FRACTION = 0.15


def stratified_split(labels: np.ndarray, seed: int = SPLIT_SEED) -> dict[str, np.ndarray]:
    """Split sample indices 70/15/15 within each class; each split's indices come out sorted.

    Per class (so every class is represented everywhere it can be): a class with 3+ samples puts
    at least one in each split, a class with 2 puts one in train and one in val, and a class with
    one sample keeps it in train. The same labels and seed always give the same split.
    """
    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    parts: dict[str, list[np.ndarray]] = {"train": [], "val": [], "test": []}
    for cls in np.unique(labels):
        members = rng.permutation(np.flatnonzero(labels == cls))
        n_val, n_test = _holdout_sizes(len(members))
        parts["val"].append(members[:n_val])
        parts["test"].append(members[n_val:n_val + n_test])
        parts["train"].append(members[n_val + n_test:])
    return {
        split: np.sort(np.concatenate(chunks)).astype(np.int64) if chunks else np.empty(0, np.int64)
        for split, chunks in parts.items()
    }


def split_sizes(class_counts: np.ndarray) -> dict[str, int]:
    """How many samples each split gets when classes of these sizes are split (no data needed)."""
    sizes = {"train": 0, "val": 0, "test": 0}
    for n in np.asarray(class_counts, dtype=np.int64).tolist():
        n_val, n_test = _holdout_sizes(n)
        sizes["val"] += n_val
        sizes["test"] += n_test
        sizes["train"] += n - n_val - n_test
    return sizes


def _min_per_class() -> int:
    """The fewest samples of a class that put at least one in each of train, val and test."""
    n = 1
    while min(split_sizes(np.array([n])).values()) == 0:
        n += 1
    return n


def _holdout_sizes(n: int) -> tuple[int, int]:
    # Round the held-out total, not each part: 10 samples give 7/2/1, not 6/2/2.
    held = round((VAL_FRACTION + TEST_FRACTION) * n)
    n_val = max(1, held - held // 2) if n >= 2 else 0
    n_test = max(1, held // 2) if n >= 3 else 0
    return n_val, n_test


def class_counts(labels: np.ndarray, splits: dict[str, np.ndarray], n_classes: int) -> dict:
    """Per split, the number of samples of each class (``DatasetInfo.class_counts_by_split``)."""
    return {
        split: np.bincount(labels[idx], minlength=n_classes).astype(int).tolist()
        for split, idx in splits.items()
    }


# Derived from the rule above rather than written down, so the two cannot disagree (3 today).
MIN_PER_CLASS = _min_per_class()
SPLIT_NAMES = {"train": "training", "val": "validation", "test": "test"}
