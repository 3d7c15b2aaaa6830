"""The warm job parent (see :mod:`core.runs.warm`): imports the engine once, then answers each
job request with a child forked ahead of it, until it has been idle for ``idle_s``.

``python -m core.runs.warm_parent KEY``, started by :func:`core.runs.warm.spawn` on demand.
"""

from __future__ import annotations

import atexit
import gc
import json
import os
import shlex
import signal
import socket
import sys
import threading
import time
import traceback
import weakref
from collections.abc import Callable

from core.runs import warm_cli
from core.runs.processes import PROJECT_ROOT
from core.runs.warm import DEFAULT_IDLE_S, IDLE_ENV, state_folder
from core.runs.warm_address import (
    REPLY_TIMEOUT_S,
    parent_key,
    peer_uid,
    read_line,
    socket_address,
)

TICK_S = 5.0  # how often an idle parent checks that it is still its installation's current one
# What the jobs import: the CLI, the trainer (torch, numpy) and what a run imports as it starts
# (the Trainer itself, its monitor and sinks, checkpoint serialisation: ~6 ms of every trial's
# setup), a job's bookkeeping and the local executor it queues the next job with, a study's
# driver and trials (optuna), and the dataset registry (a driver's first trial record reads it).
# The parent also builds the CLI's parser once, which imports every command module: a child
# would otherwise spend ~40 ms on that before its work. setproctitle: its first import in a
# child took 1.4 ms of every job's start. Imported lazily inside every fit, found by profiling
# one: psutil (the resource sampler, 22 ms), numpy.ma (np.unique in the stratified split loads
# it, 26 ms) and, in every augmented run, torchvision.transforms.v2 (20 ms). sklearn.metrics:
# every evaluation, ensemble, data-health and CV summary job (and `evaluate` from the CLI)
# imported it, about 2 s on the 2-core machine.
PRELOAD = ("torch", "torchvision.models", "optuna", "core.cli.main", "core.train.run",
           "core.train.trainer", "core.train.monitor", "core.train.sinks",
           "torch.utils.serialization", "core.runs.body", "core.runs.executors.local",
           "core.tune.callback", "core.tune.driver", "core.data", "setproctitle", "psutil",
           "numpy.ma", "torchvision.transforms.v2", "sklearn.metrics")


def serve(key: str, idle_s: float) -> int:
    """Bind the socket (a second parent for the same key stops here, before any import), import
    the engine, then fork a child per request until ``idle_s`` pass without one."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(socket_address(key))
    except OSError:
        return 0  # another parent serves this key
    import importlib

    for name in PRELOAD:
        importlib.import_module(name)
    import torch

    from core.cli.main import build_parser
    from core.data.fingerprints import prepare_builtins

    build_parser()
    prepare_builtins()  # the built-in datasets, built once for every job that uses one
    # What the imports made is never garbage: out of the collector's sight, a child's full
    # collection walks only its own objects (0.2 ms, not ~190 ms over these ~350k), and does
    # not copy every page it would have touched (copy-on-write).
    gc.freeze()
    # Their finalizers too are the parent's: at a child's exit, torch.library's alone deregister
    # its ~200 operator libraries (26 ms, measured), which the kernel reclaims anyway. What a
    # job registers itself (a temporary folder's clean-up) still runs.
    for finalizer in list(getattr(weakref.finalize, "_registry", {})):
        finalizer.atexit = False

    threads = torch.get_num_threads()
    if threading.active_count() > 1 or torch.cuda.is_initialized():
        print("not fork-safe after the imports (threads or CUDA); not serving", flush=True)
        return 1
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the kernel reaps the children
    spares = _Spares(listener, threads)
    # Where this installation's newest parent says who it is (current_parent()).
    current = state_folder() / f"{key.split('-')[0]}.current"
    current.write_text(f"{key} {os.getpid()}")
    listener.listen(32)
    listener.settimeout(TICK_S)
    print(f"warm parent {os.getpid()} serving {key}", flush=True)
    last = time.monotonic()
    while time.monotonic() - last < idle_s:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            # Code changed on disk since this parent loaded it: nobody asks for this key any
            # more (a parent of the new code answers), so it ends rather than idling on with its
            # memory. The code itself decides, not which parent wrote `current` last: a parent
            # of older code that finished its imports after a newer one must not end the newer.
            if parent_key(os.environ) != key:
                print("the code changed since it loaded; ending", flush=True)
                return 0
            continue
        with conn:
            _answer(conn, spares)
        spares.refill()  # after the reply (and with the connection closed: not inherited)
        last = time.monotonic()
    return 0


def _answer(conn: socket.socket, spares: _Spares) -> None:
    fds: list[int] = []
    try:
        conn.settimeout(REPLY_TIMEOUT_S)
        if peer_uid(conn) != os.getuid():
            return  # only this user's jobs: a child runs with this user's rights
        data, fds, _, _ = socket.recv_fds(conn, 1 << 16, len(warm_cli.STREAMS) + 1)
        request = json.loads(read_line(conn, data=data))
        pid = spares.start(request, fds)
        reply: dict = {"pid": pid}
    except Exception as exc:  # noqa: BLE001  (the caller falls back to a cold start)
        reply = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        for fd in fds:  # the spare has its copies: none may leak into the next spare
            os.close(fd)
    try:
        conn.sendall(json.dumps(reply).encode() + b"\n")
    except OSError:
        pass


class _Spares:
    """The child forked ahead of the next request: it leads its own session already and waits on
    a socket pair for its work: a job (the request, and the log file the parent opened for it),
    or a command forwarded by the CLI (the request, the caller's standard streams and a status
    channel: core.runs.warm_cli). When the parent ends, for whatever reason, the spare reads
    end-of-file and exits."""

    def __init__(self, listener: socket.socket, threads: int) -> None:
        self._listener, self._threads = listener, threads
        self._spare: tuple[int, socket.socket] | None = None
        self.refill()

    def refill(self) -> None:
        if self._spare is None:
            try:
                self._spare = self._fork()
            except OSError as exc:  # e.g. out of processes: the next request forks again
                print(f"could not fork a spare child: {exc}", flush=True)

    def start(self, request: dict, fds: list[int]) -> int:
        """Hand the request to the spare (one forked now when there is none, or it died); its
        pid. ``fds``: a forwarded command's descriptors; none for a job (its log is opened)."""
        if request.get("forwarded"):
            return self._hand(request, fds)
        if fds:
            raise ValueError("descriptors with a job's request")
        log_fd = os.open(request["log"], os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        try:
            return self._hand(request, [log_fd])
        finally:
            os.close(log_fd)

    def _hand(self, request: dict, fds: list[int]) -> int:
        message = json.dumps(request).encode() + b"\n"
        spare, self._spare = self._spare or self._fork(), None
        try:
            return _hand_over(spare, message, fds)
        except OSError:  # it died waiting (killed, out of memory): a fresh one, once
            return _hand_over(self._fork(), message, fds)

    def _fork(self) -> tuple[int, socket.socket]:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        ready_r, ready_w = os.pipe()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid:
            theirs.close()
            os.close(ready_w)
            # Only a child that leads its own session is handed a job: a cancel that signals
            # the recorded pid's group must never reach this parent's group.
            with os.fdopen(ready_r, "rb") as ready:
                if ready.read(1) != b"1":
                    ours.close()
                    raise OSError(f"the child {pid} did not start its session")
            return pid, ours
        code, caller = 1, None
        try:  # the child: waits for its job, then is what `python -m core ARGV` would have been
            self._listener.close()
            ours.close()
            os.close(ready_r)
            os.setsid()
            os.write(ready_w, b"1")
            os.close(ready_w)
            _reseed()  # while it waits: ~8 ms a job no longer waits for
            request, fds = _receive(theirs)
            if request is None:  # the parent ended before handing it a job
                code = 0
                return
            caller = _streams(request, fds)  # first: whatever fails next is told its caller
            _become(request)
            code = _run(request["argv"], self._threads,
                        caller.report if caller is not None else None)
        except SystemExit as exc:  # as the interpreter treats it: a message means status 1
            if exc.code is not None and not isinstance(exc.code, int):
                print(exc.code, file=sys.stderr)
            code = exc.code if isinstance(exc.code, int) else int(exc.code is not None)
        except KeyboardInterrupt:
            code = 130
        except BaseException:  # noqa: BLE001  (reported in the job's log, as a crash would be)
            traceback.print_exc()
        finally:
            try:
                atexit._run_exitfuncs()
                sys.stdout.flush()
                sys.stderr.flush()
                if caller is not None:  # unless it has already
                    caller.report(code)
            finally:
                os._exit(code)
        raise AssertionError("unreachable")


def _hand_over(spare: tuple[int, socket.socket], message: bytes, fds: list[int]) -> int:
    """Give the spare its work; its pid once it has taken it (a spare killed a moment ago may
    still accept the bytes: only its answer says it lives)."""
    pid, channel = spare
    with channel:
        channel.settimeout(REPLY_TIMEOUT_S)
        socket.send_fds(channel, [message], fds)
        if channel.recv(1) != b"1":
            raise OSError(f"the spare child {pid} is gone")
    return pid


def _receive(channel: socket.socket) -> tuple[dict | None, list[int]]:
    """The request and its descriptors; (None, []) at end-of-file."""
    with channel:
        data, fds, _, _ = socket.recv_fds(channel, 65536, len(warm_cli.STREAMS) + 1)
        if not data:
            return None, []
        data = read_line(channel, data=data)
        channel.sendall(b"1")  # taken: the parent replies with this pid
    return json.loads(data), fds


def _streams(request: dict, fds: list[int]) -> warm_cli.Caller | None:
    """This child's standard streams: a job writes to its log file and reads nothing; a
    forwarded command has its caller's, and reports its exit status to the caller returned
    (None for a job)."""
    if request.get("forwarded"):
        return warm_cli.take_streams(request, fds)
    if len(fds) != 1:
        raise ValueError("no log file with the job's request")
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(fds[0], 1)
    os.dup2(fds[0], 2)
    os.close(fds[0])
    return None


def _become(request: dict) -> None:
    """Turn this waiting child into the process a fresh ``python -m core ARGV`` would have been
    (its streams taken): signals, folder, title and environment."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    os.chdir(request["cwd"])
    _retitle(request["argv"])  # before the environment changes: setproctitle needs it intact
    os.environ.clear()
    os.environ.update(request["env"])


def _retitle(args: list[str]) -> None:
    """`ps` shows the job's command, as for a cold start, not the parent's."""
    try:
        from setproctitle import setproctitle
    except ImportError:
        return
    setproctitle(shlex.join([sys.executable, "-m", "core", *args]))


def _reseed() -> None:
    """Fresh seeds, as a fresh interpreter has (a run seeds itself from its config): a forked
    child starts with its parent's generators. numpy's takes ~6 ms (entropy, SeedSequence)."""
    import random

    import numpy as np
    import torch

    random.seed()
    torch.seed()
    np.random.seed()


def _run(args: list[str], default_threads: int,
         done: Callable[[int], None] | None = None) -> int:
    import torch

    wanted = os.environ.get("OMP_NUM_THREADS", "")
    torch.set_num_threads(int(wanted) if wanted.isdigit() and int(wanted) > 0
                          else default_threads)
    sys.argv = [str(PROJECT_ROOT / "core" / "__main__.py"), *args]
    from core.cli.main import main

    return main(args, done)


if __name__ == "__main__":
    sys.exit(serve(sys.argv[1], float(os.environ.get(IDLE_ENV) or DEFAULT_IDLE_S)))
