"""Atomic file writes: the one rule for every file a reader may open while it is written.

A file is written to a temp file beside it (same folder, so the rename cannot cross file
systems), flushed and fsynced, then renamed over the target: a reader sees the old file or the
new one, never half of one, and a kill or a full disk leaves the old file and no litter.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any


@contextmanager
def temp_beside(path: Path, mode: str = "wb", prefix: str | None = None,
                suffix: str = ".tmp") -> Iterator[tuple[IO[Any], Path]]:
    """A temp file in ``path``'s folder (``.NAME.XXXX.tmp`` unless told), open in ``mode``;
    flushed and fsynced when the block ends, removed when it raises. The caller installs it
    (``os.replace``) or hands it on."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, name = tempfile.mkstemp(dir=path.parent, prefix=prefix or f".{path.name}.", suffix=suffix)
    tmp = Path(name)
    try:
        with os.fdopen(fd, mode) as fh:
            yield fh, tmp
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the folder decides who reads it
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path, write: Callable[[IO[Any]], Any], mode: str = "wb",
                 prefix: str | None = None, suffix: str = ".tmp") -> Path:
    """``write(fh)`` into a temp file beside ``path``, then rename it over ``path``."""
    with temp_beside(path, mode, prefix, suffix) as (fh, tmp):
        write(fh)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return path
