"""Dataset health: every planted problem is reported and nothing else; fixes are new versions.

The image dataset is generated: distinct "scenes" (a gradient and a few coloured shapes) in a
20:1 class imbalance, with planted exact duplicates, near-duplicates (resized, recompressed),
copies across splits and a truncated file.
"""

from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from conftest import run_cli, run_json
from PIL import Image, ImageDraw

from core.data import fingerprint, import_dataset, load_dataset
from core.data.health import check_csv, dataset_report, health, health_dir, make_version
from core.errors import InvalidConfig, InvalidName, UserError

SIZE = 64
# With the 5 files planted in train/big, the training split is 240:12, 20:1.
COUNTS = {"train": {"big": 235, "small": 12}, "val": {"big": 16, "small": 4},
          "test": {"big": 16, "small": 4}}


def scene(rng: np.random.Generator, size: int = SIZE) -> Image.Image:
    """A distinct picture: a random gradient with four random ellipses and rectangles."""
    y, x = np.mgrid[0:size, 0:size] / size
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    base = (a * x[..., None] + b * (1 - y[..., None])) / 1.5
    img = Image.fromarray(base.clip(0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x0, y0 = (int(v) for v in rng.integers(0, size - 10, 2))
        w, h = (int(v) for v in rng.integers(8, size // 2, 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x0, y0, x0 + w, y0 + h], fill=colour)
    return img


def jpeg(img: Image.Image, quality: int) -> bytes:
    out = io.BytesIO()
    img.save(out, "JPEG", quality=quality)
    return out.getvalue()


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """An ImageFolder (train/val/test) with the planted problems; returns it and what was
    planted (as the files' dataset ids)."""
    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("planted")
    for split, per_class in COUNTS.items():
        for cls, n in per_class.items():
            (root / split / cls).mkdir(parents=True)
            for i in range(n):
                scene(rng).save(root / split / cls / f"{i:03d}.png")
    big = root / "train" / "big"
    shutil.copyfile(big / "000.png", big / "000-copy.png")  # exact, within train
    shutil.copyfile(big / "001.png", big / "001-copy.png")
    Image.open(big / "002.png").resize((48, 48), Image.BILINEAR).save(big / "002-small.png")
    (big / "003-q40.jpg").write_bytes(jpeg(Image.open(big / "003.png"), 40))  # recompressed
    for i in (10, 11, 12):  # train images also in test, byte for byte
        shutil.copyfile(big / f"{i:03d}.png", root / "test" / "big" / f"leak-{i}.png")
    Image.open(big / "020.png").resize((52, 52), Image.BILINEAR).save(
        root / "val" / "big" / "leak-20.png")  # a resized train image in val
    (big / "broken.jpg").write_bytes(jpeg(scene(rng), 90)[:300])  # truncated
    expected = {
        "exact": {frozenset({"train/big/000.png", "train/big/000-copy.png"}),
                  frozenset({"train/big/001.png", "train/big/001-copy.png"}),
                  *(frozenset({f"train/big/{i:03d}.png", f"test/big/leak-{i}.png"})
                    for i in (10, 11, 12))},
        "near": {frozenset({"train/big/002.png", "train/big/002-small.png"}),
                 frozenset({"train/big/003.png", "train/big/003-q40.jpg"}),
                 frozenset({"train/big/020.png", "val/big/leak-20.png"})},
        "cross": {"test/big/leak-10.png", "test/big/leak-11.png", "test/big/leak-12.png",
                  "val/big/leak-20.png"},
        "broken": {"train/big/broken.jpg"},
    }
    return root, expected


@pytest.fixture(scope="module")
def imported(ws, planted) -> dict:
    import_dataset(ws, "planted", planted[0])
    return dataset_report(ws, "planted")


def by_check(report: dict) -> dict[str, dict]:
    return {f["check"]: f for f in report["findings"]}


def groups(finding: dict) -> set[frozenset[str]]:
    return {frozenset(s["id"] for s in g["samples"]) for g in finding["items"]}


def test_every_planted_image_problem_is_reported_and_nothing_else(imported, planted):
    expected = planted[1]
    found = by_check(imported)
    assert set(found) == {"undecodable", "exact_duplicates", "near_duplicates",
                          "cross_split_duplicates", "class_imbalance"}, found.keys()
    assert {s["id"] for s in found["undecodable"]["items"]} == expected["broken"]
    assert groups(found["exact_duplicates"]) == expected["exact"]
    assert groups(found["near_duplicates"]) == expected["near"]
    leaked = {s["id"] for g in found["cross_split_duplicates"]["items"] for s in g["samples"]
              if s["split"] != "train"}
    assert leaked == expected["cross"]
    # Says by how much: 3 of the 23 test images and 1 of the 21 val images are copies.
    leak = found["cross_split_duplicates"]["leak"]
    assert (leak["test"]["copies"], leak["test"]["of"]) == (3, 23)
    assert (leak["val"]["copies"], leak["val"]["of"]) == (1, 21)
    assert "13.0%" in found["cross_split_duplicates"]["message"]
    imbalance = found["class_imbalance"]
    assert imbalance["severity"] == "warning" and "20.0:1" in imbalance["message"]
    assert "--class-weights" in imbalance["message"] and "--balanced-sampler" in \
        imbalance["message"]


def test_the_report_is_stored_with_the_dataset_and_reused_until_it_changes(ws, imported):
    path = health_dir(ws, "planted") / "report.json"
    assert path.is_file() and path.is_relative_to(ws.dataset_dir("planted"))
    assert json.loads(path.read_text())["fingerprint"]["content_hash"] == \
        fingerprint(ws, "planted")["content_hash"]
    assert dataset_report(ws, "planted")["created_at"] == imported["created_at"]  # not redone
    stale = json.loads(path.read_text())
    stale["fingerprint"]["content_hash"] = "sha256:another-version"
    path.write_text(json.dumps(stale))
    assert dataset_report(ws, "planted")["created_at"] > imported["created_at"]


def test_removing_cross_split_duplicates_makes_a_new_version_without_them(ws, imported):
    before = sorted(p.name for p in ws.dataset_dir("planted").rglob("*") if p.is_file())
    out = run_json("datasets", "fix", "planted", "--remove", "cross-split-duplicates", "--as",
                   "planted-v2", home=ws.home)
    assert out["removed"] == 4 and out["split_counts"] == {"train": 252, "val": 20, "test": 20}
    fixed = by_check(dataset_report(ws, "planted-v2"))
    assert "cross_split_duplicates" not in fixed
    assert {"exact_duplicates", "near_duplicates", "undecodable"} <= set(fixed)  # untouched
    after = sorted(p.name for p in ws.dataset_dir("planted").rglob("*") if p.is_file())
    assert after == before  # the original dataset is unchanged
    assert json.loads((health_dir(ws, "planted-v2") / "version.json").read_text())["parent"] \
        == "planted"


def test_a_fix_refuses_what_it_cannot_do_in_one_line(ws, imported):
    with pytest.raises(UserError, match="already exists"):
        make_version(ws, "planted", "planted", remove={("train", 0)})
    with pytest.raises(InvalidName, match="Invalid dataset name"):
        make_version(ws, "planted", "../escape", remove={("train", 0)})
    with pytest.raises(InvalidConfig, match="Unknown class"):
        make_version(ws, "planted", "planted-x", relabel={("train", 0): "nope"})
    with pytest.raises(UserError, match="no validation samples"):
        make_version(ws, "planted", "planted-x", remove={("val", i) for i in range(21)})
    proc = run_cli("datasets", "fix", "iris", "--remove", "near-duplicates", home=ws.home,
                   check=False)
    assert proc.returncode == 2 and "nothing to remove" in proc.stderr
    assert not ws.dataset_dir("planted-x").exists()


def test_a_built_in_dataset_gets_a_clean_report_and_versions(ws):
    report = health(ws, "digits")
    assert report["findings"] == [] and report["samples"] == 1797
    assert (health_dir(ws, "digits") / "report.json").is_file()
    info = make_version(ws, "digits", "digits-relabelled", relabel={("train", 0): "9"},
                        remove={("test", 0)})
    version = load_dataset(ws, "digits-relabelled")
    assert info.split_counts["test"] == load_dataset(ws, "digits").size("test") - 1
    moved = version.ids("train").index("train/9/train-000000.png")  # was a train image of 0
    assert version.info.classes[version.labels("train")[moved]] == "9"


# -- tables --------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """240 rows: uniform features, a column with missing values, a constant column and one that
    leaks the label (a code per class, with noise)."""
    rng = np.random.default_rng(3)
    n = 240
    label = rng.integers(0, 2, n)
    a = rng.uniform(0, 1, n).round(3).astype(object)
    a[rng.choice(n, 20, replace=False)] = ""
    rows = zip(a, rng.uniform(0, 1, n).round(3), (label * 10 + rng.uniform(0, 1, n)).round(3),
               ["yes" if v else "no" for v in label], strict=True)
    path = tmp_path_factory.mktemp("csv") / "leaky.csv"
    path.write_text("a,b,c_const,leak,label\n"
                    + "".join(f"{x},{y},7,{z},{t}\n" for x, y, z, t in rows))
    return path


def test_a_csv_gets_its_missing_values_constant_and_leaking_columns_found(table):
    found = by_check(check_csv(str(table), "label"))
    assert {"missing_values", "constant_columns", "label_leak"} <= set(found)
    assert [i["column"] for i in found["missing_values"]["items"]] == ["a"]
    assert found["missing_values"]["items"][0]["missing"] == 20
    assert [i["column"] for i in found["constant_columns"]["items"]] == ["c_const"]
    assert [i["column"] for i in found["label_leak"]["items"]] == ["leak"]


def test_a_refused_csv_is_imported_repaired_and_the_file_left_as_it_was(ws, table):
    original = table.read_bytes()
    proc = run_cli("datasets", "import", "leaky", "--from", str(table), "--target", "label",
                   home=ws.home, check=False)
    assert proc.returncode == 2 and "missing" in proc.stderr
    out = run_json("datasets", "fix", "--from", str(table), "--target", "label", "--impute",
                   "median", "--drop-columns", "c_const,leak", "--as", "leaky-fixed",
                   home=ws.home)
    assert out["feature_names"] == ["a", "b"] and sum(out["split_counts"].values()) == 240
    assert table.read_bytes() == original
    assert not by_check(dataset_report(ws, "leaky-fixed")).keys() & {
        "missing_values", "constant_columns", "label_leak"}


def test_rows_shared_across_the_splits_of_a_table_are_found_and_removed(ws, tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(150, 3)).round(4)
    x[100:150] = x[:50]  # 50 rows twice: the stratified split puts copies in val and test
    labels = (x[:, 0] > 0).astype(int)
    path = tmp_path / "dups.csv"
    path.write_text("p,q,r,y\n" + "".join(f"{a},{b},{c},{t}\n" for (a, b, c), t in
                                          zip(x, labels, strict=True)))
    import_dataset(ws, "dups", path, target="y")
    cross = by_check(dataset_report(ws, "dups"))["cross_split_duplicates"]
    assert cross["count"] > 0 and cross["leak"]["test"]["copies"] + \
        cross["leak"]["val"]["copies"] == cross["count"]
    make_version(ws, "dups", "dups-v2",
                 remove={(s["split"], s["index"]) for g in cross["items"]
                         for s in g["samples"] if s["split"] != "train"})
    assert "cross_split_duplicates" not in by_check(dataset_report(ws, "dups-v2"))
