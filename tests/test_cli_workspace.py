"""A full or read-only workspace is one line and exit 2, never a traceback.

The disks are real: a tmpfs mounted by the test (read-only, or small and filled up) when running
as root, else a folder without write permission; ``/dev/full`` and SQLite's own errors for the
mapping itself.
"""

from __future__ import annotations

import errno
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import ROOT
from mounts import fill, remount, tmpfs

from core.errors import WorkspaceUnavailable, workspace_error

FULL = "the workspace disk is full"
READ_ONLY = "the workspace is read-only"


def real_error(action) -> BaseException:
    try:
        action()
    except BaseException as exc:  # noqa: BLE001 - the error itself is what we test
        return exc
    raise AssertionError("expected an error")


def write_dev_full() -> None:
    with open("/dev/full", "w") as f:
        f.write("x")


def sqlite_write_read_only(tmp_path: Path) -> None:
    path = tmp_path / "ro.db"
    sqlite3.connect(path).execute("CREATE TABLE t (x)").connection.commit()
    conn = sqlite3.connect(f"{path.as_uri()}?mode=ro", uri=True)
    conn.execute("INSERT INTO t VALUES (1)")


def test_a_full_device_maps_to_full():
    mapped = workspace_error(real_error(write_dev_full))
    assert isinstance(mapped, WorkspaceUnavailable)
    assert str(mapped).startswith(f"{FULL}: No space left on device;")
    assert "\n" not in str(mapped)


def test_a_wrapped_error_is_found_through_its_cause():
    def wrapped() -> None:
        try:
            write_dev_full()
        except OSError as exc:
            raise RuntimeError("could not save the checkpoint") from exc

    assert str(workspace_error(real_error(wrapped))).startswith(FULL)


def test_sqlite_messages_map_to_read_only(tmp_path: Path):
    mapped = workspace_error(real_error(lambda: sqlite_write_read_only(tmp_path)), tmp_path)
    assert str(mapped).startswith(READ_ONLY) and "readonly database" in str(mapped)
    missing = real_error(lambda: sqlite3.connect(tmp_path / "no" / "such" / "x.db"))
    assert str(workspace_error(missing)).startswith(READ_ONLY)


def test_other_errors_are_not_the_workspace(tmp_path: Path):
    assert workspace_error(real_error(lambda: open(tmp_path / "missing"))) is None  # ENOENT
    assert workspace_error(ValueError("bad")) is None
    no_table = real_error(lambda: sqlite3.connect(":memory:").execute("SELECT * FROM runs"))
    assert workspace_error(no_table, tmp_path) is None  # a healthy disk: a bug, not the disk
    outside = PermissionError(errno.EACCES, "Permission denied", "/somewhere/else/input.csv")
    assert workspace_error(outside, tmp_path) is None  # an unreadable input is not the disk
    assert str(workspace_error(outside)).startswith(READ_ONLY)  # unknown home: it may be


# -- the CLI on real disks ------------------------------------------------------------------------


def cli(home: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "core", *args, "--home", str(home)], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def assert_one_line(proc: subprocess.CompletedProcess, start: str) -> None:
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"error: {start}"), proc.stderr


def as_root() -> bool:
    return os.geteuid() == 0


@pytest.fixture
def read_only_home(tmp_path: Path) -> Iterator[Path]:
    """An empty workspace nothing can be written to."""
    if as_root():  # root writes through file permissions: only a read-only mount stops it
        with tmpfs(tmp_path / "ro", "size=1m,ro") as folder:
            yield folder
        return
    folder = tmp_path / "ro"
    folder.mkdir(mode=0o555)
    try:
        yield folder
    finally:
        folder.chmod(0o755)


def test_commands_on_a_read_only_workspace_are_one_line(read_only_home: Path):
    assert_one_line(cli(read_only_home, "runs"), READ_ONLY)
    assert_one_line(cli(read_only_home, "train", "--dataset", "iris", "--epochs", "1"),
                    READ_ONLY)
    assert_one_line(cli(read_only_home, "status", "20260101-000000-abcdef"), READ_ONLY)
    assert not any(read_only_home.iterdir())


@pytest.mark.skipif(not as_root(), reason="needs root to mount a small tmpfs")
def test_a_workspace_that_turned_read_only_or_full(tmp_path: Path):
    with tmpfs(tmp_path / "ws", "size=512k") as home:
        assert cli(home, "runs").returncode == 0  # the store exists
        remount(home, "ro")
        assert_one_line(cli(home, "train", "--dataset", "iris", "--epochs", "1"), READ_ONLY)
        assert "Traceback" not in cli(home, "runs").stderr  # reading may still work
        remount(home, "rw")
        fill(home)
        assert_one_line(cli(home, "train", "--dataset", "iris", "--epochs", "1"), FULL)
