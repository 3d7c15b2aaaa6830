"""A warm start for local jobs: one long-lived parent that has imported torch and the engine
once, and forks a child per job.

A fresh ``python -m core _job`` spends about 2 s importing torch and the engine before it does
anything: more than a small trial's whole fit, and most of the wait between "Launch" and the first
loss point. The warm parent pays that once. It is started on demand by the first job that finds
none (that job still starts cold), serves every later job of this user and this code over a local
socket, and exits after ``$LAB2MARKET_WARM_IDLE_S`` seconds without a request.

A child is the job a cold start would have been: its own session (so a cancel signals its group
as before), the job's environment, working folder, log file and thread count, fresh random seeds,
and the same ``python -m core`` entry point; the dispatcher records its pid like any other. The
parent forks each child ahead of its request (a spare, waiting in its own session): forking this
parent's ~700 MB of page tables takes 10-20 ms, which a job's start no longer waits for.
The parent's side is :mod:`core.runs.warm_parent`; this module is the dispatcher's.

Safety: the parent forks only while it is single-threaded at the Python level and has not
touched CUDA (a forked CUDA context is unusable); it answers only processes of its own user
(``SO_PEERCRED``), on a Linux abstract socket named after the code it has loaded, so a change of
the code (or of the interpreter) gets a new parent, never a stale one. Anything unexpected makes
the dispatcher fall back to a cold start: this module can make a job faster, never fail it.
``LAB2MARKET_WARM=0`` turns it off.
"""

from __future__ import annotations

import gc
import logging
import os
import socket
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from core.runs.processes import PROJECT_ROOT, process_start_time, spawn_detached
from core.runs.warm_address import (
    enabled,
    install_id,
    parent_key,
    read_reply,
    send_request,
    socket_address,
)

log = logging.getLogger(__name__)

IDLE_ENV = "LAB2MARKET_WARM_IDLE_S"
DEFAULT_IDLE_S = 600.0
# Read by the OpenMP/BLAS runtimes when they start: the parent starts them without these, and
# each child sets torch's thread count from its own environment instead.
THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


# -- the dashboard's own process ------------------------------------------------------------------

PRELOAD_ENV = "LAB2MARKET_PRELOAD"  # "0": the dashboard imports torch only when a page needs it
# Third-party only: they import nothing of the engine, so a page's own imports may wait on a
# lock this thread holds, never the other way round (no import deadlock).
# torchvision.models alone takes ~1.3 s (it imports every model family): the first transfer
# model a page loads would wait for it.
DASHBOARD_PRELOAD = ("torch", "torchvision.models", "captum.attr")
_preload_started = False


def preload_in_background() -> None:
    """Import torch, torchvision's models and captum in a daemon thread of this process (the
    dashboard's), once, so the first in-page Evaluate, Predict or Explain after a start does
    not wait 2-4 s for them; the pages themselves stay torch-free and draw at once. Then freeze
    what exists for the garbage collector (see ``_preload``)."""
    global _preload_started
    if _preload_started or os.environ.get(PRELOAD_ENV) == "0":
        return
    _preload_started = True
    threading.Thread(target=_preload, name="lab2market-preload", daemon=True).start()


def _preload() -> None:
    import importlib

    for name in DASHBOARD_PRELOAD:
        try:
            importlib.import_module(name)
        except Exception as exc:  # noqa: BLE001  (the page imports it again and says why)
            log.warning("could not preload %s: %s", name, exc)
    # What the server and these imports made lives as long as the server: out of the garbage
    # collector's sight, a full collection (which pauses every session's script) walks only what
    # came after, not ~500k objects (about 0.25 s on this machine, every few clicks).
    gc.freeze()


# -- the dispatcher's side ------------------------------------------------------------------------


def spawn(argv: Sequence[str], log_path: Path,
          env: Mapping[str, str] | None = None) -> tuple[int, str | None] | None:
    """Start ``python ARGV`` (a ``-m core`` command) as a child of the warm parent; returns
    (pid, start time), or None when there is no warm parent to ask (the caller starts the job
    cold; a parent is started for the next job) or it refused. OSError: the request went out
    but no reply came in time; a child may hold the job, so it must not start cold as well (the
    dispatcher fails it, and a late child, finding it failed, does nothing)."""
    full_env = {**os.environ, **(env or {})}
    if not enabled(full_env) or list(argv[:2]) != ["-m", "core"]:
        return None
    key = parent_key(full_env)
    request = {"argv": list(argv[2:]), "env": full_env, "log": str(log_path),
               "cwd": str(PROJECT_ROOT)}
    try:
        log_path.parent.mkdir(parents=True, exist_ok=True)
        conn = send_request(key, request)
    except ConnectionRefusedError:  # none yet (or it is still importing): start one for later
        _start_parent(key, full_env)
        return None
    except OSError as exc:  # not sent: nothing runs yet
        log.warning("warm start failed (%s); starting the job cold", exc)
        return None
    with conn:
        try:
            pid = read_reply(conn)
        except ValueError as exc:
            log.warning("warm start refused (%s); starting the job cold", exc)
            return None
    return pid, process_start_time(pid)


def prestart() -> None:
    """Start the warm parent ahead of the first job, so that one starts warm too (the dashboard
    calls this as it opens). Cheap when a parent already answers."""
    if not enabled(os.environ):
        return
    key = parent_key(os.environ)
    try:
        _probe(key)
    except ConnectionRefusedError:
        _start_parent(key, os.environ)
    except OSError:
        pass


def wait_ready(timeout: float) -> bool:
    """Start the warm parent if needed and wait until it answers (False: off, or not in time).
    For whoever times jobs (a benchmark, a test) and wants the steady state, not the first
    start after an edit or an idle spell."""
    if not enabled(os.environ):
        return False
    prestart()
    key = parent_key(os.environ)
    deadline = time.monotonic() + timeout
    while True:
        try:
            _probe(key)
            return True
        except OSError:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.1)


def _probe(key: str) -> None:
    """Connect to the parent of ``key`` and hang up; raises OSError when none answers."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        probe.connect(socket_address(key))


def state_folder() -> Path:
    return Path(tempfile.gettempdir()) / f"lab2market-warm-{os.getuid()}"


def _start_parent(key: str, env: Mapping[str, str]) -> None:
    folder = state_folder()
    try:
        folder.mkdir(mode=0o700, exist_ok=True)
        clean = {k: v for k, v in env.items() if k not in THREAD_VARS}
        spawn_detached(["-m", "core.runs.warm_parent", key], folder / f"{key}.log", clean)
    except OSError as exc:
        log.warning("could not start the warm parent: %s", exc)


def current_parent(env: Mapping[str, str]) -> tuple[str, int] | None:
    """The key and pid of the installation's newest parent, if one has started."""
    text = read_or_empty(state_folder() / f"{install_id(env)}.current").split(" ")
    return (text[0], int(text[1])) if len(text) == 2 and text[1].isdigit() else None


def read_or_empty(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
