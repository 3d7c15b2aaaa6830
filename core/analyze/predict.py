"""Predict uploaded files with a trained run: images (png, jpg, webp, bmp, ...) or CSV rows.

Every input goes through the run's one shared preprocessing (``LoadedRun.preprocess``), so a photo
of any size or mode gets exactly what training saw. Each file is validated on its own: a bad file
(not an image, truncated, too many pixels, a CSV with the wrong columns) gets its own error in the
results, and the other files are still predicted.

Importing this module does not import torch (the dashboard imports it); the functions that run
the model do, through the ``LoadedRun`` they are given.
"""

from __future__ import annotations

import io
import logging
import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.errors import InvalidConfig, InvalidTable, UserError

if TYPE_CHECKING:
    import pandas as pd

    from core.models.loaded import LoadedRun

logger = logging.getLogger(__name__)

BATCH_SIZE = 64
DEFAULT_TOP_K = 5
Source = str | os.PathLike | bytes  # a path, or the bytes of an upload
ProgressFn = Callable[..., None]


@dataclass
class Prediction:
    """One input's result: its class probabilities, or the error that kept it from the model."""

    name: str
    probs: np.ndarray | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None

    def top(self, classes: Sequence[str], k: int = DEFAULT_TOP_K) -> list[tuple[str, float]]:
        return top_k(self.probs, classes, k) if self.ok else []

    def to_dict(self, classes: Sequence[str], k: int = DEFAULT_TOP_K) -> dict[str, Any]:
        if not self.ok:
            return {"file": self.name, "error": self.error}
        top = self.top(classes, k)
        return {"file": self.name, "prediction": top[0][0], "probability": top[0][1],
                "top_k": [{"class": c, "probability": p} for c, p in top]}


def top_k(probs: np.ndarray, classes: Sequence[str], k: int = DEFAULT_TOP_K
          ) -> list[tuple[str, float]]:
    """The ``k`` most probable classes, most probable first (ties: lower index first)."""
    if k < 1:
        raise InvalidConfig(f"top-k must be at least 1, got {k}.")
    order = np.argsort(-np.asarray(probs), kind="stable")[:k]
    return [(str(classes[i]), float(probs[i])) for i in order]


def predict_files(loaded: LoadedRun, files: Iterable[tuple[str, Source] | Source],
                  progress: ProgressFn | None = None,
                  batch_size: int = BATCH_SIZE) -> list[Prediction]:
    """Predict every file (``(name, bytes)`` pairs or paths): images for image runs, CSV files
    for tabular runs (one result per row). Errors are per file, never raised."""
    items = [_named(f) for f in files]
    if loaded.info.modality == "tabular":
        results: list[Prediction] = []
        for done, (name, source) in enumerate(items, start=1):
            results += predict_csv(loaded, name, source)
            if progress:
                progress(done, len(items), name)
        return results
    return predict_images(loaded, items, progress, batch_size)


def predict_images(loaded: LoadedRun, items: Sequence[tuple[str, Source]],
                   progress: ProgressFn | None = None,
                   batch_size: int = BATCH_SIZE) -> list[Prediction]:
    """Decode and predict images in batches (memory bounded by ``batch_size``). Each file is
    decoded and converted to the dataset's mode on its own (its errors are its own); the run
    resizes and normalises the batch (``predict_raw``: an ensemble's members each their way)."""
    from core.data.images import open_image, to_channels

    results = [Prediction(name) for name, _ in items]
    for start in range(0, len(items), batch_size):
        images, slots = [], []
        for j in range(start, min(start + batch_size, len(items))):
            try:
                images.append(to_channels(open_image(_stream(*items[j])), loaded.info.channels))
                slots.append(j)
            except UserError as exc:
                results[j].error = str(exc)
        if images:
            probs = loaded.predict_raw(images)
            for j, p in zip(slots, probs, strict=True):
                results[j].probs = p
        if progress:
            progress(min(start + batch_size, len(items)), len(items), "images")
    return results


def predict_rows(loaded: LoadedRun, rows: np.ndarray) -> np.ndarray:
    """Class probabilities (N, C) of feature rows (N, F) in feature units."""
    rows = np.asarray(rows, dtype=np.float32)
    if rows.ndim != 2 or rows.shape[1] != loaded.info.num_features:
        raise InvalidTable(f"Expected rows of {loaded.info.num_features} features "
                           f"({', '.join(loaded.info.feature_names)}), got shape {rows.shape}.")
    return loaded.predict_proba(loaded.preprocess.rows(rows))


def predict_csv(loaded: LoadedRun, name: str, source: Source) -> list[Prediction]:
    """One result per row of a CSV, or a single error result for a CSV that cannot be used."""
    try:
        rows = read_rows(source, loaded.info.feature_names, name)
        probs = predict_rows(loaded, rows)
    except UserError as exc:
        return [Prediction(name, error=str(exc))]
    return [Prediction(f"{name} [row {i + 1}]", p) for i, p in enumerate(probs)]


def read_rows(source: Source, feature_names: Sequence[str], name: str = "the CSV") -> np.ndarray:
    """The feature columns of a CSV (by name, any order; other columns ignored) as float32."""
    return rows_from_frame(read_csv(source, name), feature_names, name)


def read_csv(source: Source, name: str) -> pd.DataFrame:
    import pandas as pd

    from core.data.tables import read_table

    if not isinstance(source, (bytes, bytearray)):
        return read_table(Path(source))
    if not source.strip():
        raise InvalidTable(f"{name} is empty: upload a CSV with a header row.")
    try:
        frame = pd.read_csv(io.BytesIO(bytes(source)))
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError,
            ValueError) as exc:
        raise InvalidTable(f"{name} is not a readable CSV file ({exc}).") from None
    if frame.empty:
        raise InvalidTable(f"{name} has a header but no rows.")
    return frame


def rows_from_frame(frame: pd.DataFrame, feature_names: Sequence[str], name: str) -> np.ndarray:
    import pandas as pd

    frame.columns = [str(c).strip() for c in frame.columns]
    missing = [f for f in feature_names if f not in frame.columns]
    if missing:
        raise InvalidTable(
            f"{name} lacks the columns {', '.join(missing)}. It needs one column per feature: "
            f"{', '.join(feature_names)} (other columns are ignored).")
    features = frame[list(feature_names)]
    text = [c for c in features if not pd.api.types.is_numeric_dtype(features[c])]
    if text:
        raise InvalidTable(f"{name}: the columns {', '.join(text)} must hold numbers only.")
    if features.isna().any().any():
        bad = [c for c in features if features[c].isna().any()]
        raise InvalidTable(f"{name} has empty cells in {', '.join(bad)}: fill them in.")
    return features.to_numpy(dtype=np.float32)


def _stream(name: str, source: Source) -> Any:
    """Bytes as a named stream, so an error names the file the user uploaded."""
    if not isinstance(source, (bytes, bytearray)):
        return source
    stream = io.BytesIO(bytes(source))
    stream.name = name
    return stream


def _named(item: tuple[str, Source] | Source) -> tuple[str, Source]:
    if isinstance(item, tuple):
        return str(item[0]), item[1]
    if isinstance(item, (bytes, bytearray)):
        return "upload", item
    return Path(item).name, item
