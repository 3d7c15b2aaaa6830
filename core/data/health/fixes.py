"""Fixes as new dataset versions: the user's files and the dataset itself are never changed.

A fix names what to leave out (a removal kind of the health report, or sample ids), labels to
change, and (tables) columns to drop; the result is a new dataset in the workspace with the same
splits, written like an import (staged in a hidden folder, renamed into place) and with a
``health/version.json`` that says where it came from. A CSV that import refuses (missing values)
is imported repaired by ``import_repaired_csv``: the repaired copy is made in the workspace.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.data.health.report import current_fingerprint, health_dir
from core.data.health.report import write_json as write_health_json
from core.data.info import SPLITS, DatasetInfo
from core.data.registry import check_new_name, get_info, is_builtin, replace_meta
from core.errors import InvalidConfig, InvalidTable, UserError
from core.progress import ProgressFn, no_progress
from core.workspace import datasets_dir

if TYPE_CHECKING:
    import pandas as pd

    from core.data.dataset import Dataset
    from core.workspace import Workspace

Sample = tuple[str, int]  # (split, position in the split)
WORK_PREFIX = ".import-fix-"  # under the importers' prefix: leftovers of a kill are cleaned up


def _first_kept(check: str) -> Callable[[dict[str, Any]], set[Sample]]:
    """Groups of copies: keep the first (the earliest split, then the lowest position)."""
    def removal(report: dict[str, Any]) -> set[Sample]:
        return {_key(s) for g in _items(report, check) for s in _ordered(g["samples"])[1:]}
    return removal


def _later_splits(report: dict[str, Any]) -> set[Sample]:
    """Copies across splits: keep every member of the group's earliest split."""
    removed = set()
    for group in _items(report, "cross_split_duplicates"):
        first = min(SPLITS.index(s["split"]) for s in group["samples"])
        removed |= {_key(s) for s in group["samples"] if SPLITS.index(s["split"]) > first}
    return removed


def _every(check: str) -> Callable[[dict[str, Any]], set[Sample]]:
    return lambda report: {_key(s) for s in _items(report, check)}


# What `datasets fix --remove KIND` can remove: KIND -> the samples of the report it removes.
REMOVALS: dict[str, Callable[[dict[str, Any]], set[Sample]]] = {
    "exact-duplicates": _first_kept("exact_duplicates"),
    "near-duplicates": _first_kept("near_duplicates"),
    "cross-split-duplicates": _later_splits,
    "undecodable": _every("undecodable"),
    "near-constant": _every("near_constant"),
}
IMPUTERS = ("median", "mean", "most-frequent", "drop-rows")


def _items(report: dict[str, Any], check: str) -> list[dict[str, Any]]:
    return [item for f in report["findings"] if f["check"] == check for item in f["items"]]


def _key(sample: dict[str, Any]) -> Sample:
    return sample["split"], int(sample["index"])


def _ordered(samples: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(samples, key=lambda s: (SPLITS.index(s["split"]), int(s["index"])))


def check_removals(kinds: Iterable[str]) -> list[str]:
    """``kinds`` if each is a removal of ``REMOVALS``, else a one-line error listing them."""
    kinds = list(kinds)
    for kind in kinds:
        if kind not in REMOVALS:
            raise InvalidConfig(f"Unknown removal {kind!r}; choose from {', '.join(REMOVALS)}.")
    return kinds


def removal_samples(report: dict[str, Any], kinds: Iterable[str]) -> set[Sample]:
    """The samples that the removal ``kinds`` take out, according to ``report``."""
    removed: set[Sample] = set()
    for kind in check_removals(kinds):
        removed |= REMOVALS[kind](report)
    return removed


def resolve_ids(dataset: Dataset, ids: Iterable[str]) -> dict[str, Sample]:
    """Sample ids (as the report shows them) -> (split, position); an unknown id is refused."""
    where = {sid: (split, pos) for split in SPLITS
             for pos, sid in enumerate(dataset.ids(split))}
    found = {}
    for sid in ids:
        if sid not in where:
            raise InvalidConfig(f"No sample {sid!r} in {dataset.info.name}: use the ids the health "
                                "report shows.")
        found[sid] = where[sid]
    return found


def suggest_version_name(ws: Workspace, name: str) -> str:
    """``NAME-v2`` (or the next free ``-vN``), the base name cut to fit the 64-character limit."""
    from core.data.registry import available_names

    taken = set(available_names(ws))
    base = name.rsplit("-v", 1)[0] if name.rsplit("-v", 1)[-1].isdigit() else name
    n = 2
    while f"{base[:60]}-v{n}" in taken:
        n += 1
    return f"{base[:60]}-v{n}"


def make_version(ws: Workspace, name: str, new_name: str, remove: set[Sample] | None = None,
                 relabel: dict[Sample, str] | None = None, drop_columns: list[str] | None = None,
                 reasons: list[str] | None = None, progress: ProgressFn = no_progress
                 ) -> DatasetInfo:
    """Dataset ``new_name``: ``name`` without the ``remove`` samples, with the labels of
    ``relabel`` changed (to a class name) and (tables) without ``drop_columns``; same splits."""
    from core.data.registry import load_dataset

    remove, relabel, drop_columns = set(remove or ()), dict(relabel or {}), list(drop_columns or ())
    check_new_name(ws, new_name)
    dataset = load_dataset(ws, name)
    classes = dataset.info.classes
    unknown = sorted({c for c in relabel.values() if c not in classes})
    if unknown:
        raise InvalidConfig(f"Unknown class {unknown[0]!r}; {name} has {', '.join(classes)}.")
    if not (remove or relabel or drop_columns):
        raise UserError(f"Nothing to change in {name}: no new version made.")
    keep = [(s, i) for s in SPLITS for i in range(dataset.size(s)) if (s, i) not in remove]
    if not any(s == "val" for s, _ in keep):
        raise UserError("The new version would have no validation samples; remove fewer.")
    label_of = {(s, i): relabel.get((s, i), classes[int(dataset.labels(s)[i])]) for s, i in keep}
    if dataset.info.modality == "image":
        if drop_columns:
            raise InvalidConfig("--drop-columns applies to tables; this is an image dataset.")
        info = _write_images(ws, dataset, new_name, keep, label_of, progress)
    else:
        info = _write_table(ws, dataset, new_name, keep, label_of, drop_columns)
    record = {"parent": name, "parent_fingerprint": current_fingerprint(ws, name),
              "created_at": time.time(), "removed": len(remove), "relabelled": len(relabel),
              "dropped_columns": drop_columns, "reasons": list(reasons or [])}
    changes = ", ".join(r for r in [f"{len(remove)} removed" if remove else "",
                                    f"{len(relabel)} relabelled" if relabel else "",
                                    f"dropped {', '.join(drop_columns)}" if drop_columns else ""]
                        if r)
    info.description = f"Version of {name} ({changes}). " + info.description
    replace_meta(ws.dataset_dir(new_name), info)
    write_health_json(health_dir(ws, new_name) / "version.json", record)
    return info


def _work_dir(ws: Workspace) -> Path:
    root = datasets_dir(ws.home)
    root.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=root))


def _write_images(ws: Workspace, dataset: Dataset, new_name: str, keep: list[Sample],
                  label_of: dict[Sample, str], progress: ProgressFn) -> DatasetInfo:
    """An ImageFolder with train/, val/ (and test/) folders, linked (or copied) from the
    dataset's files, or written as PNGs for an in-memory dataset; then imported."""
    from core.data.importers import import_folder

    work = _work_dir(ws)
    try:
        layout = work / "layout"
        ids = {s: dataset.ids(s) for s in SPLITS}
        for done, (split, i) in enumerate(keep, start=1):
            folder = layout / split / label_of[split, i]
            folder.mkdir(parents=True, exist_ok=True)
            source = dataset.path(split, i)
            if source is None:
                dataset.raw(split, i).save(folder / f"{split}-{i:06d}.png")
            else:
                _link_or_copy(source, folder / ids[split][i].replace("/", "__"))
            progress(done, 2 * len(keep), "preparing the new version")
        return import_folder(ws, new_name, layout,
                             lambda d, t, m="": progress(t + d, 2 * t, "storing the new version"))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def _link_or_copy(source: Path, target: Path) -> None:
    try:
        os.link(source, target)  # same filesystem: no copy; import copies it once more
    except OSError:
        shutil.copyfile(source, target)


def _write_table(ws: Workspace, dataset: Dataset, new_name: str, keep: list[Sample],
                 label_of: dict[Sample, str], drop_columns: list[str]) -> DatasetInfo:
    from core.data.dataset import split_info, tabular_stats
    from core.data.fingerprints import dataset_hash
    from core.data.registry import META_FILE, write_json
    from core.data.tables import DATA_FILE, SPLITS_FILE

    info = dataset.info
    missing = [c for c in drop_columns if c not in info.feature_names]
    if missing:
        raise InvalidConfig(f"No column {missing[0]!r} in {info.name}; its columns are "
                            f"{', '.join(info.feature_names)}.")
    features = [c for c in info.feature_names if c not in drop_columns]
    if not features:
        raise InvalidConfig("Dropping every feature column leaves nothing to learn from.")
    frame = _source_rows(ws, dataset, keep)[features]
    target = info.target or "label"
    frame[target] = [label_of[k] for k in keep]
    labels = np.array([info.classes.index(label_of[k]) for k in keep], dtype=np.int64)
    splits = {s: np.array([j for j, (split, _) in enumerate(keep) if split == s], dtype=np.int64)
              for s in SPLITS}
    x = frame[features].to_numpy(np.float64)
    mean, std, ranges = tabular_stats(x[splits["train"]], features)
    new = split_info(new_name, "tabular", list(info.classes), labels, splits,
                     feature_names=features, feature_ranges=ranges, mean=mean, std=std,
                     builtin=False, target=target,
                     description=f"{len(keep):,} rows, {len(features)} features.")
    work = _work_dir(ws)
    try:
        out = work / "dataset"
        out.mkdir()
        frame.to_csv(out / DATA_FILE, index=False)
        write_json(out / SPLITS_FILE, {s: idx.tolist() for s, idx in splits.items()})
        new.content_hash = dataset_hash(out, "tabular")
        write_json(out / META_FILE, new.to_dict())
        final = check_new_name(ws, new_name)  # again: another process may have taken it
        os.rename(out, final)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return new


def _source_rows(ws: Workspace, dataset: Dataset, keep: list[Sample]) -> pd.DataFrame:
    """The kept rows with their stored values (an imported table's own text, not float32)."""
    import pandas as pd

    info = dataset.info
    rows = [int(dataset.indices(s)[i]) for s, i in keep]
    if not is_builtin(info.name):
        from core.data.tables import DATA_FILE

        stored = pd.read_csv(ws.dataset_dir(info.name) / DATA_FILE, dtype={info.target: str},
                             keep_default_na=False)
        return stored.iloc[rows].reset_index(drop=True)
    x = np.concatenate([dataset.array(s) for s in SPLITS])  # in-memory: global order by split
    order = np.concatenate([dataset.indices(s) for s in SPLITS])
    by_global = dict(zip(order.tolist(), range(len(order)), strict=True))
    return pd.DataFrame(x[[by_global[r] for r in rows]].astype(np.float64),
                        columns=info.feature_names)


# -- a CSV that import refuses -------------------------------------------------------------------


def import_repaired_csv(ws: Workspace, name: str, source: str | Path, target: str | None,
                        impute: str | None = None, drop_columns: list[str] | None = None,
                        progress: ProgressFn | None = None) -> DatasetInfo:
    """Import ``source`` as ``name`` after dropping ``drop_columns`` and filling (or dropping
    the rows with) missing values; the repaired copy is written in the workspace, never over
    the user's file. Rows without a label are dropped (a label is not guessed)."""
    from core.data.importers import import_csv
    from core.data.tables import read_table

    check_new_name(ws, name)
    if impute is not None and impute not in IMPUTERS:
        raise InvalidConfig(f"Unknown --impute {impute!r}; choose from {', '.join(IMPUTERS)}.")
    frame = read_table(Path(source))
    frame.columns = [str(c) for c in frame.columns]
    missing = [c for c in drop_columns or () if c not in frame.columns]
    if missing:
        raise InvalidTable(f"No column {missing[0]!r} in {Path(source).name}.")
    frame = frame.drop(columns=list(drop_columns or ()))
    if target in frame.columns:
        frame = frame[frame[target].notna()]
    if impute:
        frame = _impute(frame, impute)
    work = _work_dir(ws)
    try:
        repaired = work / Path(source).name
        frame.to_csv(repaired, index=False)
        info = import_csv(ws, name, repaired, target, progress)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    write_health_json(health_dir(ws, name) / "version.json", {
        "parent": str(source), "created_at": time.time(), "imputed": impute,
        "dropped_columns": list(drop_columns or ())})
    return info


def _impute(frame: pd.DataFrame, how: str) -> pd.DataFrame:
    import pandas as pd

    if how == "drop-rows":
        return frame.dropna()
    frame = frame.copy()
    for column in frame.columns[frame.isna().any()]:
        values = frame[column]
        numeric = pd.api.types.is_numeric_dtype(values)
        if numeric and how in ("median", "mean"):
            fill = values.median() if how == "median" else values.mean()
        else:  # text columns (and most-frequent): the most frequent value
            fill = values.mode(dropna=True).iloc[0] if values.notna().any() else 0
        frame[column] = values.fillna(fill)
    return frame


def read_version(ws: Workspace, name: str) -> dict[str, Any] | None:
    """Where dataset ``name`` came from, if it was made by a fix."""
    get_info(ws, name)  # a clear error for an unknown dataset
    path = health_dir(ws, name) / "version.json"
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
