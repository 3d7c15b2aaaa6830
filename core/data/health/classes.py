"""Checks on the class counts, shared by images and tables: imbalance, classes too small."""

from __future__ import annotations

from typing import Any

from core.data.health.report import finding
from core.data.info import SPLITS

IMBALANCE_INFO = 3.0  # largest/smallest training class at or above this: said
IMBALANCE_WARNING = 10.0  # ... and at or above this: a warning
MIN_TRAIN_PER_CLASS = 10  # fewer training samples than this: too few to learn a class from


def class_findings(classes: list[str], counts: dict[str, list[int]]) -> list[dict[str, Any]]:
    """``counts``: per split, the samples of each class (``DatasetInfo.class_counts_by_split``)."""
    return [f for f in (imbalance(classes, counts.get("train", [])), too_few(classes, counts))
            if f is not None]


def imbalance(classes: list[str], train: list[int]) -> dict[str, Any] | None:
    present = [(n, c) for n, c in zip(train, classes, strict=False) if n > 0]
    if len(present) < 2:
        return None
    (most, big), (least, small) = max(present), min(present)
    ratio = most / least
    if ratio < IMBALANCE_INFO:
        return None
    items = [{"class": c, "train": int(n), "share": round(n / sum(train), 4)}
             for n, c in sorted(present, reverse=True)]
    return finding(
        "class_imbalance", "warning" if ratio >= IMBALANCE_WARNING else "info",
        f"Class imbalance {ratio:.1f}:1",
        f"The training split has {most} samples of {big!r} and {least} of {small!r} "
        f"({ratio:.1f}:1). A model can score well by favouring the large classes: train with "
        f"--class-weights (the loss weighs each class by its rarity) or --balanced-sampler "
        f"(batches drawn evenly over the classes), and judge it by balanced accuracy and "
        f"per-class recall rather than accuracy.",
        items, count=len(present),
        fix={"label": "Train with --class-weights or --balanced-sampler",
             "train_flags": ["--class-weights", "--balanced-sampler"]})


def too_few(classes: list[str], counts: dict[str, list[int]]) -> dict[str, Any] | None:
    """Classes with too few training samples, or missing from a split that has samples."""
    items = []
    for k, cls in enumerate(classes):
        per_split = {s: int(counts[s][k]) if k < len(counts.get(s, [])) else 0 for s in SPLITS}
        missing = [s for s in SPLITS if per_split[s] == 0 and sum(counts.get(s, [])) > 0]
        if per_split["train"] < MIN_TRAIN_PER_CLASS or missing:
            items.append({"class": cls, **per_split, "missing_from": missing})
    if not items:
        return None
    names = ", ".join(repr(i["class"]) for i in items[:5]) + (" ..." if len(items) > 5 else "")
    return finding(
        "too_few_samples", "warning", f"{len(items)} class(es) with too few samples",
        f"{names}: fewer than {MIN_TRAIN_PER_CLASS} training samples, or none in a split. "
        f"The model can hardly learn such a class, and its validation or test score rests on "
        f"a handful of samples (or none). Add samples, merge the class with a related one, or "
        f"drop it.", items)
