"""Export bundles on disk: where they live, how they are written, listed, zipped and verified.

A bundle is a folder ``runs/<run_id>/export/<name>/`` (``onnx-fp32``, ``onnx-int8``,
``torchscript-fp32``) holding the model file, ``labels.json``, ``preprocess.json``,
``reference.json`` (the test split's confidences, for drift), ``model_card.md``, a
``Dockerfile`` with its ``requirements.txt``, the server (ONNX only: the ``runtime/`` package
and its ``serve.py`` launcher) and ``manifest.json`` listing every other file with its sha256.

A bundle appears only when complete: it is built in a hidden staging folder
(``export/.staging-<pid>-*``) and renamed into place in one step, its zip likewise; a reader never
sees half a bundle, and what a killed export left behind is removed by the next one.
Torch-free: the Deploy page uses it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.deploy.card import SERVE_LAUNCHER
from core.deploy.runtime.errors import BundleError
from core.deploy.runtime.manifest import MANIFEST, read_manifest, verify_bundle
from core.errors import InvalidBundle, InvalidName, RunNotFound
from core.workspace import check_name, is_valid_name

if TYPE_CHECKING:
    from core.workspace import Workspace

FORMATS = ("onnx", "torchscript")
QUANTIZATIONS = ("int8",)
LATENCY_FILE = "latency.json"
RUNTIME_DIR = Path(__file__).resolve().parent / "runtime"
_LEFTOVERS = (".staging-", ".old-", ".zip-")  # hidden names of unfinished work, then a pid


def export_dir(ws: Workspace, run_id: str) -> Path:
    return ws.run_dir(run_id) / "export"


def serve_dir(ws: Workspace, run_id: str) -> Path:
    """Where a run's server keeps its request log, its state file and its token."""
    return ws.run_dir(run_id) / "serve"


def bundle_name(fmt: str, quantize: str | None = None) -> str:
    return f"{fmt}-{quantize or 'fp32'}"


def staging_dir(ws: Workspace, run_id: str) -> Path:
    """A new hidden folder to build a bundle in (its name carries this process's pid)."""
    folder = export_dir(ws, run_id)
    folder.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f".staging-{os.getpid()}-", dir=folder))


def add_server(folder: Path) -> None:
    """Put the serving runtime into a bundle: the ``runtime/`` package whole (the very code the
    project decodes, preprocesses and serves with) and its ``serve.py`` launcher."""
    shutil.copytree(RUNTIME_DIR, folder / "runtime",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    (folder / "serve.py").write_text(SERVE_LAUNCHER)


def clean_leftovers(ws: Workspace, run_id: str) -> list[str]:
    """Remove what exports killed mid-way left in the run's export folder; the names removed.

    Only leftovers of processes that are gone: a concurrent export keeps its staging folder.
    """
    folder = export_dir(ws, run_id)
    removed = []
    for path in folder.iterdir() if folder.is_dir() else ():
        pid = _leftover_pid(path.name)
        if pid is None or _alive(pid):
            continue
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path, ignore_errors=True)
        else:
            path.unlink(missing_ok=True)
        removed.append(path.name)
    return removed


def publish(staging: Path, target: Path) -> Path:
    """Move a finished staging folder to ``target`` (replacing an older bundle), with its zip.

    The zip is written (hidden) before anything moves, so a full disk leaves the old bundle as
    it was; then two renames put the folder and its zip in place.
    """
    pending = target.with_name(f".zip-{os.getpid()}-{target.name}")
    old = target.with_name(f".old-{os.getpid()}-{target.name}") if target.exists() else None
    try:
        make_zip(staging, name=target.name, dest=pending)
        if old is not None:
            os.replace(target, old)
        os.replace(staging, target)
    except BaseException:
        pending.unlink(missing_ok=True)
        if old is not None and old.exists() and not target.exists():
            os.replace(old, target)  # put the previous bundle back
        raise
    os.replace(pending, zip_path(target))
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    return target


def zip_path(folder: Path) -> Path:
    return folder.with_name(folder.name + ".zip")


def make_zip(folder: Path, name: str | None = None, dest: Path | None = None) -> Path:
    """A zip of the files the manifest lists, under a ``<run>-<bundle>/`` folder.

    Written to ``dest`` as is (the caller moves it into place), else to ``<bundle>.zip``
    beside the bundle through a hidden temp file.
    """
    manifest = read_manifest(folder)
    name = name or folder.name
    target = dest or folder.with_name(f".zip-{os.getpid()}-{name}")
    try:
        with zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as zf:
            for entry in [*manifest["files"], MANIFEST]:
                zf.write(folder / entry, f"{manifest.get('run_id', 'run')}-{name}/{entry}")
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    if dest is None:
        os.replace(target, zip_path(folder))
        return zip_path(folder)
    return target


def list_bundles(ws: Workspace, run_id: str) -> list[dict[str, Any]]:
    """The manifests of a run's bundles (newest first), each with ``path`` and ``zip`` added.

    Cheap (no hashing): for listing. Serving verifies every file (``verify``). Hidden folders
    (a bundle being built) are never listed. ``InvalidName`` / ``RunNotFound`` for a bad id.
    """
    folder = existing_run(ws, run_id) / "export"
    if not folder.is_dir():
        return []
    found = []
    for path in folder.iterdir():
        if path.name.startswith(".") or not (path / MANIFEST).is_file():
            continue
        try:
            manifest = read_manifest(path)
        except BundleError:
            continue
        zipped = zip_path(path)
        found.append({**manifest, "path": str(path),
                      "zip": str(zipped) if zipped.is_file() else None})
    return sorted(found, key=lambda m: m.get("created_at", ""), reverse=True)


def verify(folder: Path) -> dict[str, Any]:
    """The manifest of a bundle whose every file matches its sha256, else ``InvalidBundle``."""
    try:
        return verify_bundle(Path(folder))
    except BundleError as exc:
        raise InvalidBundle(str(exc)) from None


def existing_run(ws: Workspace, run_id: str) -> Path:
    """The folder of run ``run_id``: the id is checked before any path is built."""
    folder = ws.run_dir(run_id)
    if not folder.is_dir():
        raise RunNotFound(f"No run {run_id} in {ws.home}. List runs with `python -m core runs`.")
    return folder


def resolve_bundle(ws: Workspace, target: str, name: str | None = None) -> Path:
    """``target`` is a run id (its newest ONNX bundle, or the bundle ``name``), or the path of a
    bundle folder (one holding a manifest; it is verified before it is served)."""
    if name is not None:
        check_name("bundle", name)
    if not is_valid_name("run", target):
        path = Path(target).expanduser()
        if (path / MANIFEST).is_file():
            return path.resolve()
        check_name("run", target)  # neither: say what a run id looks like
    bundles = list_bundles(ws, target)
    if name:
        bundles = [b for b in bundles if b.get("bundle") == name]
    else:
        bundles = [b for b in bundles if b.get("format") == "onnx"]
    if not bundles:
        what = f"a bundle named {name!r}" if name else "an ONNX bundle"
        raise InvalidBundle(f"Run {target} has no {what}: export it first with "
                            f"`python -m core export {target} --format onnx`.")
    return Path(bundles[0]["path"])


def run_of_bundle(ws: Workspace, folder: Path) -> str | None:
    """The run id when ``folder`` is a bundle inside this workspace's runs, else None."""
    try:
        parts = Path(folder).resolve().relative_to((ws.home / "runs").resolve()).parts
    except ValueError:
        return None
    if len(parts) != 3 or parts[1] != "export":
        return None
    if not (is_valid_name("run", parts[0]) and is_valid_name("bundle", parts[2])):
        raise InvalidName(f"{folder} is inside this workspace's runs but is not a run's bundle.")
    return parts[0]


def write_json(path: Path, payload: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def read_latency(ws: Workspace, run_id: str) -> dict[str, Any] | None:
    """The run's last latency comparison (``python -m core bench RUN``), if any."""
    return read_json(export_dir(ws, run_id) / LATENCY_FILE)


def _leftover_pid(name: str) -> int | None:
    for prefix in _LEFTOVERS:
        if name.startswith(prefix):
            pid = name[len(prefix):].split("-", 1)[0]
            return int(pid) if pid.isdigit() else None
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True
