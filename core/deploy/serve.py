"""The REST inference server, inside the project: ``python -m core serve RUN|BUNDLE``.

The app, its decoding and its preprocessing are the serving runtime's (``core.deploy.runtime``),
the very code every ONNX bundle carries, so the path the project tests is the one it ships.
Here it gets what the project adds: bundles found by run id (the id checked before any path is
built), the project's own record of each export checked (a bundle whose manifest is not the one
this workspace wrote is refused, as is any file that differs from its manifest), a request log
inside the workspace that the Deploy page reads, and a state file. Never imports torch; FastAPI
and onnxruntime load on first use.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from core.deploy.bundle import resolve_bundle, run_of_bundle, serve_dir, verify
from core.deploy.runtime.errors import BundleError, SettingsError
from core.deploy.runtime.manifest import MANIFEST, sha256_file
from core.deploy.runtime.model import BundleModel
from core.deploy.runtime.settings import Settings, settings_from_args
from core.errors import InvalidBundle, InvalidConfig

if TYPE_CHECKING:
    from core.workspace import Workspace

log = logging.getLogger(__name__)

STATE_FILE = "server.json"
LOG_FILE = "requests.jsonl"
TOKEN_FILE = "token"
OUTSIDE_LOGS = "serve"  # <home>/serve/<manifest digest>/: logs of bundles from other folders


def load_model(ws: Workspace, target: str, name: str | None = None,
               threads: int = 0) -> tuple[BundleModel, str | None]:
    """The verified bundle's model, and the run it belongs to (None for an outside folder)."""
    folder = resolve_bundle(ws, target, name)
    run_id = run_of_bundle(ws, folder)
    verify(folder)
    if run_id:
        check_recorded(ws, run_id, folder)
    try:
        return BundleModel(folder, threads=threads), run_id
    except BundleError as exc:
        raise InvalidBundle(str(exc)) from None


def check_recorded(ws: Workspace, run_id: str, folder: Path) -> None:
    """The manifest must be the one this workspace recorded when it exported the bundle."""
    events = ws.store.get_events(run_id, kind="export")
    recorded = [e.data.get("manifest_sha256") for e in events
                if e.data.get("bundle") == folder.name]
    if not recorded or recorded[-1] != sha256_file(folder / MANIFEST):
        raise InvalidBundle(f"{folder} is not the bundle this workspace exported for run "
                            f"{run_id} (its manifest differs from the recorded one); it is "
                            "refused. Export it again.")


def log_path(ws: Workspace, run_id: str | None, model: BundleModel) -> Path:
    """Where the request log goes by default: always inside the workspace (the run's serve
    folder; for a bundle folder from elsewhere, ``serve/<manifest digest>/``)."""
    if run_id:
        return serve_dir(ws, run_id) / LOG_FILE
    return ws.home / OUTSIDE_LOGS / model.manifest_sha256[:12] / LOG_FILE


def make_settings(ws: Workspace, args: argparse.Namespace, run_id: str | None,
                  model: BundleModel) -> Settings:
    """The server's settings from its flags (``--log`` wins over the default log path)."""
    path = Path(args.log) if args.log else log_path(ws, run_id, model)
    try:
        return settings_from_args(args, path)
    except SettingsError as exc:
        raise InvalidConfig(str(exc)) from None


def build_app(model: BundleModel, settings: Settings, on_startup: Callable | None = None):
    from core.deploy.runtime.app import create_app

    return create_app(model, settings, on_startup=on_startup)


def check_port(host: str, port: int) -> None:
    """Fail fast, with a clear message, when the port is taken (uvicorn would exit(1))."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError as exc:
            raise InvalidConfig(f"Cannot listen on {host}:{port} ({exc.strerror}): pick another "
                                "port.") from None


def serve(model: BundleModel, settings: Settings, host: str = "127.0.0.1", port: int = 8000,
          state_dir: Path | None = None, on_ready: Callable[[str], None] | None = None) -> None:
    """Serve until interrupted. ``state_dir`` gets ``server.json`` (URL, pid, bundle) while up."""
    from core.deploy.runtime.server import run

    check_port(host, port)
    url = f"http://{'[' + host + ']' if ':' in host else host}:{port}"
    state = state_dir / STATE_FILE if state_dir else None

    def ready() -> None:
        if state:
            state.parent.mkdir(parents=True, exist_ok=True)
            state.write_text(json.dumps({
                "url": url, "pid": os.getpid(), "started_at": time.time(),
                "bundle": str(model.folder), "model_version": model.version,
                "token_required": settings.token is not None,
                "max_concurrency": settings.max_concurrency, "modality": model.modality,
                "log": str(settings.log_path) if settings.log_path else None}))
        log.warning("Serving %s on %s (API docs at %s/docs)", model.version, url, url)
        if on_ready:
            on_ready(url)

    try:
        run(build_app(model, settings, on_startup=ready), host, port, settings)
    except SystemExit as exc:  # uvicorn exits when it cannot start
        raise InvalidConfig(f"The server could not start on {host}:{port} (exit {exc.code}).") \
            from None
    finally:
        if state:
            state.unlink(missing_ok=True)


def read_state(ws: Workspace, run_id: str) -> dict | None:
    """``server.json`` of the run's server, if one wrote it (it may be stale after a kill)."""
    try:
        return json.loads((serve_dir(ws, run_id) / STATE_FILE).read_text())
    except (OSError, ValueError):
        return None


def write_token(ws: Workspace, run_id: str, token: str) -> Path:
    """Keep a token in a file only the owner can read (never on a command line)."""
    folder = serve_dir(ws, run_id)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / TOKEN_FILE
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token)
    os.chmod(path, 0o600)
    return path
