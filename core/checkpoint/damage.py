"""Why a checkpoint cannot be used, in one line: damaged bytes told apart from a pickle that
would run code (read with ``pickletools``, never executed), with what to do about it."""

from __future__ import annotations

import io
import pickle
import pickletools
import zipfile
from pathlib import Path

from core.errors import CheckpointDamaged, UnsafeCheckpoint

# Opcodes that build arbitrary Python objects: a pickle holding them is refused as unsafe.
_CODE_OPCODES = {"GLOBAL", "STACK_GLOBAL", "INST", "OBJ", "REDUCE", "NEWOBJ", "NEWOBJ_EX"}
_HEAD_BYTES = 64 << 20  # how much of a file is parsed for its pickle opcodes


def load_error(path: Path, exc: BaseException) -> Exception:
    """Tell a pickle that would run code (refused) from bytes that are merely damaged."""
    text = f"{exc} {exc.__context__ or ''}"
    if isinstance(exc, pickle.UnpicklingError) and "GLOBAL" in text:
        return _unsafe(path, last_line(str(exc.__context__ or exc)))
    if _starts_like_zip(path):
        return damaged(path, f"it is truncated or not a valid PyTorch archive "
                             f"({last_line(str(exc))[:120]})")
    found = _pickle_opcodes(path)
    if found is None:
        kind = "a text file" if _looks_like_text(path) else "unreadable bytes"
        return damaged(path, f"it is not a PyTorch checkpoint ({kind})")
    if found & _CODE_OPCODES:
        return _unsafe(path, f"opcodes {', '.join(sorted(found & _CODE_OPCODES))}")
    return damaged(path, f"it is not a PyTorch checkpoint ({last_line(str(exc))[:120]})")


def _starts_like_zip(path: Path) -> bool:
    """A zip's local header magic: a truncated archive has it but no central directory."""
    with open(path, "rb") as fh:
        return fh.read(4) == b"PK\x03\x04" or zipfile.is_zipfile(fh)


def _pickle_opcodes(path: Path, limit: int = 1_000_000) -> set[str] | None:
    """The opcodes of the first pickle in ``path`` (read, never executed), None if not one."""
    found: set[str] = set()
    try:
        with open(path, "rb") as fh:
            stream = io.BytesIO(fh.read(_HEAD_BYTES))
        for n, (op, _, _) in enumerate(pickletools.genops(stream)):
            found.add(op.name)
            if n >= limit:
                break
    except Exception:  # noqa: BLE001 - any parse error means "not a pickle"
        return None
    return found


def _looks_like_text(path: Path) -> bool:
    with open(path, "rb") as fh:
        head = fh.read(4096)
    try:
        head.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return all(c >= 32 or c in (9, 10, 13) for c in head)


def _unsafe(path: Path, detail: str) -> UnsafeCheckpoint:
    return UnsafeCheckpoint(
        f"Refused to load {path.name}: it contains Python objects other than tensors and "
        f"primitives, which could run code ({detail}). Re-save it as a plain state dict.")


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else text


def damaged(path: Path, reason: str) -> CheckpointDamaged:
    """The one-line error for a checkpoint that cannot be used, with what to do about it."""
    path = Path(path)
    if _in_run(path) and path.name == "best.pt":
        hint = "delete it (and best.pt.sha256) to fall back to last.pt, or retrain the run"
    elif _in_run(path) and path.name == "last.pt":
        hint = ("delete it (and last.pt.sha256) and resume to restart from epoch 1, or "
                "retrain the run")
    else:
        hint = "re-save or re-download it"
    return CheckpointDamaged(f"checkpoint {describe_path(path)} is damaged: {reason}; {hint}")


def describe_path(path: Path) -> str:
    """``runs/<id>/checkpoints/<name>`` for a run's checkpoint, else the path as given."""
    path = Path(path)
    if _in_run(path):
        return "/".join(path.parts[-4:])
    return str(path)


def _in_run(path: Path) -> bool:
    parts = path.parts
    return len(parts) >= 4 and parts[-2] == "checkpoints" and parts[-4] == "runs"
