"""Checkpoints: plain state dicts plus primitives, written atomically with a checksum, loaded with
``weights_only``.

A checkpoint written by a run looks like::

    {"format": "lab2market/1", "model": state_dict, "optimizer": ..., "scheduler": ...,
     "scaler": ..., "epoch": int, "step": int, "batch_in_epoch": int, "best": float | None,
     "callbacks": {...}, "rng": {"torch": ByteTensor, "cuda": [ByteTensor]},
     "config": RunConfig.to_dict(), "classes": [str], "dataset": str}

Beside each one lies ``<name>.sha256`` (``sha256sum`` format), written in two phases so that a
kill at any moment leaves a pair that verifies: first the new digest *and* the old ones, then the
file is replaced, then the new digest alone. Loading verifies it before anything is unpickled.
"""

from __future__ import annotations

import hashlib
import logging
import os
import pickle
import shutil
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from core.atomic import temp_beside, write_atomic
from core.checkpoint.damage import damaged, describe_path, last_line, load_error
from core.deploy.runtime.manifest import sha256_file
from core.errors import CheckpointDamaged, WeightsNotFound

if TYPE_CHECKING:
    from core.workspace import Workspace

log = logging.getLogger(__name__)

FORMAT = "lab2market/1"
_PREFIXES = ("module.", "_orig_mod.")
_CHUNK = 1 << 20
PAUSE_ENV = "LAB2MARKET_PAUSE_AT"  # test hook: see ``_pause_point``


# -- writing -------------------------------------------------------------------------------------


def save_checkpoint(state: dict[str, Any], path: Path, copies: tuple[Path, ...] = ()) -> str:
    """Write ``state`` to ``path`` (and to each of ``copies``, e.g. ``best.pt``) atomically,
    each with its checksum; returns the sha256.

    Every file is written to a temp file first; the copies are put in place before ``path``, so
    a kill in between leaves an older ``last.pt`` whose resume redoes the same epoch (and
    rewrites the same ``best.pt``). A full disk raises the ``OSError`` itself (torch wraps it in
    a RuntimeError), and leaves every previous file and checksum as they were.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temps: list[Path] = []
    try:
        temps.append(_write_temp(state, path))
        digest = sha256_file(temps[0])
        for copy in copies:
            temps.append(_copy_temp(temps[0], Path(copy)))
            if sha256_file(temps[-1]) != digest:
                raise OSError(f"the copy of {path.name} to {Path(copy).name} differs")
            _pause_point(f"copy:{Path(copy).name}")
        for tmp, target in zip(temps[1:], copies, strict=True):
            _install(tmp, Path(target), digest)
        _install(temps[0], path, digest)
    except BaseException:
        for tmp in temps:
            tmp.unlink(missing_ok=True)
        raise
    _pause_point(f"saved:{path.name}")
    return digest


def _write_temp(state: dict[str, Any], path: Path) -> Path:
    import torch

    with temp_beside(path) as (fh, tmp):
        try:
            torch.save(state, fh)
        except RuntimeError as exc:
            if isinstance(exc.__context__, OSError):  # e.g. ENOSPC inside the zip writer
                raise exc.__context__ from None
            raise
    return tmp


def _copy_temp(src: Path, dst: Path) -> Path:
    with temp_beside(dst) as (out, tmp), open(src, "rb") as source:
        shutil.copyfileobj(source, out, _CHUNK)
    return tmp


def _install(tmp: Path, path: Path, digest: str) -> None:
    """Replace ``path`` by ``tmp``; the checksum file accepts both while the swap happens."""
    try:
        previous = read_checksums(path) or []
    except CheckpointDamaged:
        previous = []
    _write_checksums(path, [digest, *[d for d in previous if d != digest][:2]])
    os.replace(tmp, path)
    _write_checksums(path, [digest])


def _write_checksums(path: Path, digests: list[str]) -> None:
    write_atomic(checksum_path(path),
                 lambda fh: fh.writelines(f"{d}  {path.name}\n" for d in digests), mode="w")


def remove_temp_files(folder: Path) -> list[Path]:
    """Remove the temp files a killed writer left in ``folder`` (``.last.pt.*.tmp``, ...).

    Call it only when no other process writes there (a run's job, when it starts or resumes).
    """
    removed = []
    for tmp in Path(folder).glob(".*.tmp") if Path(folder).is_dir() else ():
        tmp.unlink(missing_ok=True)
        removed.append(tmp)
    if removed:
        log.info("Removed %d leftover temp file(s) in %s", len(removed), folder)
    return removed


_pause_hits: dict[str, int] = {}


def _pause_point(name: str) -> None:
    """Test hook for fault injection: with ``LAB2MARKET_PAUSE_AT=name`` (or ``name#k``, the k-th
    time it is reached) the process touches the file named by ``LAB2MARKET_PAUSE_MARKER`` and
    sleeps here, so a test can kill it at exactly this moment. Unset (always, outside tests)
    it costs one environment lookup."""
    wanted = os.environ.get(PAUSE_ENV)
    if not wanted or wanted.split("#")[0] != name:
        return
    _pause_hits[name] = _pause_hits.get(name, 0) + 1
    nth = int(wanted.split("#")[1]) if "#" in wanted else 1
    if _pause_hits[name] != nth:
        return
    marker = os.environ.get("LAB2MARKET_PAUSE_MARKER")
    if marker:
        Path(marker).touch()
    time.sleep(float(os.environ.get("LAB2MARKET_PAUSE_S", "600")))


# -- checksums -----------------------------------------------------------------------------------


def checksum_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".sha256")


def read_checksums(path: Path) -> list[str] | None:
    """The digests ``path`` may have (usually one), or None if it has no checksum file."""
    target = checksum_path(path)
    try:
        text = target.read_text(encoding="ascii")
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as exc:
        raise damaged(path, f"its checksum file {target.name} is unreadable ({exc})") from None
    digests = [line.split()[0].lower() for line in text.splitlines() if line.strip()]
    if not digests or not all(len(d) == 64 and set(d) <= set("0123456789abcdef")
                              for d in digests):
        raise damaged(path, f"its checksum file {target.name} is malformed (delete that file "
                            "to load the checkpoint unchecked)")
    return digests


def verify_checksum(path: Path, expect_checksum: bool = False) -> None:
    """Raise ``CheckpointDamaged`` when ``path`` differs from what was written.

    A file without a checksum (written before checksums existed, or not by a run) is accepted;
    with ``expect_checksum`` that is logged as a warning.
    """
    digests = read_checksums(path)
    if digests is None:
        if expect_checksum:
            log.warning("Checkpoint %s has no checksum file (written by an older version); "
                        "loading it unchecked", describe_path(path))
        return
    if sha256_file(path) not in digests:
        raise damaged(path, f"its contents changed after it was written (sha256 does not match "
                            f"{checksum_path(path).name})")


# -- loading -------------------------------------------------------------------------------------


def load_checkpoint(path: Path, expect_checksum: bool = False) -> dict[str, Any]:
    """Load a checkpoint or state dict without ever unpickling arbitrary objects.

    Every failure is one line: ``WeightsNotFound`` (no file), ``UnsafeCheckpoint`` (Python
    objects that could run code) or ``CheckpointDamaged`` (anything else, checksum included).
    """
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsNotFound(f"Weights file not found: {path}")
    verify_checksum(path, expect_checksum)
    if path.stat().st_size == 0:
        raise damaged(path, "the file is empty")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError, ValueError, KeyError,
            IndexError, TypeError, AttributeError, UnicodeDecodeError) as exc:
        raise load_error(path, exc) from None
    if not isinstance(state, dict):
        raise damaged(path, f"it holds a {type(state).__name__}, not a state dict")
    return state


def load_model_state(model: Any, state: dict[str, Any], path: Path) -> None:
    """``model.load_state_dict(state)`` (strict), or one line saying what does not fit."""
    expected = model.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    mismatched = [f"{k} ({_shape(state[k])} vs {_shape(v)} in the model)"
                  for k, v in expected.items() if k in state and _shape(state[k]) != _shape(v)]
    problems = [f"{label} {_few(items)}" for label, items in
                (("missing keys", missing), ("unexpected keys", unexpected),
                 ("wrong shapes for", mismatched)) if items]
    if problems:
        raise damaged(path, f"it does not fit the model ({'; '.join(problems)})")
    try:
        model.load_state_dict(state, strict=True)
    except (RuntimeError, TypeError, ValueError) as exc:
        raise damaged(path, f"it does not fit the model ({last_line(str(exc))[:160]})") from None


def _shape(value: Any) -> list[int] | str:
    shape = getattr(value, "shape", None)
    return list(shape) if shape is not None else type(value).__name__


def _few(items: list[str], n: int = 3) -> str:
    more = f" (+{len(items) - n} more)" if len(items) > n else ""
    return ", ".join(items[:n]) + more


# -- state dicts and run paths -------------------------------------------------------------------


def clean_state_dict(state: dict[str, Any]) -> dict[str, Any]:
    """Strip the ``module.`` (DDP) and ``_orig_mod.`` (torch.compile) prefixes from keys."""
    cleaned = {}
    for key, value in state.items():
        changed = True
        while changed:
            changed = False
            for prefix in _PREFIXES:
                if key.startswith(prefix):
                    key = key[len(prefix):]
                    changed = True
        cleaned[key] = value
    return cleaned


def model_state(checkpoint: dict[str, Any]) -> dict[str, Any]:
    """The model weights of a run checkpoint, or the dict itself if it is a bare state dict."""
    if checkpoint.get("format") == FORMAT and isinstance(checkpoint.get("model"), dict):
        return clean_state_dict(checkpoint["model"])
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(checkpoint.get(key), dict):
            return clean_state_dict(checkpoint[key])
    return clean_state_dict(checkpoint)


def run_checkpoint(ws: Workspace, run_id: str) -> Path | None:
    """The checkpoint a trained run is used with: ``best.pt``, else ``last.pt``, else None.

    An ensemble's is its fitted combiner, ``ensemble.json`` (never loaded with torch: its
    members' weights are their own checkpoints), so its stored results are keyed on it too.
    """
    folder = ws.run_dir(run_id)
    for path in (folder / "checkpoints" / "best.pt", folder / "checkpoints" / "last.pt",
                 folder / "ensemble.json"):
        if path.is_file():
            return path
    return None


def file_signature(path: Path) -> str:
    """Changes whenever the file does; results derived from a checkpoint are keyed on it."""
    stat = path.stat()
    return hashlib.sha1(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]


def checkpoint_signature(ws: Workspace, run_id: str) -> str | None:
    """The signature of ``run_checkpoint`` (None before the first checkpoint), without torch."""
    path = run_checkpoint(ws, run_id)
    return file_signature(path) if path is not None else None
