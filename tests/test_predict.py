"""Prediction of uploaded files: the same numbers as the evaluation path, errors per file."""

from __future__ import annotations

import io
import json
import struct
import zlib
from collections.abc import Iterator

import numpy as np
import pytest
import torch
from conftest import run_cli
from PIL import Image

from core.analyze.predict import predict_csv, predict_files, predict_rows, top_k
from core.config import RunConfig
from core.data import build_torch_split, load_dataset
from core.errors import InvalidConfig
from core.models.loaded import load_run
from core.runs import create_run
from core.train import execute_run
from core.workspace import Workspace


def train(ws: Workspace, dataset: str, model: str, epochs: int = 2, **data) -> str:
    raw = RunConfig().to_dict()
    raw["data"].update(dataset=dataset, **data)
    raw["model"]["name"] = model
    raw["train"].update(epochs=epochs, batch_size=64, seed=0)
    run = create_run(ws.store, RunConfig.from_dict(raw))
    summary = execute_run(ws, run.id)
    assert summary["status"] == "completed", summary
    return run.id


@pytest.fixture(scope="module")
def digits_run(tmp_path_factory) -> Iterator[tuple[Workspace, str]]:
    with Workspace.open(tmp_path_factory.mktemp("predict_ws")) as ws:
        yield ws, train(ws, "digits", "smallcnn")


@pytest.fixture(scope="module")
def iris_run(tmp_path_factory) -> Iterator[tuple[Workspace, str]]:
    with Workspace.open(tmp_path_factory.mktemp("predict_iris")) as ws:
        yield ws, train(ws, "iris", "mlp", epochs=3)


def png(image: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    image.save(buf, format=fmt)
    return buf.getvalue()


def huge_png(width: int = 8_000, height: int = 8_000) -> bytes:
    """A tiny file whose header claims width x height pixels (a decompression bomb)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def test_top_k_orders_and_checks_k():
    probs = np.array([0.1, 0.6, 0.3])
    assert top_k(probs, ["a", "b", "c"], 2) == [("b", 0.6), ("c", 0.3)]
    assert len(top_k(probs, ["a", "b", "c"], 10)) == 3
    with pytest.raises(InvalidConfig):
        top_k(probs, ["a", "b", "c"], 0)


def test_uploaded_png_is_predicted_as_the_evaluation_path_does(digits_run, tmp_path):
    ws, run_id = digits_run
    loaded = load_run(ws, run_id)
    dataset = load_dataset(ws, "digits")
    n = 24
    files = []
    for i in range(n):  # written to disk and read back, as an upload would be
        path = tmp_path / f"test_{i}.png"
        path.write_bytes(png(dataset.raw("test", i)))
        files.append(path)
    uploaded = predict_files(loaded, files, batch_size=10)
    split = build_torch_split(dataset, "test", loaded.image_size)
    x = torch.stack([split[i][0] for i in range(n)])
    with torch.no_grad():
        expected = torch.softmax(loaded.model(x), dim=1).numpy()
    got = np.stack([r.probs for r in uploaded])
    np.testing.assert_allclose(got, expected, rtol=0, atol=1e-5)
    assert (got.argmax(1) == expected.argmax(1)).all()
    accuracy = (got.argmax(1) == dataset.labels("test")[:n]).mean()
    assert accuracy > 0.6  # a trained model, not noise


def test_any_mode_gets_what_training_saw(digits_run):
    """The same grey picture as L, RGB, RGBA and CMYK: one preprocessing, one prediction."""
    ws, run_id = digits_run
    loaded = load_run(ws, run_id)
    gray = load_dataset(ws, "digits").raw("test", 3)
    variants = [("l.png", png(gray)), ("rgb.png", png(gray.convert("RGB"))),
                ("rgba.png", png(gray.convert("RGBA"))),
                ("cmyk.tif", png(gray.convert("CMYK"), "TIFF"))]
    results = predict_files(loaded, variants)
    assert all(r.ok for r in results), [r.error for r in results]
    for r in results[1:]:
        np.testing.assert_allclose(r.probs, results[0].probs, atol=1e-6)


def test_bad_files_get_their_own_error_and_the_others_are_predicted(digits_run):
    ws, run_id = digits_run
    loaded = load_run(ws, run_id)
    good = png(load_dataset(ws, "digits").raw("test", 0))
    files = [("good.png", good), ("notes.png", b"this is not an image"),
             ("cut.png", good[: len(good) // 2]), ("bomb.png", huge_png()),
             ("good2.png", good)]
    results = predict_files(loaded, files, batch_size=2)
    assert [r.ok for r in results] == [True, False, False, False, True]
    assert "notes.png is not a readable image" in results[1].error
    assert "cut.png" in results[2].error and "truncated" in results[2].error
    assert "bomb.png" in results[3].error and "pixel cap" in results[3].error
    alone = predict_files(loaded, [("good.png", good)])[0]
    np.testing.assert_allclose(results[0].probs, alone.probs, atol=1e-6)
    np.testing.assert_allclose(results[4].probs, alone.probs, atol=1e-6)
    rows = [r.to_dict(loaded.classes, 3) for r in results]
    assert len(rows[0]["top_k"]) == 3 and rows[1] == {"file": "notes.png",
                                                       "error": results[1].error}


def test_csv_rows_and_wrong_columns_are_isolated(iris_run):
    ws, run_id = iris_run
    loaded = load_run(ws, run_id)
    names = loaded.info.feature_names
    data = load_dataset(ws, "iris").array("test")[:3]
    header = ",".join(names[::-1]) + ",note"  # any column order; extra columns ignored
    good = (header + "\n" + "\n".join(",".join(str(v) for v in row[::-1]) + ",x"
                                      for row in data)).encode()
    missing = (",".join(names[:2]) + "\n1,2\n").encode()
    text = (",".join(names) + "\n1,2,three,4\n").encode()
    results = predict_files(loaded, [("good.csv", good), ("missing.csv", missing),
                                     ("text.csv", text), ("empty.csv", b"")])
    assert [r.ok for r in results] == [True, True, True, False, False, False]
    assert results[0].name == "good.csv [row 1]"
    np.testing.assert_allclose(np.stack([r.probs for r in results[:3]]),
                               predict_rows(loaded, data), atol=1e-6)
    assert names[2] in results[3].error and "lacks the columns" in results[3].error
    assert "numbers" in results[4].error
    assert "empty" in results[5].error
    assert predict_csv(loaded, "x.csv", b"\x00\xff\x00garbage")[0].error


def test_cli_predict_json_and_exit_code(digits_run, tmp_path):
    ws, run_id = digits_run
    good = tmp_path / "digit.png"
    good.write_bytes(png(load_dataset(ws, "digits").raw("test", 1)))
    bad = tmp_path / "readme.txt"
    bad.write_text("hello")
    proc = run_cli("predict", run_id, str(good), str(bad), "--top-k", "3", "--json",
                   home=ws.home, check=False)
    assert proc.returncode == 2, proc.stderr  # one file failed: said, and the other predicted
    payload = json.loads(proc.stdout)
    assert payload["errors"] == 1 and payload["top_k"] == 3
    ok, failed = payload["predictions"]
    assert ok["file"] == "digit.png" and len(ok["top_k"]) == 3
    assert ok["top_k"][0]["probability"] >= ok["top_k"][1]["probability"]
    assert "readme.txt" in failed["error"] and "Traceback" not in proc.stderr
