"""Errors a user can cause. Each message says what to do next.

Pages show them with ``st.error``; the CLI prints the message and exits 2. Anything that is not a
``UserError`` is a bug and keeps its traceback.
"""

import os


class UserError(Exception):
    """Base class of every error caused by input, not by a bug."""

    exit_code = 2


class InvalidConfig(UserError):
    """A configuration value is unknown or out of range."""


class DatasetNotFound(UserError):
    """No built-in or imported dataset has that name."""


class ModelNotFound(UserError):
    """No registered model has that name."""


class InvalidArchive(UserError):
    """An uploaded archive is unsafe, too large or not in the expected layout."""


class InvalidImage(UserError):
    """A file is not an allowed image, is corrupt, or has too many pixels."""


class InvalidTable(UserError):
    """A CSV is unreadable or lacks the expected columns."""


class WeightsNotFound(UserError):
    """A pretrained or user-given weights file is missing or does not fit the model."""


class UnsafeCheckpoint(UserError):
    """A checkpoint holds something other than tensors and primitives; it is refused."""


class RunNotFound(UserError):
    """No run has that id."""


class InvalidRunState(UserError):
    """The run's status does not allow the requested action (e.g. resuming a completed run)."""


class DeviceUnavailable(UserError):
    """The requested device (e.g. ``cuda:0``) does not exist on this machine."""


class ComputeBudgetExceeded(UserError):
    """An explanation ran past its compute budget (time, samples or steps)."""


class ExportFailed(UserError):
    """An export did not pass its checks (ONNX checker, agreement with PyTorch)."""


class InvalidBundle(UserError):
    """An export bundle is missing, was not exported by this project, or changed since."""


class InvalidName(UserError):
    """A run id, dataset or bundle name does not match its pattern or leaves the workspace."""


class DatasetChanged(UserError):
    """A run's dataset no longer matches the fingerprint recorded when the run was trained."""


class CheckpointDamaged(UserError):
    """A checkpoint is unreadable, truncated, changed since it was written, or does not fit."""


class StudyDamaged(UserError):
    """A study's Optuna journal holds a line that is not a record (edited, or a torn write)."""


class WorkspaceUnavailable(UserError):
    """The workspace's disk is full or read-only, so nothing can be written there."""


# sqlite3 reports a full or read-only disk only in its message text.
_SQLITE_FULL = ("database or disk is full",)
_SQLITE_READ_ONLY = ("unable to open database file", "attempt to write a readonly database")
_SQLITE_IO = ("disk i/o error",)
_NEARLY_FULL = 64 * 1024  # bytes free below which a failed write is put down to a full disk


def workspace_error(exc: BaseException, home: str | os.PathLike | None = None
                    ) -> UserError | None:
    """The one-line ``WorkspaceUnavailable`` for a full or read-only workspace, else None.

    Looks at ``exc`` and the exceptions it was raised from (a library may wrap the ``OSError``):
    OSError ENOSPC / EDQUOT (full), EROFS / EACCES / EPERM (read-only), and the sqlite3 messages
    that say the same. With ``home`` (the workspace folder), an OSError about a file outside it
    (say, an unreadable input file) is not the workspace's fault and gives None, and a SQLite
    error is classified by the workspace's filesystem itself (mounted read-only, or no space
    left) when it is one of those. The CLI prints the result and exits 2; pages show it with
    ``st.error``.
    """
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = _classify(current, home)
        if found is not None:
            return found
        current = current.__cause__ or current.__context__
    return None


def _classify(exc: BaseException, home: str | os.PathLike | None) -> UserError | None:
    import errno
    import sqlite3

    if isinstance(exc, OSError) and exc.errno is not None and _inside(exc.filename, home):
        reason = exc.strerror or str(exc)
        detail = f"{reason}: {exc.filename}" if exc.filename else reason
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            return _full(detail)
        if exc.errno in (errno.EROFS, errno.EACCES, errno.EPERM):
            return _read_only(detail)
    if isinstance(exc, sqlite3.OperationalError):
        text = str(exc).lower()
        detail = f"the run store says {str(exc)!r}"
        # The filesystem itself says best which it is: SQLite's words can mislead (a store that
        # fell back to read-only on a full disk says "readonly database", or "no such table"
        # when the disk filled up before its tables were written).
        state = _disk_state(home)
        if state == "full" or (state is None and text.startswith(_SQLITE_FULL)):
            return _full(detail)
        if state == "read-only" or (state is None and text.startswith(_SQLITE_READ_ONLY)):
            return _read_only(detail)
        if text.startswith(_SQLITE_IO):
            return WorkspaceUnavailable(f"the workspace disk failed a write ({detail}): check "
                                        "that it is not full or read-only, then retry.")
    return None


def _disk_state(home: str | os.PathLike | None) -> str | None:
    """"read-only" or "full" when the workspace's filesystem is, else None (or unknown)."""
    if home is None or not hasattr(os, "statvfs"):
        return None
    try:
        fs = os.statvfs(home)
    except OSError:
        return None
    if fs.f_flag & os.ST_RDONLY:
        return "read-only"
    if fs.f_bavail * fs.f_frsize < _NEARLY_FULL:
        return "full"
    return None


def _inside(filename: object, home: str | os.PathLike | None) -> bool:
    """Whether an OSError's file is in the workspace (True when either is unknown)."""
    if home is None or not isinstance(filename, (str, os.PathLike)):
        return True
    root = os.path.realpath(home)
    return os.path.commonpath([root, os.path.realpath(filename)]) == root


def _full(detail: str) -> WorkspaceUnavailable:
    return WorkspaceUnavailable(f"the workspace disk is full: {detail}; free some space (e.g. "
                                "`python -m core delete RUN`) or use another --home, then retry.")


def _read_only(detail: str) -> WorkspaceUnavailable:
    return WorkspaceUnavailable(f"the workspace is read-only: {detail}; make it writable or use "
                                "another --home, then retry.")
