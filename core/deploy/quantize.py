"""int8 static quantization with onnxruntime: QDQ format, per-channel weights, calibrated on
training samples.

Activations are uint8 and weights int8 (U8S8), the combination onnxruntime runs fastest on x86
CPUs with VNNI/AVX2. The fp32 graph is first run through ``quant_pre_process`` (shape inference
and graph optimisation, e.g. batch norm folded into the convolutions), which quantizes better.
"""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

CALIBRATION_BATCH = 16
ACTIVATION, WEIGHT = "uint8", "int8"


def _calibration_reader(samples: np.ndarray, input_name: str):
    from onnxruntime.quantization import CalibrationDataReader

    class Reader(CalibrationDataReader):
        """Feeds the calibration samples in small batches (memory stays flat)."""

        def __init__(self) -> None:
            self._batches = iter(range(0, len(samples), CALIBRATION_BATCH))

        def get_next(self) -> dict[str, np.ndarray] | None:
            start = next(self._batches, None)
            if start is None:
                return None
            return {input_name: np.ascontiguousarray(samples[start:start + CALIBRATION_BATCH])}

    return Reader()


def quantize_int8(fp32_path: Path, out_path: Path, calibration: np.ndarray,
                  input_name: str = "input") -> dict[str, Any]:
    """Write the int8 model to ``out_path``; returns what was done, for the manifest."""
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if not len(calibration):
        from core.errors import ExportFailed

        raise ExportFailed("int8 quantization needs calibration samples, and the training "
                           "split is empty.")
    with tempfile.TemporaryDirectory(prefix="l2m-quant-") as tmp:
        prepared = Path(tmp) / "prepared.onnx"
        pre_process: dict[str, Any] = {"step": "quant_pre_process", "applied": True}
        try:
            quant_pre_process(str(fp32_path), str(prepared))
        except Exception as exc:  # noqa: BLE001 - optional step: quantize the raw graph instead
            log.warning("quant_pre_process failed (%s); quantizing the graph as exported", exc)
            prepared = Path(fp32_path)
            # Recorded: an int8 model quantized without it (no batch norm folding) may be
            # slower or less accurate, and whoever reads the manifest must be able to tell.
            pre_process = {"step": "quant_pre_process", "applied": False,
                           "fallback": "the graph as exported",
                           "error": f"{type(exc).__name__}: {exc}"[:300]}
        quantize_static(
            str(prepared), str(out_path), _calibration_reader(calibration, input_name),
            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax)
    return {"method": "onnxruntime.quantization.quantize_static", "format": "QDQ",
            "per_channel": True, "activations": ACTIVATION, "weights": WEIGHT,
            "calibration": "MinMax", "calibration_samples": int(len(calibration)),
            "calibration_split": "train", "pre_process": pre_process}
