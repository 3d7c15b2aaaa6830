"""The health report: its findings, where it is kept, and when it is still valid.

A report is a JSON object computed once per version of a dataset and kept beside it:
``<dataset>/health/report.json`` for an imported dataset (deleted with it), and
``<home>/datasets/.health/<name>/report.json`` for a built-in (a hidden folder is never listed as
a dataset). It records the dataset's fingerprint (``core.data.fingerprints``); a report whose
fingerprint is not the dataset's current one is stale and recomputed, never shown.

A finding is a plain dict, so the report is its own JSON::

    {"check": "cross_split_duplicates", "severity": "error" | "warning" | "info",
     "title": "...", "message": "...", "count": 12, "items": [...],
     "fix": {"label": "...", "args": ["--remove", "cross-split-duplicates"]} | None}

``items`` are samples (``{"split", "index", "id", "label", ...}``), groups of samples
(``{"samples": [...]}``) or, for tables, columns (``{"column", ...}``).
"""

from __future__ import annotations

import json
import logging
import os
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.data.registry import is_builtin
from core.workspace import datasets_dir

if TYPE_CHECKING:
    from core.workspace import Workspace

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
REPORT_FILE = "report.json"
SEVERITIES = ("error", "warning", "info")


def finding(check: str, severity: str, title: str, message: str, items: list[Any] | None = None,
            count: int | None = None, fix: dict[str, Any] | None = None) -> dict[str, Any]:
    """One finding of a check (see the module docstring for its fields)."""
    if severity not in SEVERITIES:
        raise ValueError(f"severity must be one of {SEVERITIES}, got {severity!r}")
    items = list(items or [])
    return {"check": check, "severity": severity, "title": title, "message": message,
            "count": len(items) if count is None else int(count), "items": items, "fix": fix}


def fix_args(*args: str, label: str) -> dict[str, Any]:
    """A finding's fix: the ``datasets fix NAME ... --as NEW`` arguments that apply it."""
    return {"label": label, "args": list(args)}


def sort_findings(findings: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Most serious first; within a severity, in the order the checks ran."""
    return sorted(findings, key=lambda f: SEVERITIES.index(f["severity"]))


# -- where it is kept ----------------------------------------------------------------------------


def health_dir(ws: Workspace, name: str) -> Path:
    """The folder of dataset ``name``'s health files (checked name; not created)."""
    if is_builtin(name):
        from core.workspace import check_name

        return datasets_dir(ws.home) / ".health" / check_name("dataset", name)
    return ws.dataset_dir(name) / "health"


def current_fingerprint(ws: Workspace, name: str) -> dict[str, Any]:
    from core.data.fingerprints import fingerprint

    return json.loads(json.dumps(fingerprint(ws, name)))  # as JSON stores it (lists, str keys)


def read_json(path: Path) -> dict[str, Any] | None:
    """A stored health file, or None when it is missing or unreadable (it is then redone)."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as exc:
        logger.warning("Ignoring unreadable %s: %s", path, exc)
        return None


def write_json(path: Path, payload: dict[str, Any]) -> bool:
    """Write atomically (a reader never sees half a file); False when the workspace refuses
    (read-only or full): the report is then only returned, and recomputed next time."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp.write_text(json.dumps(payload, indent=1, default=_plain), encoding="utf-8")
        os.replace(tmp, path)
        return True
    except OSError as exc:
        logger.warning("Cannot store the health report %s: %s", path, exc)
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _plain(value: Any) -> Any:
    # numpy scalars reach the report from the checks' arithmetic
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def stored_report(ws: Workspace, name: str, fingerprint: dict[str, Any] | None = None
                  ) -> dict[str, Any] | None:
    """The stored report of ``name`` if it was made for the dataset as it is now, else None."""
    report = read_json(health_dir(ws, name) / REPORT_FILE)
    if not report or report.get("version") != FORMAT_VERSION:
        return None
    current = fingerprint if fingerprint is not None else current_fingerprint(ws, name)
    return report if report.get("fingerprint") == current else None


def new_report(name: str, modality: str, fingerprint: dict[str, Any],
               findings: list[dict[str, Any]], samples: int, started: float,
               extra: dict[str, Any] | None = None) -> dict[str, Any]:
    findings = sort_findings(findings)
    return {
        "version": FORMAT_VERSION, "dataset": name, "modality": modality,
        "fingerprint": fingerprint, "created_at": time.time(),
        "seconds": round(time.time() - started, 3), "samples": int(samples),
        "counts": {s: sum(f["severity"] == s for f in findings) for s in SEVERITIES},
        "findings": findings, **(extra or {}),
    }
