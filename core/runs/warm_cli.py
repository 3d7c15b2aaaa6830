"""``python -m core ARGV`` answered by the warm job parent (:mod:`core.runs.warm`).

A fresh ``python -m core`` spends ~0.15 s before its command does anything: the parser imports
every command module, a command imports what it needs (numpy, the dataset registry, tqdm) and
builds a built-in dataset, and tearing all of that down at exit costs more. When a warm parent of
this installation and this code answers (the dashboard is open, or a job ran in the last ten
minutes), the command runs in one of its children instead, which has all of that loaded: this
process passes its arguments, environment, folder, umask and standard streams (the file
descriptors themselves, over the socket), relays Ctrl-C and termination signals, and exits with
the status the child reports. No parent, or anything unexpected before the hand-off, and the
command runs here as before. Job bodies (``_job``, ``_tune``: any argument starting with ``_``)
never come this way; ``LAB2MARKET_WARM=0`` turns it off.

The child's side (:func:`take_streams`, :class:`Caller`) runs in :mod:`core.runs.warm_parent`.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

from core.runs import warm_address

STREAMS = (0, 1, 2)  # stdin, stdout, stderr; then the status channel
RELAYED = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)
fallback: str | None = None  # why the last forward() returned None (for whoever debugs it)


def forward(argv: Sequence[str]) -> int | None:
    """Run ``python -m core ARGV`` in a warm child; its exit status, or None when no warm
    parent took it (the caller runs the command itself: :data:`fallback` says why)."""
    global fallback
    env = dict(os.environ)
    if not warm_address.enabled(env) or any(arg.startswith("_") for arg in argv):
        fallback = "off, or a job's body"
        return None
    ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with ours:
        with theirs:
            try:
                for fd in STREAMS:
                    os.fstat(fd)  # a closed standard stream cannot be passed: run here
                request = {"argv": list(argv), "env": env, "cwd": os.getcwd(),
                           "umask": _umask(), "forwarded": True}
                conn = warm_address.send_request(warm_address.parent_key(env), request,
                                                 [*STREAMS, theirs.fileno()])
            except OSError as exc:  # no parent, or not sent: nothing runs anywhere yet
                fallback = f"{type(exc).__name__}: {exc}"
                return None
        with conn:
            try:
                pid: int | None = warm_address.read_reply(conn)
            except ValueError as exc:  # it refused: nobody took the command
                fallback = f"refused: {exc}"
                return None
            except OSError:  # no reply in time: a child may have it, so it must not run twice
                pid = None
        with _relaying(pid) as relayed:
            status = _read_status(ours)  # a child holds the channel's other end till it exits
    if status is not None:
        return status
    if relayed:  # it ended of the signal it was sent: so does this process, as a cold one would
        signal.signal(relayed[-1], signal.SIG_DFL)
        os.kill(os.getpid(), relayed[-1])
    print("error: the command's process ended without reporting a status (killed?)",
          file=sys.stderr)
    return 1


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


@contextmanager
def _relaying(pid: int | None) -> Iterator[list[int]]:
    """Pass SIGINT (Ctrl-C), SIGTERM and SIGHUP on to the child (None: unknown, the signals
    keep their handlers); yields the signals relayed. Ctrl-Z stops both, ``fg`` continues both.
    Through a pidfd: the kernel reaps the child by itself, so its pid could be reused."""
    relayed: list[int] = []
    if pid is None:
        yield relayed
        return
    try:
        pidfd: int | None = os.pidfd_open(pid)
    except ProcessLookupError:  # done already: nothing left to signal
        pidfd = None

    def send(signum: int) -> None:
        if pidfd is not None:
            try:
                signal.pidfd_send_signal(pidfd, signum)
            except ProcessLookupError:
                pass

    def relay(signum: int, _frame: object) -> None:
        relayed.append(signum)
        send(signum)

    def suspend(_signum: int, _frame: object) -> None:
        # The child leads a session of its own, with no terminal: the kernel drops a SIGTSTP
        # there (an orphaned process group), so it is stopped outright; then this process stops
        # as the terminal asked, and continues both when resumed.
        send(signal.SIGSTOP)
        signal.signal(signal.SIGTSTP, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGTSTP)
        signal.signal(signal.SIGTSTP, suspend)  # here again after SIGCONT
        send(signal.SIGCONT)

    previous = {sig: signal.signal(sig, relay) for sig in RELAYED}
    previous[signal.SIGTSTP] = signal.signal(signal.SIGTSTP, suspend)
    try:
        yield relayed
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if pidfd is not None:
            os.close(pidfd)


def _read_status(channel: socket.socket) -> int | None:
    """The exit status the child writes before it exits; None at end-of-file without one."""
    data = b""
    while not data.endswith(b"\n") and (chunk := channel.recv(64)):
        data += chunk
    text = data.decode(errors="replace").strip()
    return int(text) if text.lstrip("-").isdigit() else None


# -- the child's side ------------------------------------------------------------------------------


def take_streams(request: dict, fds: Sequence[int]) -> Caller:
    """In the warm child: take the caller's standard streams and umask; returns the link to the
    caller that reports the command's exit status."""
    if len(fds) != len(STREAMS) + 1:
        raise ValueError(f"a forwarded command passes {len(STREAMS) + 1} descriptors, "
                         f"not {len(fds)}")
    for target, fd in zip(STREAMS, fds[:-1], strict=True):
        os.dup2(fd, target)
        os.close(fd)
    os.umask(int(request["umask"]))
    # The parent's stdout was its log file (block-buffered): a line shows when it is printed.
    sys.stdout.reconfigure(line_buffering=True)
    return Caller(fds[-1])


class Caller:
    """The forwarded command's side of its status channel. If the caller goes away before the
    command has reported (killed, its terminal closed), this process gets SIGHUP, as a command
    whose terminal closed would."""

    def __init__(self, channel: int) -> None:
        import threading  # here, not at the top: a caller must not pay for it

        self._channel: int | None = channel
        threading.Thread(target=self._hang_up_when_gone, args=(os.dup(channel),),
                         name="lab2market-caller", daemon=True).start()

    def _hang_up_when_gone(self, channel: int) -> None:
        with socket.socket(fileno=channel) as sock:
            try:
                gone = sock.recv(1) == b""  # the caller never writes: end-of-file is its end
            except OSError:
                return
        if gone and self._channel is not None:
            os.kill(os.getpid(), signal.SIGHUP)

    def report(self, code: int) -> None:
        """Tell the caller the exit status (it exits with it), once; as soon as the command's
        outcome is known, before the workspace closes (SQLite's checkpoint, ~10 ms, is no
        wait of the caller's). Its streams are let go first, so a reader of its output (a pipe)
        sees the end now, not after this process has torn down its memory."""
        channel, self._channel = self._channel, None
        if channel is None:
            return
        sys.stdout.flush()
        sys.stderr.flush()
        null = os.open(os.devnull, os.O_RDWR)
        for fd in STREAMS:
            os.dup2(null, fd)
        os.close(null)
        try:
            os.write(channel, f"{code}\n".encode())
        except OSError:
            pass  # the caller is gone
        os.close(channel)
