"""What a dataset is, in a form that is cheap to read and JSON-serialisable (``meta.json``)."""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import Any

logger = logging.getLogger(__name__)

SPLITS = ("train", "val", "test")
MODALITIES = ("image", "tabular")


@dataclass
class DatasetInfo:
    """Everything the UI, the trainer and the exporters need to know without loading samples."""

    name: str
    modality: str  # "image" | "tabular"
    classes: list[str]
    split_counts: dict[str, int]  # {"train": n, "val": n, "test": n}
    channels: int = 0  # image datasets: 1 or 3
    image_size: int = 0  # image datasets: default (square) training size
    feature_names: list[str] = field(default_factory=list)  # tabular
    feature_ranges: dict[str, list[float]] = field(default_factory=dict)  # [min, max] in train
    mean: list[float] = field(default_factory=list)  # per channel ([0, 1] pixels) or per feature
    std: list[float] = field(default_factory=list)
    builtin: bool = True
    description: str = ""
    target: str = ""  # imported CSV: the label column
    class_counts_by_split: dict[str, list[int]] = field(default_factory=dict)  # split -> per class
    # Imported datasets: "sha256:<hex>" of the stored files, hashed once at import ("" = unknown,
    # e.g. imported before fingerprints existed; ``core.data.fingerprints`` fills it on first use).
    content_hash: str = ""

    @property
    def num_classes(self) -> int:
        return len(self.classes)

    @property
    def num_features(self) -> int:
        return len(self.feature_names)

    @property
    def total(self) -> int:
        return sum(self.split_counts.values())

    def class_counts(self, split: str = "train") -> dict[str, int]:
        """Samples per class in ``split`` (empty dict if unknown)."""
        counts = self.class_counts_by_split.get(split, [])
        return dict(zip(self.classes, counts, strict=False))

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, raw: dict[str, Any]) -> DatasetInfo:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(raw) - names
        if unknown:
            # Written by a newer version: keep what we understand rather than refuse the dataset.
            logger.debug("Ignoring unknown DatasetInfo keys %s", sorted(unknown))
        return cls(**{k: v for k, v in raw.items() if k in names})

    def copy(self) -> DatasetInfo:
        return DatasetInfo.from_dict(self.to_dict())
