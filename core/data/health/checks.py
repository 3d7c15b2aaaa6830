"""Run the health checks of a dataset, or return the stored report when the data is unchanged."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

import numpy as np

from core.data.health.report import (
    REPORT_FILE,
    current_fingerprint,
    health_dir,
    new_report,
    stored_report,
    write_json,
)
from core.data.info import SPLITS
from core.progress import ProgressFn, no_progress

if TYPE_CHECKING:
    import pandas as pd

    from core.data.dataset import Dataset
    from core.workspace import Workspace


def dataset_report(ws: Workspace, name: str, progress: ProgressFn = no_progress,
                   refresh: bool = False) -> dict[str, Any]:
    """The health report of dataset ``name``: the stored one if it was made for the dataset as
    it is now (and ``refresh`` is False), else computed and stored."""
    from core.data.registry import load_dataset

    fingerprint = current_fingerprint(ws, name)
    found = None if refresh else stored_report(ws, name, fingerprint)
    if found is not None:
        return found
    started = time.time()
    dataset = load_dataset(ws, name)
    if dataset.info.modality == "image":
        from core.data.health.images import image_findings, image_stats, scan_images

        scan = scan_images(dataset, progress)
        findings, extra = image_findings(dataset, scan), {"images": image_stats(scan)}
    else:
        from core.data.health.tables import table_findings

        frame, target, splits, ids, positions = stored_table(ws, dataset)
        progress(0, 1, "checking the table")
        findings = table_findings(frame, target, splits, ids, positions, dataset.info.classes)
        extra = {"target": target}
        progress(1, 1, "checked")
    report = new_report(name, dataset.info.modality, fingerprint, findings, len(dataset),
                        started, extra)
    write_json(health_dir(ws, name) / REPORT_FILE, report)
    return report


def health(ws: Workspace, name: str, run_id: str | None = None,
           progress: ProgressFn = no_progress, refresh: bool = False) -> dict[str, Any]:
    """The report, plus with a run: its likely label errors and how much the copies shared
    across splits inflate its stored scores (``inflation``)."""
    report = dict(dataset_report(ws, name, progress, refresh))
    if run_id:
        from core.data.health.labels import label_report

        report["labels"] = label_report(ws, name, run_id, progress, refresh)
        report["inflation"] = score_inflation(ws, run_id, report)
    return report


def score_inflation(ws: Workspace, run_id: str, report: dict[str, Any]) -> dict[str, Any]:
    """The run's accuracy on val and test with and without the samples that repeat an earlier
    split, from its stored predictions (none computed here: a split not evaluated is skipped)."""
    from core.analyze.evaluate import stored

    leaked = leaked_samples(report)
    found = {}
    for split in ("val", "test"):
        preds = stored(ws, run_id, split) if leaked.get(split) else None
        if preds is None or not len(preds.y_true):
            continue
        correct = preds.y_pred == preds.y_true
        clean = np.array([int(p) not in leaked[split] for p in preds.index])
        if clean.any():
            found[split] = {"copies": int((~clean).sum()),
                            "accuracy": round(float(correct.mean()), 4),
                            "accuracy_without": round(float(correct[clean].mean()), 4)}
    return found


def leaked_samples(report: dict[str, Any]) -> dict[str, set[int]]:
    """Per split, the positions of samples that repeat one of an earlier split."""
    leaked: dict[str, set[int]] = {s: set() for s in SPLITS}
    for f in report["findings"]:
        if f["check"] == "cross_split_duplicates":
            for group in f["items"]:
                first = min(SPLITS.index(s["split"]) for s in group["samples"])
                for s in group["samples"]:
                    if SPLITS.index(s["split"]) > first:
                        leaked[s["split"]].add(int(s["index"]))
    return leaked


def stored_table(ws: Workspace, dataset: Dataset
                 ) -> tuple[pd.DataFrame, str, list[str], list[str], list[int]]:
    """A tabular dataset as one frame (features and the label, as class names), rows in split
    order, with each row's split, sample id and position in its split."""
    import pandas as pd

    info = dataset.info
    target = info.target or "label"
    if target in info.feature_names:
        target = "__label__"
    parts, splits, ids, positions = [], [], [], []
    for split in SPLITS:
        x = dataset.array(split)
        if x is None or not len(x):
            continue
        part = pd.DataFrame(np.asarray(x, dtype=np.float64), columns=info.feature_names)
        part[target] = [info.classes[k] for k in dataset.labels(split)]
        parts.append(part)
        splits += [split] * len(x)
        ids += dataset.ids(split)
        positions += list(range(len(x)))
    frame = pd.concat(parts, ignore_index=True)
    return frame, target, splits, ids, positions


def check_csv(source: str, target: str | None) -> dict[str, Any]:
    """The health report of a CSV that is not imported yet (not stored: the file is the
    user's). Missing values and text columns are reported rather than refused."""
    from pathlib import Path

    from core.data.health.tables import table_findings
    from core.data.tables import read_table
    from core.errors import InvalidTable

    started = time.time()
    frame = read_table(Path(source))
    frame.columns = [str(c) for c in frame.columns]
    if not target or target not in frame.columns:
        raise InvalidTable(f"{Path(source).name}: name the label column with --target; its "
                           f"columns are: {', '.join(frame.columns)}.")
    findings = table_findings(frame, target)
    report = new_report(Path(source).name, "tabular", {}, findings, len(frame), started,
                        {"target": target, "source": str(source)})
    return report
