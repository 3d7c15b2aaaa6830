"""Export bundles on disk: where they live, how they are written, listed, zipped and verified.

A bundle is a folder ``runs/<run_id>/export/<name>/`` (``onnx-fp32``, ``onnx-int8``,
``torchscript-fp32``) holding the model file, ``labels.json``, ``preprocess.json``,
``reference.json`` (the test split's confidences, for drift), ``model_card.md``, a
``Dockerfile`` with its ``requirements.txt``, the server (ONNX only) and ``manifest.json``
listing every other file with its sha256. It is built in a staging folder and moved into place
in one step, so a reader never sees half a bundle. Torch-free: the Deploy page uses it.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from core.deploy.runtime import (
    MANIFEST,
    PRODUCER,
    BundleError,
    read_manifest,
    sha256_file,
    verify_bundle,
)
from core.errors import InvalidBundle, RunNotFound
from core.workspace import resolve_home, run_dir

FORMATS = ("onnx", "torchscript")
QUANTIZATIONS = ("int8",)
FORMAT_VERSION = 1
LATENCY_FILE = "latency.json"


def export_dir(home: Path, run_id: str) -> Path:
    return run_dir(home, run_id) / "export"


def serve_dir(home: Path, run_id: str) -> Path:
    """Where a run's server keeps its request log, its state file and its token."""
    return run_dir(home, run_id) / "serve"


def bundle_name(fmt: str, quantize: str | None = None) -> str:
    return f"{fmt}-{quantize or 'fp32'}"


def staging_dir(home: Path, run_id: str) -> Path:
    folder = export_dir(home, run_id)
    folder.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=".staging-", dir=folder))


def write_manifest(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Hash every file of ``folder`` into the manifest and write it; returns the manifest."""
    files = {}
    for path in sorted(folder.iterdir()):
        if path.name == MANIFEST or not path.is_file():
            continue
        files[path.name] = {"sha256": sha256_file(path), "bytes": path.stat().st_size}
    manifest = {"producer": PRODUCER, "format_version": FORMAT_VERSION, **manifest,
                "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def publish(staging: Path, target: Path) -> Path:
    """Move a finished staging folder to ``target`` (replacing an older bundle), and zip it."""
    old = None
    if target.exists():
        old = target.with_name(f".old-{target.name}-{os.getpid()}")
        os.replace(target, old)
    os.replace(staging, target)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
    make_zip(target)
    return target


def zip_path(folder: Path) -> Path:
    return folder.with_name(folder.name + ".zip")


def make_zip(folder: Path) -> Path:
    """``<bundle>.zip`` beside the bundle, with the files under a ``<run>-<bundle>/`` folder."""
    manifest = read_manifest(folder)
    prefix = f"{manifest.get('run_id', 'run')}-{folder.name}"
    target = zip_path(folder)
    tmp = target.with_name(f".{target.name}.tmp")
    with zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in [*manifest["files"], MANIFEST]:
            zf.write(folder / name, f"{prefix}/{name}")
    os.replace(tmp, target)
    return target


def list_bundles(home: str | Path | None, run_id: str) -> list[dict[str, Any]]:
    """The manifests of a run's bundles (newest first), each with ``path`` and ``zip`` added.

    Cheap (no hashing): for listing. Serving verifies every file (``verify``).
    """
    folder = export_dir(resolve_home(home), run_id)
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


def resolve_bundle(target: str, home: str | Path | None = None, name: str | None = None) -> Path:
    """``target`` is a bundle folder, or a run id (its newest ONNX bundle, or ``name``)."""
    path = Path(target).expanduser()
    if (path / MANIFEST).is_file():
        return path.resolve()
    home = resolve_home(home)
    if not run_dir(home, target).is_dir():
        raise RunNotFound(f"{target!r} is neither a bundle folder (with {MANIFEST}) nor a run "
                          "id. List runs with `python -m core runs`.")
    bundles = list_bundles(home, target)
    if name:
        bundles = [b for b in bundles if b.get("bundle") == name]
    else:
        bundles = [b for b in bundles if b.get("format") == "onnx"]
    if not bundles:
        what = f"a bundle named {name!r}" if name else "an ONNX bundle"
        raise InvalidBundle(f"Run {target} has no {what}: export it first with "
                            f"`python -m core export {target} --format onnx`.")
    return Path(bundles[0]["path"])


def run_of_bundle(folder: Path, home: Path) -> str | None:
    """The run id when ``folder`` is a bundle inside this workspace's runs, else None."""
    try:
        parts = Path(folder).resolve().relative_to((home / "runs").resolve()).parts
    except ValueError:
        return None
    return parts[0] if len(parts) == 3 and parts[1] == "export" else None


def write_json(path: Path, payload: Any) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(payload, indent=2, default=str))
    os.replace(tmp, path)


def read_json(path: Path) -> Any:
    try:
        return json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None


def read_latency(home: str | Path | None, run_id: str) -> dict[str, Any] | None:
    """The run's last latency comparison (``python -m core bench RUN``), if any."""
    return read_json(export_dir(resolve_home(home), run_id) / LATENCY_FILE)
