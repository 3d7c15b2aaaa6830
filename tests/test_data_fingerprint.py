"""Dataset fingerprints: a dataset re-imported with other data under a run's dataset name is
refused with a clear message; the same data re-imported, and runs older than fingerprints, pass."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import train_run
from PIL import Image

from core.data import (
    check_fingerprint,
    delete_dataset,
    fingerprint,
    get_info,
    import_dataset,
)
from core.errors import DatasetChanged, DatasetNotFound
from core.workspace import Workspace

FAST_S = 0.05  # a fingerprint is taken at every run creation


def table(tmp_path: Path, rows: int = 60, classes=("a", "b", "c"), seed: int = 0,
          name: str = "t.csv") -> Path:
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({
        "height": rng.normal(170, 10, rows).round(2),
        "weight": rng.normal(70, 5, rows).round(2),
        "kind": np.array(classes)[np.arange(rows) % len(classes)],
    })
    path = tmp_path / name
    frame.to_csv(path, index=False)
    return path


def reimport(workspace: Workspace, name: str, source: Path) -> None:
    delete_dataset(workspace, name)
    import_dataset(workspace, name, source, target="kind")


def test_reimported_table_is_refused_and_the_same_table_passes(home: Path, tmp_path: Path,
                                                               workspace: Workspace) -> None:
    original = table(tmp_path)
    import_dataset(workspace, "t", original, target="kind")
    recorded = fingerprint(workspace, "t")
    assert recorded["classes"] == ["a", "b", "c"]
    assert recorded["features"] == ["height", "weight"]
    assert recorded["content_hash"].startswith("sha256:")
    json.dumps(recorded)  # it is stored in the run's summary

    reimport(workspace, "t", table(tmp_path, rows=40, classes=("x", "y"), seed=1, name="other.csv"))
    with pytest.raises(DatasetChanged) as refused:
        check_fingerprint(workspace, recorded, "t", run_id="20260101-120000-abcdef")
    message = str(refused.value)
    assert "\n" not in message
    assert message.startswith("Dataset 't' changed since run 20260101-120000-abcdef was trained")
    assert "classes [a, b, c] -> [x, y]" in message
    assert "content hash" in message and "re-import the original data" in message

    reimport(workspace, "t", original)
    check_fingerprint(workspace, recorded, "t")
    assert fingerprint(workspace, "t") == recorded


def test_same_shape_other_values_is_caught_by_the_content_hash(home: Path, tmp_path: Path,
                                                               workspace: Workspace) -> None:
    import_dataset(workspace, "t", table(tmp_path), target="kind")
    recorded = fingerprint(workspace, "t")
    frame = pd.read_csv(tmp_path / "t.csv")
    frame.loc[5, "height"] += 1.0  # one value: classes, features and split sizes all unchanged
    frame.to_csv(tmp_path / "edited.csv", index=False)
    reimport(workspace, "t", tmp_path / "edited.csv")
    with pytest.raises(DatasetChanged, match=r"\(content hash [0-9a-f]{12} -> [0-9a-f]{12}\)"):
        check_fingerprint(workspace, recorded, "t")


def test_old_runs_pass_and_a_deleted_dataset_is_not_found(workspace: Workspace,
                                                          tmp_path: Path) -> None:
    import_dataset(workspace, "t", table(tmp_path), target="kind")
    check_fingerprint(workspace, None, "t")
    check_fingerprint(workspace, {}, "t")
    # A fingerprint with an unknown hash (or keys from another version) compares what it has.
    partial = {**fingerprint(workspace, "t"), "content_hash": None, "future_key": 1}
    check_fingerprint(workspace, partial, "t")
    with pytest.raises(DatasetChanged, match="split sizes"):
        check_fingerprint(workspace, {**partial, "split_counts": {"train": 1, "val": 1, "test": 1}},
                          "t")
    delete_dataset(workspace, "t")
    with pytest.raises(DatasetNotFound):
        check_fingerprint(workspace, partial, "t")


def test_a_dataset_imported_before_fingerprints_is_hashed_once(home: Path, tmp_path: Path,
                                                               workspace: Workspace) -> None:
    import_dataset(workspace, "t", table(tmp_path), target="kind")
    expected = fingerprint(workspace, "t")
    meta = home / "datasets" / "t" / "meta.json"
    raw = json.loads(meta.read_text())
    del raw["content_hash"]  # as an older version wrote it
    meta.write_text(json.dumps(raw))
    assert get_info(workspace, "t").content_hash == ""
    assert fingerprint(workspace, "t") == expected
    assert json.loads(meta.read_text())["content_hash"] == expected["content_hash"]  # kept
    assert sorted(p.name for p in meta.parent.iterdir()) == ["data.csv", "meta.json",
                                                            "splits.json"]


def test_builtin_fingerprints_are_stable_and_fast(ws: Workspace) -> None:
    first = fingerprint(ws, "digits")
    assert first["modality"] == "image" and first["image_size"] == 8 and first["channels"] == 1
    assert first["split_counts"] == {"train": 1258, "val": 272, "test": 267}
    start = time.perf_counter()
    again = fingerprint(ws, "digits")
    assert time.perf_counter() - start < FAST_S
    assert again == first
    assert fingerprint(ws, "iris")["features"][0] == "sepal length (cm)"
    assert fingerprint(ws, "iris")["content_hash"] != fingerprint(ws, "wine")["content_hash"]
    check_fingerprint(ws, first, "digits")
    with pytest.raises(DatasetChanged, match=r"classes \[0, 1, 2, 3, 4, 5, \.\.\. \(11 in all\)\]"):
        check_fingerprint(ws, {**first, "classes": [*first["classes"], "10"]}, "digits")


def _image_folder(root: Path, per_class: int, classes=("cat", "dog")) -> Path:
    rng = np.random.default_rng(0)
    for cls in classes:
        (root / cls).mkdir(parents=True)
        for k in range(per_class):
            pixels = rng.integers(0, 256, (8, 8), dtype=np.uint8)
            Image.fromarray(pixels).save(root / cls / f"{k:04d}.png")
    return root


def test_image_folder_fingerprint_is_fast_and_sees_one_changed_image(
    workspace: Workspace, tmp_path: Path
) -> None:
    src = _image_folder(tmp_path / "src", per_class=500)  # 1000 images
    import_dataset(workspace, "pets", src)
    recorded = fingerprint(workspace, "pets")
    start = time.perf_counter()
    for _ in range(5):
        assert fingerprint(workspace, "pets") == recorded
    assert (time.perf_counter() - start) / 5 < FAST_S
    # One image replaced by another of the same size: only the content hash can tell.
    Image.fromarray(np.zeros((8, 8), np.uint8)).save(src / "dog" / "0007.png")
    delete_dataset(workspace, "pets")
    import_dataset(workspace, "pets", src)
    with pytest.raises(DatasetChanged, match="content hash"):
        check_fingerprint(workspace, recorded, "pets")


def test_load_run_refuses_a_run_whose_dataset_changed(home: Path, tmp_path: Path,
                                                      workspace: Workspace) -> None:
    """The real path: a trained run's recorded fingerprint checked by ``load_run``."""
    from core.models.loaded import load_run

    original = table(tmp_path)
    import_dataset(workspace, "t", original, target="kind")
    run_id = train_run(workspace, data={"dataset": "t"}, model={"name": "mlp"})
    recorded = workspace.store.get_run(run_id).summary["dataset_fingerprint"]  # by create_run
    assert recorded == fingerprint(workspace, "t")
    assert load_run(workspace, run_id).classes == ["a", "b", "c"]

    reimport(workspace, "t", table(tmp_path, rows=40, classes=("x", "y"), seed=1, name="other.csv"))
    with pytest.raises(DatasetChanged, match=f"since run {run_id} was trained"):
        load_run(workspace, run_id)
    reimport(workspace, "t", original)
    assert load_run(workspace, run_id).classes == ["a", "b", "c"]
