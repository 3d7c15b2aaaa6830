"""Where things live: one workspace folder holds the store, datasets and runs.

Resolution order: an explicit ``home`` argument, then ``$LAB2MARKET_HOME``, then ``./workspace``.

This is also the one place where a name a user typed (a run id, a dataset name, a bundle name)
becomes a path: every getter checks the name against its pattern and the resolved path against
the workspace *before* anything is read or written, so ``../../OTHER/runs/ID`` never leaves it.
Getters do not create folders; writers create what they write (``mkdir(parents=True)``).
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from core.errors import InvalidName

ENV_VAR = "LAB2MARKET_HOME"
STORE_ENV = "LAB2MARKET_STORE"  # the run store's URL when it is not the workspace's SQLite file
SQLITE_SCHEME = "sqlite:///"  # sqlite:///relative/file.db, sqlite:////absolute/file.db
POSTGRES_SCHEMES = ("postgresql://", "postgres://")
EXECUTORS = ("local", "ray")  # where jobs run (core.runs.executors)

# One pattern per kind of name. Run and job ids come from ``core.runs.store.new_run_id``.
NAME_PATTERNS: dict[str, re.Pattern[str]] = {
    "run": re.compile(r"\d{8}-\d{6}-[0-9a-f]{6}"),
    "job": re.compile(r"j\d{8}-\d{6}-[0-9a-f]{6}"),
    "dataset": re.compile(r"[a-z0-9_-]{1,64}"),
    "bundle": re.compile(r"[a-z0-9][a-z0-9_-]{0,63}"),
}
_HINTS = {
    "run": "a run id looks like 20260101-120000-a1b2c3 (`python -m core runs` lists them)",
    "job": "a job id looks like j20260101-120000-a1b2c3 (`python -m core jobs` lists them)",
    "dataset": "use 1 to 64 lowercase letters, digits, '_' or '-'",
    "bundle": "a bundle name looks like onnx-int8 (`python -m core bundles RUN` lists them)",
}


def check_name(kind: str, value: object) -> str:
    """``value`` if it is a valid ``kind`` name (run, job, dataset, bundle), else InvalidName."""
    if not isinstance(value, str) or not NAME_PATTERNS[kind].fullmatch(value):
        raise InvalidName(f"Invalid {kind} name {value!r}: {_HINTS[kind]}.")
    return value


def is_valid_name(kind: str, value: object) -> bool:
    return isinstance(value, str) and NAME_PATTERNS[kind].fullmatch(value) is not None


def home_path(home: str | os.PathLike | None = None) -> Path:
    """The workspace folder, as an absolute path, without creating it (to describe a failure)."""
    return Path(home or os.environ.get(ENV_VAR) or "workspace").expanduser().resolve()


def resolve_home(home: str | os.PathLike | None = None) -> Path:
    """Return the workspace folder (created if missing), as an absolute path."""
    path = home_path(home)
    path.mkdir(parents=True, exist_ok=True)
    return path


def resolve_store_url(url: str | None = None) -> str | None:
    """The run store's URL: ``url``, else ``$LAB2MARKET_STORE``, else None (the SQLite file in
    the workspace)."""
    return url or os.environ.get(STORE_ENV) or None


def db_path(home: Path) -> Path:
    return home / "lab2market.db"


def datasets_dir(home: Path) -> Path:
    return home / "datasets"


def runs_dir(home: Path) -> Path:
    return home / "runs"


def dataset_dir(home: Path, name: str) -> Path:
    """The folder of the imported dataset ``name`` (checked; not created)."""
    return _inside(home, datasets_dir(home) / check_name("dataset", name))


def run_dir(home: Path, run_id: str) -> Path:
    """The folder of run ``run_id`` (checked; not created)."""
    return _inside(home, runs_dir(home) / check_name("run", run_id))


def bundle_dir(home: Path, run_id: str, bundle: str) -> Path:
    """The folder of a run's export bundle (checked; not created)."""
    return _inside(home, run_dir(home, run_id) / "export" / check_name("bundle", bundle))


def _inside(home: Path, path: Path) -> Path:
    # The patterns already exclude separators and dots; this also refuses a symlinked folder
    # that points out of the workspace.
    resolved = path.resolve()
    if not resolved.is_relative_to(home.resolve()):
        raise InvalidName(f"{path.name!r} resolves outside the workspace ({resolved}).")
    return path


class Workspace:
    """One workspace, built once at the edge (CLI, page, job): its paths and its run store.

    The store opens on first use and closes with the workspace (``with Workspace.open(h) as
    ws:``), so code handed a workspace never opens or leaks connections of its own. Core
    functions take it as their first parameter: ``evaluate(ws, run_id, split)``.
    """

    def __init__(self, home: Path, store_url: str | None = None, executor: str | None = None):
        self.home = home
        self.store_url = resolve_store_url(store_url)
        self.executor = executor  # where its jobs run (None: $LAB2MARKET_EXECUTOR, the setting)
        self._store = None
        self._borrowed = False  # a store someone else opened (``of``): they close it

    @classmethod
    def open(cls, home: str | os.PathLike | None = None, store: str | None = None,
             executor: str | None = None) -> Workspace:
        """``store``: the run store's URL (default ``$LAB2MARKET_STORE``, else SQLite);
        ``executor``: where jobs queued through it run (``core.runs.executors``)."""
        return cls(resolve_home(home), store, executor)

    @classmethod
    def of(cls, store) -> Workspace:
        """The workspace of an already open store, sharing it: the store's owner closes it."""
        ws = cls(store.home, store.url, store.executor)
        ws._store, ws._borrowed = store, True
        return ws

    @property
    def store(self):  # -> core.runs.store.Store (imported late: the store imports this module)
        if self._store is None:
            from core.runs.store import Store

            self._store = Store(self.home, url=self.store_url, executor=self.executor)
        return self._store

    def close(self) -> None:
        if self._store is not None and not self._borrowed:
            self._store.close()
        self._store, self._borrowed = None, False

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Workspace({str(self.home)!r})"

    @property
    def db_path(self) -> Path:
        return db_path(self.home)

    def run_dir(self, run_id: str) -> Path:
        return run_dir(self.home, run_id)

    def dataset_dir(self, name: str) -> Path:
        return dataset_dir(self.home, name)

    def bundle_dir(self, run_id: str, bundle: str) -> Path:
        return bundle_dir(self.home, run_id, bundle)
