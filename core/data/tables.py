"""CSV datasets: validate a table, store it as ``data.csv`` + ``splits.json``, load it back.

The label column is named by the user (``target``); every other column is a numeric feature.
Tables with missing values or non-numeric features are refused with what to fix, rather than
silently imputed or dropped: the user should know what the model is trained on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.data.dataset import ArrayDataset, tabular_info
from core.data.info import SPLITS, DatasetInfo
from core.data.registry import META_FILE, write_json
from core.errors import InvalidTable

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

DATA_FILE = "data.csv"
SPLITS_FILE = "splits.json"

Progress = Callable[[int, int], None]


def build_table_dataset(
    name: str, source: Path, target: str | None, out: Path, progress: Progress | None = None
) -> DatasetInfo:
    """Validate the CSV ``source`` and store it as dataset ``name`` in the new folder ``out``."""
    frame = read_table(source)
    x, labels, classes, features = _validate(frame, target, Path(source).name)
    info, splits = tabular_info(
        name, x, labels, classes, features, builtin=False, target=str(target),
        description=f"Imported table: {len(x):,} rows, {len(features)} features, "
        f"{len(classes)} classes of {target!r}.",
    )
    stored = frame[features].astype(np.float64)
    stored[str(target)] = [classes[k] for k in labels]
    stored.to_csv(out / DATA_FILE, index=False)
    write_json(out / SPLITS_FILE, {s: idx.tolist() for s, idx in splits.items()})
    write_json(out / META_FILE, info.to_dict())
    if progress:
        progress(len(x), len(x))
    return info


def read_table(source: Path) -> pd.DataFrame:
    """Read a CSV into a DataFrame, or raise ``InvalidTable`` saying why it cannot be read."""
    import pandas as pd

    source = Path(source)
    if not source.is_file() or source.stat().st_size == 0:
        raise InvalidTable(f"{source.name} is empty or missing: upload a CSV with a header row.")
    try:
        frame = pd.read_csv(source)
    except pd.errors.EmptyDataError:
        raise InvalidTable(f"{source.name} has no columns: is it empty?") from None
    except (pd.errors.ParserError, UnicodeDecodeError, ValueError) as exc:
        raise InvalidTable(f"{source.name} is not a readable CSV file ({exc}).") from None
    if frame.empty:
        raise InvalidTable(f"{source.name} has a header but no rows.")
    return frame


def _validate(
    frame: pd.DataFrame, target: str | None, label: str
) -> tuple[np.ndarray, np.ndarray, list[str], list[str]]:
    """Return (x float32, labels int64, classes, feature names) or raise ``InvalidTable``."""
    import pandas as pd

    columns = [str(c) for c in frame.columns]
    frame.columns = columns
    if not target or target not in columns:
        what = "needs a target (label) column" if not target else f"has no column {target!r}"
        raise InvalidTable(f"{label} {what}. Its columns are: {', '.join(columns)}.")
    features = [c for c in columns if c != target]
    if not features:
        raise InvalidTable(f"{label} has no feature columns besides {target!r}.")
    text = [c for c in features if not pd.api.types.is_numeric_dtype(frame[c])]
    if text:
        raise InvalidTable(
            f"{label}: feature columns must be numeric; {', '.join(map(repr, text))} are not. "
            f"Encode them as numbers or remove them."
        )
    values = frame[features].astype(np.float64)
    bad = frame[target].isna().to_numpy() | ~np.isfinite(values.to_numpy()).all(axis=1)
    if bad.any():
        first = int(np.flatnonzero(bad)[0]) + 2  # +1 header, +1 one-based: the line in the file
        raise InvalidTable(
            f"{label}: {int(bad.sum())} of {len(frame)} rows have missing or infinite values "
            f"(first on line {first}). Fill or remove them before importing."
        )
    classes, labels = _encode_target(frame[target])
    if len(classes) < 2:
        raise InvalidTable(f"{label}: {target!r} has a single class {classes}; need at least 2.")
    return values.to_numpy(np.float32), labels, classes, features


def _encode_target(column: pd.Series) -> tuple[list[str], np.ndarray]:
    """Classes as strings, sorted by value (numerically for numeric targets); label indices."""
    uniques = sorted(column.unique().tolist(), key=lambda v: (str(type(v)), v))
    classes = [str(v) for v in uniques]
    if len(set(classes)) != len(classes):
        raise InvalidTable(f"Target values {classes} collide once written as text.")
    lookup = {v: k for k, v in enumerate(uniques)}
    return classes, column.map(lookup).to_numpy(np.int64)


def load_table_dataset(folder: Path, info: DatasetInfo) -> ArrayDataset:
    import pandas as pd

    frame = pd.read_csv(folder / DATA_FILE, dtype={info.target: str}, keep_default_na=False)
    x = frame[info.feature_names].to_numpy(np.float32)
    lookup = {c: k for k, c in enumerate(info.classes)}
    labels = frame[info.target].map(lookup).to_numpy(np.int64)
    raw = json.loads((folder / SPLITS_FILE).read_text(encoding="utf-8"))
    splits = {s: np.asarray(raw.get(s, []), dtype=np.int64) for s in SPLITS}
    return ArrayDataset(info, x, labels, splits)
