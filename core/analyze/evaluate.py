"""One inference pass over a split, stored once, read many times.

``evaluate(ws, run_id, split)`` loads the run's best checkpoint, predicts the split in batches
(memory bounded by the batch, progress reported after each) and writes
``runs/<id>/eval/<split>.npz``: sample ids, positions in the split, true labels, logits and
class probabilities, plus the checkpoint's signature. Every metric and plot is derived from that
file (``core.analyze.metrics``); opening it again recomputes nothing unless the checkpoint changed.

Importing this module does not import torch (the dashboard reads the stored files with it);
torch is imported by the functions that run the model.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from core.analyze import EVAL_BATCH_SIZE, EVAL_SPLITS
from core.atomic import write_atomic
from core.checkpoint import checkpoint_signature
from core.errors import CheckpointDamaged, InvalidConfig, InvalidImage, InvalidRunState

if TYPE_CHECKING:
    from core.workspace import Workspace

logger = logging.getLogger(__name__)

FORMAT_VERSION = 1
ProgressFn = Callable[..., None]  # progress(done, total, message="")


@dataclass
class Predictions:
    """The stored result of one inference pass (``runs/<id>/eval/<split>.npz``)."""

    run_id: str
    split: str
    dataset: str
    classes: list[str]
    ids: np.ndarray  # str: the dataset's sample ids
    index: np.ndarray  # int64: positions in the split (``Dataset.raw(split, index[j])``)
    y_true: np.ndarray  # int64
    logits: np.ndarray  # float32 (N, C)
    probs: np.ndarray  # float64 (N, C), softmax of the logits (rows sum to 1 to 1e-15)
    signature: str  # the checkpoint's signature when predicted
    skipped: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))  # corrupt samples
    checkpoint: str = ""
    seconds: float = 0.0
    created_at: float = 0.0
    path: Path | None = None

    @property
    def y_pred(self) -> np.ndarray:
        return self.probs.argmax(axis=1).astype(np.int64) if len(self.probs) else \
            np.zeros(0, np.int64)

    def __len__(self) -> int:
        return len(self.y_true)


# -- where, and whether it is still valid (torch-free) -----------------------------------------


def eval_path(ws: Workspace, run_id: str, split: str) -> Path:
    check_split(split)
    return ws.run_dir(run_id) / "eval" / f"{split}.npz"


def check_split(split: str) -> None:
    if split not in EVAL_SPLITS:
        raise InvalidConfig(f"split must be one of {', '.join(EVAL_SPLITS)}; got {split!r}")


def read_predictions(path: str | Path) -> Predictions:
    """Read a stored file (no pickles: ``allow_pickle=False``)."""
    path = Path(path)
    with np.load(path, allow_pickle=False) as f:
        meta = json.loads(str(f["meta"]))
        arrays = {k: f[k] for k in ("ids", "index", "y_true", "logits", "probs", "skipped")}
    return Predictions(run_id=meta["run_id"], split=meta["split"], dataset=meta["dataset"],
                       classes=list(meta["classes"]), signature=meta["signature"],
                       checkpoint=meta.get("checkpoint", ""), seconds=meta.get("seconds", 0.0),
                       created_at=meta.get("created_at", 0.0), path=path, **arrays)


def stored(ws: Workspace, run_id: str, split: str) -> Predictions | None:
    """The stored predictions if they exist and match the current checkpoint, else None."""
    path = eval_path(ws, run_id, split)
    if not path.is_file():
        return None
    try:
        preds = read_predictions(path)
    except (OSError, ValueError, KeyError) as exc:
        logger.warning("Ignoring unreadable %s: %s", path, exc)
        return None
    return preds if preds.signature == checkpoint_signature(ws, run_id) else None


def is_fresh(ws: Workspace, run_id: str, split: str) -> bool:
    """Whether ``eval/<split>.npz`` exists and was made with the current checkpoint (reads only
    the small ``meta`` entry)."""
    path = eval_path(ws, run_id, split)
    if not path.is_file():
        return False
    try:
        with np.load(path, allow_pickle=False) as f:
            signature = json.loads(str(f["meta"]))["signature"]
    except (OSError, ValueError, KeyError):
        return False
    return signature == checkpoint_signature(ws, run_id)


def write_predictions(preds: Predictions, path: str | Path) -> Path:
    """Write atomically (a temp file in the same folder, then ``os.replace``)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {"format": FORMAT_VERSION, "run_id": preds.run_id, "split": preds.split,
            "dataset": preds.dataset, "classes": list(preds.classes),
            "signature": preds.signature, "checkpoint": preds.checkpoint,
            "seconds": preds.seconds, "created_at": preds.created_at or time.time()}
    write_atomic(path, lambda out: np.savez(
        out, meta=np.array(json.dumps(meta)), ids=np.asarray(preds.ids, dtype=str),
        index=preds.index.astype(np.int64), y_true=preds.y_true.astype(np.int64),
        logits=preds.logits.astype(np.float32), probs=preds.probs.astype(np.float64),
        skipped=np.asarray(preds.skipped, dtype=np.int64)),
        prefix=f".{path.stem}-", suffix=".npz")
    preds.path = path
    return path


# -- the inference pass (torch) ----------------------------------------------------------------


def evaluate(ws: Workspace, run_id: str, split: str = "test",
             batch_size: int = EVAL_BATCH_SIZE, progress: ProgressFn | None = None,
             force: bool = False, device: str = "cpu", loaded: Any = None) -> Predictions:
    """The stored predictions of ``split`` if still valid, else one batched pass, stored.

    ``loaded``: the run's model already in memory (a ``LoadedRun`` of its current checkpoint,
    e.g. the dashboard's warm copy), so a small split is evaluated without loading it again.
    """
    check_split(split)
    if batch_size < 1:
        raise InvalidConfig(f"batch size must be >= 1, got {batch_size}")
    run = ws.store.get_run(run_id)  # an unknown run is a clear error before torch loads
    if not force:
        found = stored(ws, run_id, split)
        if found is not None:
            logger.info("Reusing %s (checkpoint unchanged)", found.path)
            return found
    if run.kind == "ensemble":  # combines its members' stored predictions of the split
        from core.analyze.ensemble import evaluate_ensemble

        return evaluate_ensemble(ws, run_id, split, batch_size=batch_size, progress=progress,
                                 device=device)
    from core.data.folds import load_for_config
    from core.models.loaded import load_run

    # Taken before the weights are read: if a training run rewrites the checkpoint meanwhile,
    # the file is marked stale (and redone), never fresh with older weights.
    signature = checkpoint_signature(ws, run_id)
    if loaded is None:
        loaded = load_run(ws, run_id, device=_device(device))
    # A CV fold run's val split is its fold: evaluate on what it validated on.
    dataset = load_for_config(ws, loaded.config.data)
    preds = predict_split(loaded, dataset, split, batch_size, progress)
    preds.signature = signature or preds.signature
    path = write_predictions(preds, eval_path(ws, run_id, split))
    ws.store.add_artifact(run_id, f"eval/{split}", str(path.relative_to(ws.home)))
    return preds


def predict_split(loaded: Any, dataset: Any, split: str, batch_size: int = EVAL_BATCH_SIZE,
                  progress: ProgressFn | None = None) -> Predictions:
    """Predict every sample of ``dataset``'s ``split`` with a ``LoadedRun``, batch by batch.

    At most one batch of inputs is held as tensors at a time; the outputs kept are the
    (N, C) logits. Corrupt samples are skipped and listed in ``skipped``.
    """
    import torch

    if list(dataset.info.classes) != loaded.classes:
        raise InvalidRunState(f"The dataset's classes changed since run {loaded.run_id} was "
                              "trained; its predictions would be meaningless.")
    total = dataset.size(split)
    if total == 0:
        raise InvalidConfig(f"The {split} split of {dataset.info.name} is empty: nothing to "
                            "evaluate.")
    signature = loaded.checkpoint_signature
    labels = dataset.labels(split)
    ids = dataset.ids(split)
    logits, kept, skipped = [], [], []
    started = time.perf_counter()
    with torch.inference_mode():
        for x, positions, bad, done in iter_batches(dataset, split, loaded.preprocess,
                                                    batch_size):
            skipped += bad
            if x is not None:
                logits.append(loaded.logits(x).numpy().astype(np.float32))
                kept += positions
            if progress is not None:
                progress(done, total, f"{split}: {done}/{total}")
    if not kept:
        raise InvalidConfig(f"Every sample of {dataset.info.name}/{split} is unreadable.")
    if skipped:
        logger.warning("Skipped %d unreadable samples of %s/%s", len(skipped),
                       dataset.info.name, split)
    z = np.concatenate(logits)
    check_finite(z, loaded.checkpoint, split)
    from core.analyze.metrics import softmax

    index = np.asarray(kept, dtype=np.int64)
    return Predictions(
        run_id=loaded.run_id, split=split, dataset=dataset.info.name, classes=loaded.classes,
        ids=np.asarray([ids[i] for i in kept], dtype=str), index=index, y_true=labels[index],
        logits=z, probs=softmax(z), signature=signature,
        skipped=np.asarray(skipped, dtype=np.int64), checkpoint=loaded.checkpoint.name,
        seconds=time.perf_counter() - started, created_at=time.time())


def check_finite(outputs: np.ndarray, checkpoint: Path, split: str) -> None:
    """Refuse NaN or infinite model outputs with one line (scikit-learn would raise a
    ValueError deep inside a metric): the weights are damaged or training diverged."""
    bad = int((~np.isfinite(outputs)).any(axis=1).sum()) if outputs.ndim == 2 else \
        int((~np.isfinite(outputs)).sum())
    if bad:
        from core.checkpoint import describe_path

        raise CheckpointDamaged(
            f"checkpoint {describe_path(checkpoint)} gives non-finite outputs (NaN or inf) "
            f"for {bad} of {len(outputs)} {split} samples: its weights are damaged or training "
            "diverged; retrain the run (e.g. with a lower learning rate)")


def iter_batches(dataset: Any, split: str, preprocess: Any, batch_size: int
                 ) -> Iterator[tuple[Any, list[int], list[int], int]]:
    """``(x, positions, skipped, done)`` per batch: the preprocessed tensor (None if the whole
    batch was unreadable), the split positions it holds, those skipped, and the count so far."""
    n = dataset.size(split)
    for start in range(0, n, batch_size):
        raws, positions, skipped = [], [], []
        for i in range(start, min(n, start + batch_size)):
            try:
                raws.append(dataset.raw(split, i))
                positions.append(i)
            except (InvalidImage, OSError) as exc:
                logger.debug("Skipping %s/%s[%d]: %s", dataset.info.name, split, i, exc)
                skipped.append(i)
        done = start + len(raws) + len(skipped)
        yield (stack(raws, preprocess) if raws else None), positions, skipped, done


def stack(raws: list, preprocess: Any) -> Any:
    """One batch tensor from raw samples, with exactly the per-sample arithmetic of
    ``preprocess`` (vectorised when the images already have the target size and mode)."""
    import torch

    if preprocess.modality == "tabular":
        return preprocess.rows(np.stack([np.asarray(r, dtype=np.float32) for r in raws]))
    mode = "L" if preprocess.channels == 1 else "RGB"
    if all(getattr(r, "mode", None) == mode and r.size == (preprocess.size,) * 2 for r in raws):
        return preprocess.pixels(torch.from_numpy(np.stack([np.asarray(r) for r in raws])))
    return torch.stack([preprocess(r) for r in raws])


def _device(name: str) -> str:
    if name == "auto":
        from core.train.setup import resolve_device

        return str(resolve_device("auto"))
    return name


# -- derived results ---------------------------------------------------------------------------


def summarize(preds: Predictions, calibration: Predictions | None = None) -> dict[str, Any]:
    """The metrics of ``preds`` (``core.analyze.metrics.report``), with temperature scaling
    fitted on ``calibration`` (the val predictions) when given."""
    from core.analyze.metrics import report, temperature_scaling

    # A file stored before outputs were checked may hold NaN; say so instead of crashing.
    check_finite(preds.probs, Path("runs", preds.run_id, "checkpoints",
                                   preds.checkpoint or "best.pt"), preds.split)
    out = {"run_id": preds.run_id, "split": preds.split, "dataset": preds.dataset,
           "checkpoint": preds.checkpoint, "skipped": int(len(preds.skipped)),
           **report(preds.y_true, preds.probs, preds.classes)}
    if calibration is not None and len(calibration):
        scaled = temperature_scaling(calibration.logits, calibration.y_true, preds.logits,
                                     preds.y_true)
        out["calibration"] = {"temperature": scaled["temperature"],
                              "fitted_on": f"{calibration.split} ({scaled['fitted_on']} samples)",
                              "ece_before": scaled["before"]["ece"],
                              "ece_after": scaled["after"]["ece"],
                              "nll_before": scaled["before"]["nll"],
                              "nll_after": scaled["after"]["nll"]}
    return out
