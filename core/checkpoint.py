"""Checkpoints: plain state dicts plus primitives, written atomically, loaded with weights_only.

A checkpoint written by a run looks like::

    {"format": "lab2market/1", "model": state_dict, "optimizer": ..., "scheduler": ...,
     "scaler": ..., "epoch": int, "step": int, "batch_in_epoch": int, "best": float | None,
     "callbacks": {...}, "rng": {"torch": ByteTensor, "cuda": [ByteTensor]},
     "config": RunConfig.to_dict(), "classes": [str], "dataset": str}
"""

from __future__ import annotations

import hashlib
import os
import pickle
import tempfile
from pathlib import Path
from typing import Any

from core.errors import UnsafeCheckpoint, WeightsNotFound
from core.workspace import resolve_home, run_dir

FORMAT = "lab2market/1"
_PREFIXES = ("module.", "_orig_mod.")


def save_checkpoint(state: dict[str, Any], path: Path) -> None:
    """Write ``state`` to ``path`` atomically: temp file in the same folder, fsync, replace."""
    import torch

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            torch.save(state, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_checkpoint(path: Path) -> dict[str, Any]:
    """Load a checkpoint or state dict without ever unpickling arbitrary objects."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise WeightsNotFound(f"Weights file not found: {path}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        raise UnsafeCheckpoint(
            f"Refused to load {path.name}: it contains Python objects other than tensors and "
            f"primitives, which could run code. Re-save it as a plain state dict. ({exc})"
        ) from None
    except (RuntimeError, EOFError, OSError, ValueError) as exc:
        raise WeightsNotFound(f"Could not read {path.name} as a PyTorch file: {exc}") from None
    if not isinstance(state, dict):
        kind = type(state).__name__
        raise WeightsNotFound(f"{path.name} does not hold a state dict (got {kind}).")
    return state


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
    if checkpoint.get("format") == FORMAT:
        return clean_state_dict(checkpoint["model"])
    for key in ("model", "state_dict", "model_state_dict"):
        if isinstance(checkpoint.get(key), dict):
            return clean_state_dict(checkpoint[key])
    return clean_state_dict(checkpoint)


def run_checkpoint(home: str | Path | None, run_id: str) -> Path | None:
    """The checkpoint a trained run is used with: ``best.pt``, else ``last.pt``, else None."""
    folder = run_dir(resolve_home(home), run_id) / "checkpoints"
    for name in ("best.pt", "last.pt"):
        if (folder / name).is_file():
            return folder / name
    return None


def file_signature(path: Path) -> str:
    """Changes whenever the file does; results derived from a checkpoint are keyed on it."""
    stat = path.stat()
    return hashlib.sha1(f"{path}:{stat.st_size}:{stat.st_mtime_ns}".encode()).hexdigest()[:16]


def checkpoint_signature(home: str | Path | None, run_id: str) -> str | None:
    """The signature of ``run_checkpoint`` (None before the first checkpoint), without torch."""
    path = run_checkpoint(home, run_id)
    return file_signature(path) if path is not None else None
