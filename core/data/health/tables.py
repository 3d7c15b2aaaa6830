"""Health checks of a table: a stored tabular dataset, or a CSV before it is imported.

Import refuses missing values and text features (the user should know what the model is trained
on), so a CSV is checked as it is (``check_csv``) to say everything that is wrong at once, with
the fix that imports a repaired copy. A stored table is checked with its splits, so rows shared
by train and val/test are found.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

import numpy as np

from core.data.health.classes import class_findings
from core.data.health.report import finding, fix_args
from core.data.info import SPLITS

if TYPE_CHECKING:
    import pandas as pd

logger = logging.getLogger(__name__)

NEAR_CONSTANT_SHARE = 0.98  # one value in at least this share of the rows
LEAK_SCORE = 0.97  # balanced accuracy of one feature alone at or above this: it leaks the label
LEAK_ROWS = 20_000  # rows used to test each feature (a sample of larger tables)
LEAK_FOLDS = 3
OUTLIER_Z = 3.5  # robust z-score (median and MAD; Iglewicz and Hoaglin's cut-off)
RARE_SHARE = 0.01  # a categorical level in fewer than this share of the rows is rare
SHOWN_ROWS = 20  # example rows kept per outlier column


def table_findings(frame: pd.DataFrame, target: str, splits: list[str] | None = None,
                   ids: list[str] | None = None, positions: list[int] | None = None,
                   classes: list[str] | None = None) -> list[dict[str, Any]]:
    """Every finding on ``frame`` (feature columns and the ``target`` column).

    ``splits``/``ids``/``positions``: each row's split, sample id and position in its split
    (a stored dataset); without them (a CSV) duplicates are counted within the file.
    """
    features = [c for c in frame.columns if c != target]
    found = [
        _missing(frame),
        *_constant(frame, features),
        _leaks(frame, features, target),
        _duplicates(frame, features, target, splits, ids, positions),
        _outliers(frame, features),
        _rare_levels(frame, features),
        *class_findings(*_class_counts(frame[target], splits, classes)),
    ]
    return [f for f in found if f is not None]


def _missing(frame: pd.DataFrame) -> dict[str, Any] | None:
    counts = frame.isna().sum()
    items = [{"column": str(c), "missing": int(n), "share": round(n / len(frame), 4)}
             for c, n in counts.items() if n]
    if not items:
        return None
    rows = int(frame.isna().any(axis=1).sum())
    cols = ",".join(i["column"] for i in items)
    return finding("missing_values", "error", f"Missing values in {len(items)} column(s)",
                   f"{rows} of {len(frame)} rows have a missing value. Fill them (the median "
                   f"of a numeric column, the most frequent value of a text one) or drop the "
                   f"columns that are mostly empty.", items,
                   fix=fix_args("--impute", "median", label=f"Impute (or --drop-columns {cols})"))


def _constant(frame: pd.DataFrame, features: list[str]) -> list[dict[str, Any]]:
    constant, near = [], []
    for column in features:
        counts = frame[column].value_counts(dropna=False)
        share = counts.iloc[0] / len(frame) if len(counts) else 1.0
        if len(counts) <= 1:
            constant.append({"column": str(column), "value": _plain(counts.index[0]
                                                                     if len(counts) else None)})
        elif share >= NEAR_CONSTANT_SHARE:
            near.append({"column": str(column), "value": _plain(counts.index[0]),
                         "share": round(float(share), 4)})
    found = []
    if constant:
        cols = ",".join(i["column"] for i in constant)
        found.append(finding(
            "constant_columns", "warning", f"{len(constant)} constant column(s)",
            "These columns hold one value in every row: they tell the model nothing.",
            constant, fix=fix_args("--drop-columns", cols, label="Drop them")))
    if near:
        cols = ",".join(i["column"] for i in near)
        found.append(finding(
            "near_constant_columns", "info", f"{len(near)} near-constant column(s)",
            f"One value fills at least {NEAR_CONSTANT_SHARE:.0%} of these columns: little to "
            "learn from, and a split may not see the rare values at all.", near,
            fix=fix_args("--drop-columns", cols, label="Drop them")))
    return found


def _leaks(frame: pd.DataFrame, features: list[str], target: str) -> dict[str, Any] | None:
    """Columns from which a shallow decision tree alone predicts the label almost perfectly
    (cross-validated balanced accuracy): an id sorted by class, the label re-encoded, a value
    known only after the fact."""
    import pandas as pd
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.tree import DecisionTreeClassifier

    labels = frame[target]
    rows = labels.notna().to_numpy()
    if rows.sum() > LEAK_ROWS:
        rows &= np.random.default_rng(0).random(len(rows)) < LEAK_ROWS / rows.sum()
    y = pd.factorize(labels[rows])[0]
    smallest = np.bincount(y).min() if len(y) else 0
    if len(np.unique(y)) < 2 or smallest < 2:
        return None
    folds = StratifiedKFold(min(LEAK_FOLDS, int(smallest)), shuffle=True, random_state=0)
    items = []
    for column in features:
        x = _as_number(frame[column][rows]).reshape(-1, 1)
        tree = DecisionTreeClassifier(max_depth=4, min_samples_leaf=2, random_state=0)
        predicted = cross_val_predict(tree, x, y, cv=folds)
        score = _balanced_accuracy(y, predicted)
        if score >= LEAK_SCORE:
            items.append({"column": str(column), "balanced_accuracy": round(score, 4)})
    if not items:
        return None
    cols = ",".join(i["column"] for i in items)
    return finding("label_leak", "error", f"{len(items)} column(s) leak the label",
                   f"On its own, each of these columns predicts {target!r} almost perfectly "
                   f"(balanced accuracy >= {LEAK_SCORE:.2f} for a small decision tree, "
                   "cross-validated). A model will learn the shortcut, score well here and fail "
                   "where the column is not available or means something else. Drop it unless "
                   "it is truly known at prediction time.", items,
                   fix=fix_args("--drop-columns", cols, label="Drop them"))


def _balanced_accuracy(y: np.ndarray, predicted: np.ndarray) -> float:
    from sklearn.metrics import balanced_accuracy_score

    return float(balanced_accuracy_score(y, predicted))


def _as_number(column: pd.Series) -> np.ndarray:
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column):
        return column.to_numpy(np.float64)  # NaN stays: the tree sends it down its own branch
    codes = pd.factorize(column)[0].astype(np.float64)
    codes[codes < 0] = np.nan
    return codes


def _duplicates(frame: pd.DataFrame, features: list[str], target: str, splits: list[str] | None,
                ids: list[str] | None, positions: list[int] | None) -> dict[str, Any] | None:
    """Rows with the same features: across splits (a stored table), else within the file."""
    groups = [g for g in frame.groupby(features, dropna=False, sort=False).indices.values()
              if len(g) > 1]
    if not groups:
        return None
    conflicting = sum(frame[target].iloc[g].nunique(dropna=False) > 1 for g in groups)
    note = (f" {conflicting} of these groups carry different labels for the same features."
            if conflicting else "")
    if splits is None:
        extra = sum(len(g) - 1 for g in groups)
        items = [{"rows": [int(r) + 2 for r in g]} for g in groups]  # lines in the file
        return finding("duplicate_rows", "warning", f"{extra} duplicate row(s)",
                       f"{len(groups)} rows appear more than once ({extra} extra copies); "
                       f"once imported, copies can land in train and in val/test.{note}",
                       items, count=extra)
    return _cross_split_rows(frame, target, groups, splits, ids, positions, note)


def _cross_split_rows(frame: pd.DataFrame, target: str, groups: list[np.ndarray],
                      splits: list[str], ids: list[str] | None, positions: list[int] | None,
                      note: str) -> dict[str, Any] | None:
    spanning = [g for g in groups if len({splits[r] for r in g}) > 1]
    if not spanning:
        extra = sum(len(g) - 1 for g in groups)
        return finding("exact_duplicates", "info", f"{extra} duplicate row(s) within a split",
                       f"{len(groups)} rows appear more than once, each within one split.{note}",
                       [{"samples": [_row(frame, target, r, splits, ids, positions)
                                     for r in g]} for g in groups], count=extra,
                       fix=fix_args("--remove", "exact-duplicates", label="Keep one of each"))
    later = [r for g in spanning for r in g
             if any(SPLITS.index(splits[m]) < SPLITS.index(splits[r]) for m in g)]
    sizes = {s: splits.count(s) for s in SPLITS}
    leak = {s: {"copies": sum(splits[r] == s for r in later), "of": sizes[s]} for s in SPLITS[1:]
            if sizes[s]}
    for value in leak.values():
        value["share"] = round(value["copies"] / value["of"], 4)
    parts = [f"{v['copies']} of {v['of']} {s} rows ({v['share']:.1%})" for s, v in leak.items()
             if v["copies"]]
    result = finding("cross_split_duplicates", "error",
                     f"{len(later)} row(s) shared across splits",
                     f"{', and '.join(parts)} repeat a row of an earlier split: the model is "
                     f"scored on rows it has seen, so validation and test scores are inflated."
                     f"{note}",
                     [{"samples": [_row(frame, target, r, splits, ids, positions) for r in g]}
                      for g in spanning], count=len(later),
                     fix=fix_args("--remove", "cross-split-duplicates",
                                  label="Remove the copies from val and test"))
    result["leak"] = leak
    return result


def _row(frame: pd.DataFrame, target: str, r: int, splits: list[str], ids: list[str] | None,
         positions: list[int] | None) -> dict[str, Any]:
    return {"split": splits[r], "index": int(positions[r]) if positions else int(r),
            "id": ids[r] if ids else str(r), "label": str(frame[target].iloc[r])}


def _outliers(frame: pd.DataFrame, features: list[str]) -> dict[str, Any] | None:
    import pandas as pd

    items = []
    for column in features:
        if not pd.api.types.is_numeric_dtype(frame[column]):
            continue
        values = frame[column].to_numpy(np.float64)
        median = np.nanmedian(values) if np.isfinite(values).any() else np.nan
        mad = np.nanmedian(np.abs(values - median))
        if not np.isfinite(mad) or mad == 0:  # over half the rows share one value
            continue
        z = 0.6745 * (values - median) / mad
        rows = np.flatnonzero(np.abs(np.nan_to_num(z)) > OUTLIER_Z)
        if len(rows):
            items.append({"column": str(column), "outliers": len(rows),
                          "share": round(len(rows) / len(values), 4),
                          "median": float(median), "rows": rows[:SHOWN_ROWS].tolist()})
    if not items:
        return None
    return finding("outliers", "info", f"Outliers in {len(items)} column(s)",
                   f"Values with a robust z-score above {OUTLIER_Z} (distance from the median "
                   "in units of the median absolute deviation): typos, unit mix-ups or rare "
                   "but real cases. Check a few before training.", items,
                   count=sum(i["outliers"] for i in items))


def _rare_levels(frame: pd.DataFrame, features: list[str]) -> dict[str, Any] | None:
    import pandas as pd

    items = []
    for column in features:
        if pd.api.types.is_numeric_dtype(frame[column]):
            continue
        counts = frame[column].value_counts()
        rare = counts[counts < RARE_SHARE * len(frame)]
        if len(rare):
            items.append({"column": str(column), "levels": len(counts),
                          "rare": {str(k): int(v) for k, v in rare.head(SHOWN_ROWS).items()},
                          "rare_count": len(rare)})
    if not items:
        return None
    return finding("rare_levels", "info", f"Rare categories in {len(items)} column(s)",
                   f"Levels seen in under {RARE_SHARE:.0%} of the rows: too few to learn from, "
                   "and a split may lack them. Merge them into an 'other' level.", items,
                   count=sum(i["rare_count"] for i in items))


def _class_counts(labels: pd.Series, splits: list[str] | None, classes: list[str] | None
                  ) -> tuple[list[str], dict[str, list[int]]]:
    values = labels.dropna().astype(str)
    classes = classes or sorted(values.unique().tolist())
    if splits is None:  # a CSV: its split is yet to be made, so judge the whole file
        return classes, {"train": [int((values == c).sum()) for c in classes]}
    split_of = np.asarray(splits, dtype=object)[labels.notna().to_numpy()]
    return classes, {s: [int(((values == c).to_numpy() & (split_of == s)).sum()) for c in classes]
                     for s in SPLITS}


def _plain(value: Any) -> Any:
    if value is None or (isinstance(value, float) and np.isnan(value)):
        return None
    return value.item() if hasattr(value, "item") else value
