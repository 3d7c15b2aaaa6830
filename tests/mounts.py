"""Real small filesystems for fault tests: a tmpfs of a given size, remounted read-only or full.

Tests run as root here (CI too), and root writes through file permissions, so only a real
read-only mount or a full filesystem reproduces what a user meets. Without the rights to mount,
the test is skipped with the reason.
"""

from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


@contextmanager
def tmpfs(folder: Path, options: str = "size=4m", lazy: bool = False) -> Iterator[Path]:
    """Mount a tmpfs on ``folder`` (created) for the block; always unmounted after it.

    ``lazy``: detach it even while something still holds a file there (an AppTest session
    keeps its store open until the test process ends); otherwise that is a leak, and fails.
    """
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    folder.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield folder
    finally:
        # A failed unmount means something still holds a file open there: a leak to report.
        # -R: also what a test bind-mounted inside it.
        subprocess.run(["umount", "-R", *(["-l"] if lazy else []), str(folder)], check=True)


def remount(folder: Path, mode: str) -> None:
    """``mode``: "ro" or "rw"."""
    subprocess.run(["mount", "-o", f"remount,{mode}", str(folder)], check=True)


def fill(folder: Path) -> Path:
    """Fill the filesystem of ``folder`` to its last byte; returns the filler file."""
    filler = folder / "filler"
    with open(filler, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 4096)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler
