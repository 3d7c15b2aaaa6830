"""Reading a server's request log back: counts, latencies, served confidences (torch-free).

The log is JSONL written by the server (``time``, ``latency_ms``, ``status``, and ``class`` /
``confidence`` for answered requests, ``error`` otherwise). Only its tail is read, so a page
that polls it every second stays cheap however long the server has run.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path
from typing import Any

TAIL_BYTES = 4 * 1024 * 1024


def read_log(path: str | Path, tail_bytes: int = TAIL_BYTES) -> list[dict[str, Any]]:
    """The last records of the log (about ``tail_bytes`` of it); [] when there is none."""
    path = Path(path)
    try:
        with open(path, "rb") as fh:
            size = fh.seek(0, 2)
            fh.seek(max(0, size - tail_bytes))
            data = fh.read()
    except OSError:
        return []
    lines = data.split(b"\n")
    if size > tail_bytes:
        lines = lines[1:]  # the first line is probably cut
    records = []
    for line in lines:
        try:
            record = json.loads(line)
        except ValueError:
            continue  # an empty line, or one being written right now
        if isinstance(record, dict):
            records.append(record)
    return records


def summarize(records: list[dict[str, Any]]) -> dict[str, Any]:
    """Totals and the series the Deploy page draws."""
    statuses = Counter(int(r.get("status", 0)) for r in records)
    answered = [r for r in records if r.get("status") == 200]
    return {
        "requests": len(records),
        "answered": len(answered),
        "errors": sum(n for s, n in statuses.items() if s >= 400 and s != 429),
        "rejected_busy": statuses.get(429, 0),
        "statuses": {str(s): n for s, n in sorted(statuses.items())},
        "latency_ms": [float(r["latency_ms"]) for r in answered if "latency_ms" in r],
        "confidence": [float(r["confidence"]) for r in answered if "confidence" in r],
        "classes": dict(Counter(str(r.get("class")) for r in answered)),
        "last_time": max((r.get("time", 0) for r in records), default=None),
    }


def reference_confidences(bundle_folder: str | Path) -> list[float]:
    """The test split's top-1 confidences recorded at export (``reference.json``)."""
    try:
        data = json.loads((Path(bundle_folder) / "reference.json").read_text())
    except (OSError, ValueError):
        return []
    return [float(c) for c in data.get("confidence", [])]
