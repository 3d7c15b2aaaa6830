"""CSV datasets: validate a table, store it as ``data.csv`` + ``splits.json``, load it back.

The label column is named by the user (``target``); every other column is a numeric feature.
Tables with missing values or non-numeric features, duplicate column names, or classes too small
to appear in every split are refused with what to fix, rather than silently imputed, renamed or
dropped: the user should know what the model is trained on. A table is validated completely
(``prepare_table``) before anything is written (``write_table_dataset``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from core.data.csvfile import DELIMITER_NAMES, read_csv_file
from core.data.dataset import ArrayDataset, tabular_info
from core.data.fingerprints import dataset_hash
from core.data.info import SPLITS, DatasetInfo
from core.data.registry import META_FILE, write_json
from core.data.splits import MIN_PER_CLASS, SPLIT_NAMES, split_sizes
from core.errors import InvalidTable
from core.progress import ProgressFn

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

DATA_FILE = "data.csv"
SPLITS_FILE = "splits.json"


@dataclass
class Table:
    """A validated CSV, ready to be stored: nothing has been written yet."""

    frame: pd.DataFrame
    x: np.ndarray  # float32 rows
    labels: np.ndarray  # int64 class indices
    classes: list[str]
    features: list[str]
    target: str
    delimiter: str


def prepare_table(source: Path, target: str | None) -> Table:
    """Read and validate the CSV ``source``; raise ``InvalidTable`` saying what to fix."""
    frame, delimiter = read_csv_file(source)
    x, labels, classes, features = _validate(frame, target, Path(source).name)
    return Table(frame, x, labels, classes, features, str(target), delimiter)


def write_table_dataset(
    name: str, table: Table, out: Path, progress: ProgressFn | None = None
) -> DatasetInfo:
    """Store the validated ``table`` as dataset ``name`` in the new folder ``out``."""
    read_as = "" if table.delimiter == "," else f" ({DELIMITER_NAMES[table.delimiter]}-separated)"
    info, splits = tabular_info(
        name, table.x, table.labels, table.classes, table.features, builtin=False,
        target=table.target,
        description=f"Imported table{read_as}: {len(table.x):,} rows, {len(table.features)} "
        f"features, {len(table.classes)} classes of {table.target!r}.",
    )
    stored = table.frame[table.features].astype(np.float64)
    stored[table.target] = [table.classes[k] for k in table.labels]
    stored.to_csv(out / DATA_FILE, index=False)
    write_json(out / SPLITS_FILE, {s: idx.tolist() for s, idx in splits.items()})
    info.content_hash = dataset_hash(out, "tabular")
    write_json(out / META_FILE, info.to_dict())
    if progress:
        progress(len(table.x), len(table.x))
    return info


def build_table_dataset(
    name: str, source: Path, target: str | None, out: Path, progress: ProgressFn | None = None
) -> DatasetInfo:
    """Validate the CSV ``source`` and store it as dataset ``name`` in the new folder ``out``."""
    return write_table_dataset(name, prepare_table(source, target), out, progress)


def stored_files(folder: Path) -> list[str]:
    """The files a stored table's content hash covers (``meta.json`` is derived from them)."""
    return [DATA_FILE, SPLITS_FILE]


def read_table(source: Path) -> pd.DataFrame:
    """Read a CSV into a DataFrame, or raise ``InvalidTable`` saying why it cannot be read."""
    return read_csv_file(source)[0]


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
    _check_class_sizes(labels, classes, target, label)
    return values.to_numpy(np.float32), labels, classes, features


def _check_class_sizes(labels: np.ndarray, classes: list[str], target: str, label: str) -> None:
    """Refuse a table whose stratified split would leave a split empty, or a class out of the
    validation or test split: training would "complete" with nothing to validate on."""
    counts = np.bincount(labels, minlength=len(classes))
    if counts.min() >= MIN_PER_CLASS:
        return
    need = (f"need at least {MIN_PER_CLASS} rows per class (one each for training, validation "
            f"and test)")
    empty = [SPLIT_NAMES[s] for s, n in split_sizes(counts).items() if n == 0]
    if len(classes) == len(labels):
        raise InvalidTable(
            f"{label}: each of the {len(labels)} rows has its own {target!r} value (is it an id "
            f"rather than a label?), so the {' and '.join(empty)} splits would be empty; {need}."
        )
    if empty:
        raise InvalidTable(
            f"{label} has only {len(labels)} rows for {len(classes)} classes of {target!r}: "
            f"the {' and '.join(empty)} split{'s' if len(empty) > 1 else ''} would be empty; "
            f"{need}, {MIN_PER_CLASS * len(classes)} rows in all."
        )
    small = [f"{classes[k]!r} ({counts[k]})" for k in np.flatnonzero(counts < MIN_PER_CLASS)]
    raise InvalidTable(
        f"{label}: {len(small)} class{'es' if len(small) > 1 else ''} of {target!r} "
        f"{'have' if len(small) > 1 else 'has'} too few rows to appear in every split: "
        f"{', '.join(small[:5])}{', ...' if len(small) > 5 else ''}; {need}."
    )


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
