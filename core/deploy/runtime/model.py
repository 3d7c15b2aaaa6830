"""A verified ONNX bundle on onnxruntime, and the JSONL request log of its server."""

from __future__ import annotations

import json
import logging
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from .errors import BundleError
from .manifest import MANIFEST, read_verified, sha256_file, verify_bundle

log = logging.getLogger(__name__)


class BundleModel:
    """A verified ONNX bundle on onnxruntime: ``predict(batch) -> probabilities``."""

    def __init__(self, folder: str | os.PathLike, threads: int = 0):
        import onnxruntime as ort

        self.folder = Path(folder).resolve()
        self.manifest = verify_bundle(self.folder)
        model_file = self.manifest["model_file"]
        if not model_file.endswith(".onnx"):
            raise BundleError(f"{self.folder} holds a {self.manifest.get('format')} model; the "
                              "server runs ONNX bundles only (export with --format onnx).")
        self.spec = json.loads(read_verified(self.folder, "preprocess.json", self.manifest))
        self.classes = json.loads(read_verified(self.folder, "labels.json", self.manifest))
        options = ort.SessionOptions()
        if threads:
            options.intra_op_num_threads = threads
        self.session = ort.InferenceSession(
            read_verified(self.folder, model_file, self.manifest), options,
            providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.manifest_sha256 = sha256_file(self.folder / MANIFEST)
        self.version = (f"{self.manifest.get('run_id')}/{self.manifest.get('bundle')}"
                        f"@{self.manifest_sha256[:12]}")

    @property
    def modality(self) -> str:
        return self.spec["modality"]

    def predict(self, batch: np.ndarray) -> np.ndarray:
        logits = self.session.run(None, {self.input_name: batch.astype(np.float32)})[0]
        shifted = np.exp(logits - logits.max(axis=1, keepdims=True))
        return shifted / shifted.sum(axis=1, keepdims=True)

    def top_k(self, probs: np.ndarray, k: int) -> list[dict[str, Any]]:
        order = np.argsort(-probs)[: max(1, min(k, len(self.classes)))]
        return [{"class": self.classes[i], "index": int(i), "probability": float(probs[i])}
                for i in order]

    def metadata(self) -> dict[str, Any]:
        m = self.manifest
        return {"model_version": self.version, "bundle": m.get("bundle"), "run_id": m.get("run_id"),
                "format": m.get("format"), "precision": m.get("precision"),
                "classes": self.classes, "input": m.get("input"), "preprocess": self.spec,
                "exported_at": m.get("created_at")}


class RequestLog:
    """Append-only JSONL of served requests; rotated to ``.1`` beyond ``max_bytes``."""

    def __init__(self, path: Path, max_bytes: int = 20 * 1024 * 1024):
        self.path, self.max_bytes = Path(path), max_bytes
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()

    def write(self, record: dict[str, Any]) -> None:
        line = json.dumps(record, separators=(",", ":")) + "\n"
        with self._lock:
            try:
                if self.path.exists() and self.path.stat().st_size > self.max_bytes:
                    os.replace(self.path, self.path.with_name(self.path.name + ".1"))
                with open(self.path, "a", encoding="utf-8") as fh:
                    fh.write(line)
            except OSError as exc:  # a full disk must not take the server down
                log.warning("Cannot write the request log %s: %s", self.path, exc)
