"""Where things live: one workspace folder holds the store, datasets and runs.

Resolution order: an explicit ``home`` argument, then ``$LAB2MARKET_HOME``, then ``./workspace``.
"""

from __future__ import annotations

import os
from pathlib import Path

ENV_VAR = "LAB2MARKET_HOME"


def resolve_home(home: str | os.PathLike | None = None) -> Path:
    """Return the workspace folder (created if missing), as an absolute path."""
    path = Path(home or os.environ.get(ENV_VAR) or "workspace").expanduser().resolve()
    path.mkdir(parents=True, exist_ok=True)
    return path


def db_path(home: Path) -> Path:
    return home / "lab2market.db"


def datasets_dir(home: Path) -> Path:
    path = home / "datasets"
    path.mkdir(exist_ok=True)
    return path


def runs_dir(home: Path) -> Path:
    path = home / "runs"
    path.mkdir(exist_ok=True)
    return path


def run_dir(home: Path, run_id: str) -> Path:
    return runs_dir(home) / run_id
