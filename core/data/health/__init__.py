"""Dataset health: what is wrong with the data, said before a model learns it.

``health(ws, name, run_id=None)`` returns the report of a dataset (computed once per version of
the data and stored beside it), with a run's likely label errors when a run is given;
``check_csv`` checks a CSV before import; ``make_version`` and ``import_repaired_csv`` apply the
fixes as new datasets. Heavy libraries (imagehash, cleanlab, scikit-learn, pandas) load inside
the functions that use them.
"""

from __future__ import annotations

from core.data.health.checks import check_csv, dataset_report, health, score_inflation
from core.data.health.fixes import (
    IMPUTERS,
    REMOVALS,
    check_removals,
    import_repaired_csv,
    make_version,
    read_version,
    removal_samples,
    resolve_ids,
    suggest_version_name,
)
from core.data.health.labels import label_report, rank_label_issues, stored_label_report
from core.data.health.report import health_dir, stored_report

__all__ = [
    "IMPUTERS",
    "REMOVALS",
    "check_csv",
    "check_removals",
    "dataset_report",
    "health",
    "health_dir",
    "import_repaired_csv",
    "label_report",
    "make_version",
    "rank_label_issues",
    "read_version",
    "removal_samples",
    "resolve_ids",
    "score_inflation",
    "stored_label_report",
    "stored_report",
    "suggest_version_name",
]
