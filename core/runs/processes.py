"""Detached processes: start one, recognise it later (pid + kernel start time), signal it.

Jobs (training runs) and tasks (evaluate, explain, export, serve) are both detached processes in
their own session; this module is the one place that knows how to start, find and stop them.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def spawn_detached(argv: Sequence[str], log_path: Path,
                   env: Mapping[str, str] | None = None) -> tuple[int, str | None]:
    """Run ``python -m core ARGV`` in its own session, output appended to ``log_path``.

    Returns (pid, start time). The process outlives its parent (the UI or the shell).
    """
    # No PYTHONPATH: the child starts in the project folder, where ``python -m`` finds ``core``
    # (as an installed package, ``pip install -e .``, finds it from anywhere).
    full_env = {**os.environ, **(env or {})}
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as out:
        proc = subprocess.Popen([sys.executable, *argv], cwd=PROJECT_ROOT, env=full_env,
                                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True, close_fds=True)
    return proc.pid, process_start_time(proc.pid)


def process_start_time(pid: int) -> str | None:
    """The kernel's start time of ``pid`` (clock ticks since boot), or None where unknown."""
    stat = _stat_fields(pid)
    return stat[19] if stat else None


def is_alive(pid: int, start: str | None = None) -> bool:
    """True when ``pid`` runs and is the same process that was recorded (not a reused pid)."""
    _reap(pid)
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    stat = _stat_fields(pid)
    if stat is None:
        return start is None  # no /proc (not Linux): trust the kill(0) check
    if stat[0] in ("Z", "X"):  # a zombie has finished; it only waits for its parent
        return False
    return start is None or stat[19] == start


def signal_group(pid: int, sig: int) -> None:
    """Signal the process's whole group (torchrun and its workers), else the process alone."""
    try:
        os.killpg(os.getpgid(pid), sig)
    except (ProcessLookupError, PermissionError):
        try:
            os.kill(pid, sig)
        except ProcessLookupError:
            pass


def wait_dead(pid: int, start: str | None, timeout: float) -> bool:
    """Wait up to ``timeout`` seconds for the process to end; True if it did."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and is_alive(pid, start):
        time.sleep(0.05)
    return not is_alive(pid, start)


def _stat_fields(pid: int) -> list[str] | None:
    """/proc/PID/stat from field 3 (state) on; field 2 (comm) may contain spaces."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat[stat.rindex(")") + 2 :].split()


def _reap(pid: int) -> None:
    """Collect the exit status of our own finished children so they do not linger as zombies."""
    try:
        os.waitpid(pid, os.WNOHANG)
    except (ChildProcessError, OSError):
        pass
