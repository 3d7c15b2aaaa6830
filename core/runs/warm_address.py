"""How to reach the warm job parent (:mod:`core.runs.warm`): the key that names it (this
installation and its code), its socket, and one request. Only the standard library, and only its
light modules: ``python -m core`` imports this first of all, to hand its command to a warm
process (:mod:`core.runs.warm_cli`), and a cold command pays for it too.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import sys
from collections.abc import Mapping, Sequence

WARM_ENV = "LAB2MARKET_WARM"  # "0": every job and command starts a fresh interpreter
REPLY_TIMEOUT_S = 5.0
# The code a parent has loaded (a change of any module here gets a new parent), in its project.
CORE_DIR = os.path.dirname(os.path.dirname(os.path.realpath(__file__)))
PROJECT_DIR = os.path.dirname(CORE_DIR)


def enabled(env: Mapping[str, str]) -> bool:
    """Warm starts are on unless turned off, on Linux (abstract sockets, SO_PEERCRED)."""
    return env.get(WARM_ENV) != "0" and sys.platform.startswith("linux")


def parent_key(env: Mapping[str, str]) -> str:
    """Names the parent that may serve a job: this installation (``install_id``) and its code."""
    count = newest = 0  # os.walk: a third of pathlib's rglob (~0.6 ms), paid by every command
    for folder, subfolders, names in os.walk(CORE_DIR):
        subfolders[:] = [name for name in subfolders if name != "__pycache__"]
        for name in names:
            if name.endswith(".py"):
                count += 1
                newest = max(newest, os.stat(os.path.join(folder, name)).st_mtime_ns)
    stamp = f"{count}:{newest}"
    return f"{install_id(env)}-{hashlib.sha256(stamp.encode()).hexdigest()[:12]}"


def install_id(env: Mapping[str, str]) -> str:
    """This user, interpreter, import path and project folder: parents of one installation
    supersede each other as its code changes."""
    parts = (str(os.getuid()), sys.executable, env.get("PYTHONPATH", ""), PROJECT_DIR)
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:12]


def socket_address(key: str) -> str:
    return f"\0lab2market-warm-{key}"  # abstract: no file to leave behind, no path length limit


def send_request(key: str, request: dict, fds: Sequence[int] = ()) -> socket.socket:
    """Connect to the parent of ``key`` and send it ``request``; the connection its reply comes
    on. OSError: it was not sent (ConnectionRefusedError: no parent answers; PermissionError:
    the socket is another user's)."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(REPLY_TIMEOUT_S)
        conn.connect(socket_address(key))
        # An abstract socket has no owner or mode: anyone may bind the name first. A request
        # carries the environment (tokens, store passwords) and may carry the terminal itself,
        # so it goes only to a process of this user (the parent checks its callers the same way).
        uid = peer_uid(conn)
        if uid != os.getuid():
            raise PermissionError(f"the warm parent's socket is held by uid {uid}, not this "
                                  f"user's ({os.getuid()})")
        data = json.dumps(request).encode() + b"\n"
        sent = socket.send_fds(conn, [data], list(fds)) if fds else 0
        conn.sendall(data[sent:])
    except BaseException:
        conn.close()
        raise
    return conn


def peer_uid(conn: socket.socket) -> int:
    """The user of the process at the other end of a connected local socket (``SO_PEERCRED``:
    what the kernel recorded at connect, not what the peer claims)."""
    _, uid, _ = struct.unpack("3i", conn.getsockopt(
        socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i")))
    return uid


def read_reply(conn: socket.socket) -> int:
    """The pid in the parent's reply. ValueError: it refused (it says why), so nothing runs;
    OSError (a timeout): no reply, so whether a child took the request is unknown."""
    reply = json.loads(read_line(conn))
    if "pid" not in reply:
        raise ValueError(reply.get("error", "no pid in the reply"))
    return int(reply["pid"])


def read_line(conn: socket.socket, limit: int = 1 << 20, data: bytes = b"") -> bytes:
    """One newline-ended message (``data``: what was already received of it)."""
    while not data.endswith(b"\n"):
        chunk = conn.recv(65536)
        if not chunk or len(data) > limit:
            raise ValueError("incomplete message")
        data += chunk
    return data
