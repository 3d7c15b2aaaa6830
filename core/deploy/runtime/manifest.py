"""A bundle's ``manifest.json``: every file of the bundle with its sha256, written at export and
checked before a bundle is served. File names are relative POSIX paths inside the bundle
(``model.onnx``, ``runtime/app.py``); anything that could leave the folder is refused."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path, PurePosixPath
from typing import Any

from .errors import BundleError

PRODUCER = "lab2market"
MANIFEST = "manifest.json"
FORMAT_VERSION = 1
# Written by Python next to the code it runs; never part of what was exported.
_NOT_LISTED = ("__pycache__",)


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def bundle_files(folder: Path) -> list[str]:
    """The names of every plain file under ``folder`` (recursively) but the manifest, sorted."""
    folder = Path(folder)
    names = []
    for path in folder.rglob("*"):
        rel = path.relative_to(folder)
        if any(part in _NOT_LISTED for part in rel.parts) or path.is_symlink():
            continue
        if path.is_file() and rel.as_posix() != MANIFEST:
            names.append(rel.as_posix())
    return sorted(names)


def write_manifest(folder: Path, manifest: dict[str, Any]) -> dict[str, Any]:
    """Hash every file of ``folder`` into the manifest and write it; returns the manifest."""
    folder = Path(folder)
    files = {name: {"sha256": sha256_file(folder / name), "bytes": (folder / name).stat().st_size}
             for name in bundle_files(folder)}
    manifest = {"producer": PRODUCER, "format_version": FORMAT_VERSION, **manifest,
                "files": files}
    (folder / MANIFEST).write_text(json.dumps(manifest, indent=2))
    return manifest


def read_manifest(folder: Path) -> dict[str, Any]:
    """The manifest, once its shape and file names are safe (no hashing: see ``verify_bundle``)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise BundleError(f"{folder} has no {MANIFEST}: it is not an exported bundle.")
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise BundleError(f"{path} is not readable JSON ({exc}).") from None
    if not isinstance(manifest, dict) or manifest.get("producer") != PRODUCER:
        raise BundleError(f"{folder} was not exported by Lab2Market; it is refused.")
    files = manifest.get("files")
    if not isinstance(files, dict) or manifest.get("model_file") not in files:
        raise BundleError(f"{path} lists no model file; it is refused.")
    for name in files:
        if not _safe_name(name):
            raise BundleError(f"{path} lists an unsafe file name {name!r}; it is refused.")
    return manifest


def verify_bundle(folder: Path) -> dict[str, Any]:
    """The manifest, once every file it lists matches its sha256; else ``BundleError``."""
    manifest = read_manifest(folder)
    for name, entry in manifest["files"].items():
        if sha256_file(_file(folder, name)) != entry.get("sha256"):
            raise BundleError(f"{name} in {folder} differs from the manifest (sha256): the bundle "
                              "was modified after export and is refused. Export it again.")
    return manifest


def read_verified(folder: Path, name: str, manifest: dict[str, Any]) -> bytes:
    """A file's bytes, hashed as read: what is used is exactly what was checked."""
    data = _file(folder, name).read_bytes()
    if sha256_bytes(data) != manifest["files"][name]["sha256"]:
        raise BundleError(f"{name} in {folder} differs from the manifest; it is refused.")
    return data


def _safe_name(name: object) -> bool:
    if not isinstance(name, str) or not name or "\\" in name or "\x00" in name:
        return False
    path = PurePosixPath(name)
    return (not path.is_absolute() and name != MANIFEST
            and all(part not in ("", ".", "..") for part in name.split("/")))


def _file(folder: Path, name: str) -> Path:
    path = Path(folder)
    for part in PurePosixPath(name).parts:  # a link anywhere on the way could lead outside
        path = path / part
        if path.is_symlink():
            break
    else:
        if path.is_file():
            return path
    raise BundleError(f"{name} is missing from the bundle {folder} (or is not a plain file).")
