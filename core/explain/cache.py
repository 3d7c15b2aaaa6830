"""Explanations stored next to the run, as arrays and JSON (never pickles), and read back
without torch (the dashboard's Explain page reads them).

A result is keyed by (run, checkpoint signature, input sha256, method, effective parameters,
target class): ``runs/<id>/explain/<method>-<key>.npz`` holds the arrays and ``.json`` the rest;
the JSON is written last, so a result with a JSON is complete. Inputs sent from the dashboard
are saved first under ``explain/inputs/<sha256>.png`` (or ``.csv``), so a background task can
read them; the predicted class of an input is kept under ``explain/predictions/``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.atomic import write_atomic
from core.checkpoint import checkpoint_signature  # noqa: F401  (the pages read it from here)
from core.deploy.runtime.manifest import sha256_file  # noqa: F401  (one copy: the runtime's)

if TYPE_CHECKING:
    from core.workspace import Workspace

logger = logging.getLogger(__name__)

ARRAYS = ("attributions", "random_attributions", "probs", "image", "row",
          "deletion_fractions", "deletion_probs", "deletion_random_probs")
EXTRA_ARRAY = "extras_"  # npz prefix of an array-valued extra (e.g. LIME's segment map)
SUMMARY_INPUT = "split:test"  # the input "sha" of a global summary over the test split


@dataclass
class Explanation:
    """One method's explanation of one input for one target class, with its trust checks."""

    run_id: str
    method: str
    modality: str
    display_name: str
    target: int
    target_label: str
    params: dict[str, Any]
    input_sha: str
    signature: str
    classes: list[str]
    attributions: np.ndarray  # (K, H, W) images, (F,) a row, (N, F) a summary
    probs: np.ndarray  # the model's class probabilities for the input (rows: (N, C))
    image: np.ndarray | None = None  # uint8 (H, W[, 3]) as the model saw it
    row: np.ndarray | None = None  # feature values (F,) or (N, F), in feature units
    feature_names: list[str] = field(default_factory=list)
    random_attributions: np.ndarray | None = None  # the sanity check's randomised model
    sanity: dict[str, Any] = field(default_factory=dict)
    deletion: dict[str, Any] = field(default_factory=dict)  # arrays + auc, random_auc
    extras: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0
    created_at: float = 0.0
    key: str = ""

    @property
    def map(self) -> np.ndarray:
        """The signed map shown on the image: attributions summed over channels."""
        return self.attributions.sum(0) if self.attributions.ndim == 3 else self.attributions


def explain_dir(ws: Workspace, run_id: str) -> Path:
    return ws.run_dir(run_id) / "explain"


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def row_sha(row: np.ndarray) -> str:
    """The input hash of a table row: its float32 values (the same from a CSV or a form)."""
    return sha256_bytes(np.ascontiguousarray(row, dtype=np.float32).tobytes())


def cache_key(run_id: str, signature: str, input_sha: str, method: str,
              params: dict[str, Any], target: int) -> str:
    raw = json.dumps([run_id, signature, input_sha, method, params, int(target)], sort_keys=True,
                     default=str)
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def _paths(ws: Workspace, run_id: str, method: str, key: str) -> tuple[Path, Path]:
    stem = explain_dir(ws, run_id) / f"{method}-{key}"
    return stem.with_suffix(".npz"), stem.with_suffix(".json")


def save_explanation(ws: Workspace, result: Explanation) -> Path:
    """Write the arrays, then the JSON (atomically each); returns the JSON's path."""
    npz, meta_path = _paths(ws, result.run_id, result.method, result.key)
    arrays = {name: np.asarray(value) for name in ARRAYS
              if (value := _array(result, name)) is not None}
    arrays.update({EXTRA_ARRAY + k: v for k, v in result.extras.items()
                   if isinstance(v, np.ndarray)})
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    _atomic_write(npz, buf.getvalue())
    meta = {k: v for k, v in asdict(result).items()
            if k not in ARRAYS and k not in ("deletion", "extras")}
    meta["extras"] = {k: v for k, v in result.extras.items() if not isinstance(v, np.ndarray)}
    meta["deletion"] = {k: v for k, v in result.deletion.items() if not k.startswith("deletion_")}
    _atomic_write(meta_path, json.dumps(meta, default=_jsonable, indent=1).encode())
    return meta_path


def load_explanation(ws: Workspace, run_id: str, method: str,
                     key: str) -> Explanation | None:
    """The stored result, or None if there is none (or it is unreadable)."""
    npz, meta_path = _paths(ws, run_id, method, key)
    if not meta_path.is_file() or not npz.is_file():
        return None
    try:
        meta = json.loads(meta_path.read_text())
        with np.load(npz, allow_pickle=False) as f:
            arrays = {name: f[name] for name in f.files}
    except (OSError, ValueError, KeyError) as exc:
        logger.warning("Ignoring the unreadable explanation %s: %s", meta_path, exc)
        return None
    deletion = {**meta.pop("deletion", {}),
                **{k: v for k, v in arrays.items() if k.startswith("deletion_")}}
    meta["extras"] = {**meta.get("extras", {}),
                      **{k[len(EXTRA_ARRAY):]: v for k, v in arrays.items()
                         if k.startswith(EXTRA_ARRAY)}}
    fields = {k: v for k, v in arrays.items()
              if not k.startswith(("deletion_", EXTRA_ARRAY))}
    return Explanation(**meta, **fields, deletion=deletion)


def find_explanation(ws: Workspace, run_id: str, input_sha: str, method: str,
                     params: dict[str, Any], target: int) -> Explanation | None:
    """The cached result for the current checkpoint, if any (``params``: effective ones)."""
    signature = checkpoint_signature(ws, run_id)
    if signature is None:
        return None
    key = cache_key(run_id, signature, input_sha, method, params, target)
    return load_explanation(ws, run_id, method, key)


# -- inputs and their predicted class -------------------------------------------------------


def save_input_image(ws: Workspace, run_id: str, data: bytes, channels: int,
                     name: str = "The upload") -> tuple[str, Path]:
    """Validate an uploaded image (``open_image``: allow-list, pixel cap) and keep it as
    ``explain/inputs/<sha256>.png`` in the dataset's channels. Returns (sha256, path)."""
    from core.data import open_image
    from core.data.images import to_channels

    stream = io.BytesIO(data)
    stream.name = name  # errors name the user's file
    image = to_channels(open_image(stream), channels)
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return _save_input(ws, run_id, buf.getvalue(), ".png")


def save_input_row(ws: Workspace, run_id: str, row: np.ndarray,
                   feature_names: list[str]) -> tuple[str, Path]:
    """Keep one feature row as ``explain/inputs/<row_sha>.csv`` (header + one exact row)."""
    row = np.asarray(row, dtype=np.float32).ravel()
    values = [format(float(v), ".9g") for v in row]  # 9 digits: float32 round-trips exactly
    if len(values) != len(feature_names):
        from core.errors import InvalidTable

        raise InvalidTable(f"Expected {len(feature_names)} features, got {len(values)}.")
    header = ",".join(_csv_cell(name) for name in feature_names)
    data = f"{header}\n{','.join(values)}\n".encode()
    return _save_input(ws, run_id, data, ".csv", sha=row_sha(row))


def _csv_cell(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def _save_input(ws: Workspace, run_id: str, data: bytes, suffix: str,
                sha: str | None = None) -> tuple[str, Path]:
    sha = sha or sha256_bytes(data)
    path = explain_dir(ws, run_id) / "inputs" / f"{sha}{suffix}"
    if not path.is_file():
        _atomic_write(path, data)
    return sha, path


def write_prediction(ws: Workspace, run_id: str, signature: str, input_sha: str,
                     probs: np.ndarray, classes: list[str]) -> None:
    path = _prediction_path(ws, run_id, signature, input_sha)
    payload = {"probs": [float(p) for p in np.ravel(probs)], "classes": list(classes)}
    _atomic_write(path, json.dumps(payload).encode())


def read_prediction(ws: Workspace, run_id: str, input_sha: str) -> np.ndarray | None:
    """The class probabilities recorded for an input with the current checkpoint, if any."""
    signature = checkpoint_signature(ws, run_id)
    path = _prediction_path(ws, run_id, signature or "", input_sha)
    if signature is None or not path.is_file():
        return None
    try:
        return np.asarray(json.loads(path.read_text())["probs"], dtype=np.float32)
    except (OSError, ValueError, KeyError):
        return None


def _prediction_path(ws: Workspace, run_id: str, signature: str,
                     input_sha: str) -> Path:
    return explain_dir(ws, run_id) / "predictions" / f"{signature}-{input_sha[:32]}.json"


# -- helpers -----------------------------------------------------------------------------------


def _array(result: Explanation, name: str) -> np.ndarray | None:
    if name.startswith("deletion_"):
        return result.deletion.get(name)
    return getattr(result, name)


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return str(value)


def _atomic_write(path: Path, data: bytes) -> None:
    write_atomic(path, lambda fh: fh.write(data))
