"""Importing datasets (folder, ZIP, CSV), and refusing unsafe or broken input cleanly."""

from __future__ import annotations

import io
import json
import stat
import struct
import uuid
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from torch.utils.data import DataLoader

from core.data import (
    delete_dataset,
    get_info,
    import_dataset,
    list_datasets,
    load_dataset,
    open_image,
)
from core.data.archive import _extract_one
from core.data.importers import import_zip
from core.data.torchdata import build_torch_split, collate_skipping
from core.errors import (
    DatasetNotFound,
    InvalidArchive,
    InvalidImage,
    InvalidTable,
    UserError,
)
from core.workspace import Workspace

COLOURS = {"cat": (200, 40, 40), "dog": (40, 200, 40), "owl": (40, 40, 200)}


# --- helpers -----------------------------------------------------------------------------------


def write_image(path: Path, colour=(128, 128, 128), size=(20, 16), mode="RGB", fmt=None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    img = Image.new("RGB", size, colour)
    pixels = np.asarray(img).copy()
    pixels[::3] //= 2  # some texture, so JPEGs are not trivially small
    Image.fromarray(pixels).convert(mode).save(path, format=fmt)
    return path


def image_folder(root: Path, per_class: int = 5, classes=("cat", "dog", "owl"), **kw) -> Path:
    for cls in classes:
        for k in range(per_class):
            write_image(root / cls / f"{cls}{k}.png", COLOURS.get(cls, (9, 9, 9)), **kw)
    return root


def big_png(path: Path, side: int = 20_000) -> Path:
    """A valid 1-bit side x side PNG that is only a few KB on disk (zeros compress well)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    row = b"\x00" * (1 + (side + 7) // 8)  # filter byte + packed bits
    packer = zlib.compressobj(9)
    idat = b"".join(packer.compress(row) for _ in range(side)) + packer.flush()
    header = struct.pack(">IIBBBBB", side, side, 1, 0, 0, 0, 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", idat)
                     + chunk(b"IEND", b""))
    return path


def make_zip(path: Path, entries: dict[str, bytes], *, symlinks: dict[str, str] = ()) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in entries.items():
            archive.writestr(zipfile.ZipInfo(name), data, compress_type=zipfile.ZIP_DEFLATED)
        for name, target in dict(symlinks).items():
            info = zipfile.ZipInfo(name)
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            archive.writestr(info, target)
    return path


def png_bytes(colour=(1, 2, 3)) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (12, 12), colour).save(buf, format="PNG")
    return buf.getvalue()


def valid_entries(prefix: str = "") -> dict[str, bytes]:
    return {f"{prefix}{cls}/{k}.png": png_bytes(COLOURS[cls]) for cls in ("cat", "dog")
            for k in range(3)}


def snapshot(root: Path) -> dict[str, int]:
    return {p.relative_to(root).as_posix(): (p.stat().st_size if p.is_file() else -1)
            for p in root.rglob("*")}


@pytest.fixture
def clean(home: Path, tmp_path: Path):
    """Asserts that a failing import leaves tmp_path (workspace included) exactly as it was."""
    (home / "datasets").mkdir(exist_ok=True)

    class Checker:
        def __enter__(self):
            self.before = snapshot(tmp_path)
            return self

        def __exit__(self, *exc):
            assert snapshot(tmp_path) == self.before
            assert not list(tmp_path.parent.glob("evil*"))
            return False

    return Checker()


# --- folders -----------------------------------------------------------------------------------


def test_import_folder_auto_split(home: Path, tmp_path: Path, workspace: Workspace) -> None:
    src = image_folder(tmp_path / "src", per_class=10)
    (src / ".DS_Store").write_bytes(b"\x00junk")
    (src / "cat" / "Thumbs.db").write_bytes(b"junk")
    (src / "cat" / "notes.txt").write_text("not an image")
    (src / "dog" / ".hidden.png").write_bytes(b"not even a png")
    calls: list[tuple[int, int]] = []
    info = import_dataset(workspace, "pets", src, progress=lambda d, t: calls.append((d, t)))

    assert info.name == "pets" and not info.builtin and info.modality == "image"
    assert info.classes == ["cat", "dog", "owl"] and info.channels == 3
    assert info.image_size == 16  # small images: their median side
    assert sum(info.split_counts.values()) == 30 and info.split_counts["train"] == 21
    assert all(count == 7 for count in info.class_counts("train").values())
    assert calls[-1] == (30, 30) and [d for d, _ in calls] == list(range(1, 31))
    assert [i.name for i in list_datasets(workspace)][-1] == "pets"
    assert get_info(workspace, "pets") == info

    folder = home / "datasets" / "pets"
    assert sorted(p.name for p in folder.iterdir()) == ["images", "index.json", "meta.json"]
    assert json.loads((folder / "meta.json").read_text()) == info.to_dict()
    ds = load_dataset(workspace, "pets")
    img = ds.raw("val", 0)
    assert img.mode == "RGB" and ds.path("val", 0).is_file()
    assert ds.ids("val")[0] == ds.path("val", 0).relative_to(folder / "images").as_posix()
    cls = ds.info.classes[ds.labels("val")[0]]
    assert ds.ids("val")[0].startswith(f"{cls}/")
    assert np.allclose(np.asarray(img)[1, 1], COLOURS[cls], atol=2)
    # Same source, same split.
    again = import_dataset(workspace, "pets2", src)
    assert again.split_counts == info.split_counts
    assert load_dataset(workspace, "pets2").ids("test") == ds.ids("test")


def test_import_keeps_a_given_split_and_handles_grayscale(workspace: Workspace,
                                                          tmp_path: Path) -> None:
    src = tmp_path / "src"
    image_folder(src / "train", per_class=4, mode="L", size=(80, 100))
    image_folder(src / "val", per_class=2, mode="L", size=(80, 100))
    image_folder(src / "test", per_class=1, classes=("cat",), mode="L", size=(80, 100))
    info = import_dataset(workspace, "gray", src)
    assert info.split_counts == {"train": 12, "val": 6, "test": 1}
    assert (info.channels, info.image_size) == (1, 64)
    ds = load_dataset(workspace, "gray")
    assert all(i.startswith("train/") for i in ds.ids("train"))
    assert ds.ids("test") == ["test/cat/cat0.png"]
    assert ds.raw("train", 0).mode == "L"


def test_import_tiny_folder(workspace: Workspace, tmp_path: Path) -> None:
    info = import_dataset(workspace, "tiny", image_folder(tmp_path / "src", per_class=3))
    assert info.split_counts == {"train": 3, "val": 3, "test": 3}
    assert all(n >= 1 for n in info.class_counts("train").values())
    one = import_dataset(workspace, "one", image_folder(tmp_path / "one", 1, ("cat", "dog")))
    assert one.split_counts == {"train": 2, "val": 0, "test": 0}


@pytest.mark.parametrize("cut", ["half", "inside-header"])
def test_truncated_jpeg_imports_and_is_skipped_in_training(
    workspace: Workspace, tmp_path: Path, cut: str
) -> None:
    src = image_folder(tmp_path / "src", per_class=6, classes=("cat", "dog"), size=(64, 64))
    bad = write_image(src / "dog" / "broken.jpg", (10, 90, 200), size=(64, 64), fmt="JPEG")
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if cut == "half" else data[:120])
    with pytest.raises(InvalidImage, match="broken.jpg"):
        open_image(bad)
    info = import_dataset(workspace, "broken", src)
    assert sum(info.split_counts.values()) == 13
    assert info.channels == 3 and info.image_size == 64
    assert "1 damaged image" in info.description or cut == "half"
    ds = load_dataset(workspace, "broken")
    skipped, seen = [], 0
    for split in ("train", "val", "test"):
        loader = DataLoader(build_torch_split(ds, split), batch_size=4, collate_fn=collate_skipping)
        for x, y, idx, skip in loader:
            assert x.shape[1:] == (3, 64, 64) and len(x) == len(y) == len(idx)
            seen += len(y)
            skipped += [(split, i) for i in skip]
    assert len(skipped) == 1 and seen == 12
    split, i = skipped[0]
    assert ds.ids(split)[i].endswith("broken.jpg")


def test_all_images_damaged_is_refused(workspace: Workspace, tmp_path: Path, clean) -> None:
    src = tmp_path / "src"
    for cls in ("cat", "dog"):
        (src / cls).mkdir(parents=True)
        (src / cls / "x.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 30)
    with clean, pytest.raises(InvalidImage, match="None of the images"):
        import_dataset(workspace, "bad", src)


@pytest.mark.parametrize(
    "layout, message",
    [
        ({"cat": 3}, "at least 2 class"),
        ({}, "at least 2 class"),
        ({"loose.png": 0}, "inside class folders"),
    ],
)
def test_bad_folder_layouts(workspace: Workspace, tmp_path: Path, clean, layout, message) -> None:
    src = tmp_path / "src"
    src.mkdir()
    for name, n in layout.items():
        if n:
            image_folder(src, per_class=n, classes=(name,))
        else:
            write_image(src / name)
    with clean, pytest.raises(InvalidArchive, match=message):
        import_dataset(workspace, "bad", src)


def test_train_without_val_is_refused(workspace: Workspace, tmp_path: Path, clean) -> None:
    src = image_folder(tmp_path / "src" / "train", per_class=2).parent
    with clean, pytest.raises(InvalidArchive, match="no val/"):
        import_dataset(workspace, "bad", src)


def test_unreadable_image_file_names_the_file(workspace: Workspace, tmp_path: Path, clean) -> None:
    src = image_folder(tmp_path / "src", per_class=3)
    (src / "dog" / "fake.jpg").write_bytes(b"this is not a jpeg at all")
    with clean, pytest.raises(InvalidImage, match="dog/fake.jpg"):
        import_dataset(workspace, "bad", src)


def test_disallowed_format_with_an_image_extension(workspace: Workspace, tmp_path: Path,
                                                   clean) -> None:
    src = image_folder(tmp_path / "src", per_class=3)
    Image.new("RGB", (32, 32)).save(src / "cat" / "icon.png", format="ICO")
    with clean, pytest.raises(InvalidImage, match="allowed format"):
        import_dataset(workspace, "bad", src)


@pytest.mark.parametrize("side", [20_000, 8_000])  # above PIL's own bomb limit, and below it
def test_huge_png_is_refused_by_the_pixel_cap(workspace: Workspace, tmp_path: Path, clean,
                                              side) -> None:
    path = big_png(tmp_path / "bomb.png", side)
    assert path.stat().st_size < 200_000
    with pytest.raises(InvalidImage, match="pixel cap"):
        open_image(path)
    src = image_folder(tmp_path / "src", per_class=3)
    big_png(src / "cat" / "bomb.png")
    with clean, pytest.raises(InvalidImage, match="pixel cap"):
        import_dataset(workspace, "bad", src)


def test_names(workspace: Workspace, tmp_path: Path, clean) -> None:
    src = image_folder(tmp_path / "src", per_class=2)
    (tmp_path / "notes.txt").write_text("hi")
    with clean:
        for bad in ("digits", "Bad Name", "../up", "", "x" * 65, ".hidden"):
            with pytest.raises(UserError):
                import_dataset(workspace, bad, src)
        with pytest.raises(UserError, match="no such file"):
            import_dataset(workspace, "ok", tmp_path / "missing")
        with pytest.raises(UserError, match="expected a folder"):
            import_dataset(workspace, "ok", tmp_path / "notes.txt")
    import_dataset(workspace, "ok", src)
    with pytest.raises(UserError, match="already exists"):
        import_dataset(workspace, "ok", src)


def test_delete_dataset(home: Path, tmp_path: Path, workspace: Workspace) -> None:
    import_dataset(workspace, "gone", image_folder(tmp_path / "src", per_class=2))
    delete_dataset(workspace, "gone")
    assert not (home / "datasets" / "gone").exists()
    assert list((home / "datasets").iterdir()) == []
    with pytest.raises(DatasetNotFound):
        get_info(workspace, "gone")


# --- zip ---------------------------------------------------------------------------------------


def test_import_zip_unwraps_a_single_top_folder(home: Path, tmp_path: Path,
                                                workspace: Workspace) -> None:
    entries = {"data/": b"", **valid_entries("data/"), "__MACOSX/data/._cat": b"\x00\x05",
               "data/.DS_Store": b"junk"}
    archive = make_zip(tmp_path / "pets.zip", entries)
    calls: list[tuple[int, int]] = []
    info = import_dataset(workspace, "zipped", archive, progress=lambda d, t: calls.append((d, t)))
    assert info.classes == ["cat", "dog"] and sum(info.split_counts.values()) == 6
    assert calls and calls[-1][0] == calls[-1][1]
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert sorted(p.name for p in (home / "datasets").iterdir()) == ["zipped"]
    assert load_dataset(workspace, "zipped").ids("train")[0].startswith(("cat/", "dog/"))


def test_import_zip_presplit(workspace: Workspace, tmp_path: Path) -> None:
    entries = {**valid_entries("train/"), **valid_entries("val/")}
    info = import_dataset(workspace, "zs", make_zip(tmp_path / "s.zip", entries))
    assert info.split_counts == {"train": 6, "val": 6, "test": 0}


def _evil_name() -> str:
    return f"evil-{uuid.uuid4().hex}.txt"


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "drive", "backslash", "nested-dotdot"])
def test_zip_path_attacks(workspace: Workspace, tmp_path: Path, clean, kind: str) -> None:
    evil = _evil_name()
    name = {
        "dotdot": f"../{evil}",
        "absolute": f"/tmp/{evil}",
        "drive": f"C:/{evil}",
        "backslash": f"cat\\..\\..\\{evil}",
        "nested-dotdot": f"cat/../../../{evil}",
    }[kind]
    archive = make_zip(tmp_path / "a.zip", {**valid_entries(), name: b"pwned"})
    with clean, pytest.raises(InvalidArchive, match="Refused entry"):
        import_dataset(workspace, "bad", archive)
    assert not (Path("/tmp") / evil).exists()
    assert not list(tmp_path.rglob("evil*"))


def test_zip_symlink_is_refused(workspace: Workspace, tmp_path: Path, clean) -> None:
    links = {"cat/link.png": "/etc/passwd"}
    archive = make_zip(tmp_path / "a.zip", valid_entries(), symlinks=links)
    with clean, pytest.raises(InvalidArchive, match="symbolic links"):
        import_dataset(workspace, "bad", archive)


@pytest.mark.parametrize("second", ["cat/0.png", "CAT/0.PNG"])
def test_zip_duplicates_are_refused(workspace: Workspace, tmp_path: Path, clean,
                                    second: str) -> None:
    archive = tmp_path / "dup.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        for name, data in valid_entries().items():
            zf.writestr(name, data)
        with pytest.warns(UserWarning) if second == "cat/0.png" else _nothing():
            zf.writestr(second, png_bytes())
    with clean, pytest.raises(InvalidArchive, match="duplicate"):
        import_dataset(workspace, "bad", archive)


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_zip_bomb_ratio(workspace: Workspace, tmp_path: Path, clean) -> None:
    archive = make_zip(tmp_path / "bomb.zip", {**valid_entries(), "cat/zeros.png": bytes(50 << 20)})
    assert archive.stat().st_size < 1 << 20
    with clean, pytest.raises(InvalidArchive, match="ZIP bomb"):
        import_dataset(workspace, "bad", archive)


def test_zip_byte_cap(workspace: Workspace, tmp_path: Path, clean) -> None:
    archive = make_zip(tmp_path / "big.zip", {**valid_entries(), "cat/zeros.png": bytes(3 << 20)})
    with clean, pytest.raises(InvalidArchive, match="limit"):
        import_zip(workspace, "bad", archive, max_bytes=1 << 20, max_ratio=10**9)


def test_zip_bytes_are_counted_while_streaming(tmp_path: Path) -> None:
    # zipfile itself never yields more than an entry's declared size, so the streaming count is
    # a second line of defence: check it on its own, with a budget below the real size.
    archive = make_zip(tmp_path / "big.zip", {"cat/zeros.png": bytes(3 << 20)})
    with zipfile.ZipFile(archive) as zf, pytest.raises(InvalidArchive, match="size limit"):
        _extract_one(zf, zf.infolist()[0], tmp_path / "out" / "zeros.png", budget=1 << 20)
    assert (tmp_path / "out" / "zeros.png").stat().st_size <= 1 << 20


def test_zip_entry_cap(workspace: Workspace, tmp_path: Path, clean) -> None:
    archive = make_zip(tmp_path / "many.zip", valid_entries())
    with clean, pytest.raises(InvalidArchive, match="entries"):
        import_zip(workspace, "bad", archive, max_entries=5)
    assert import_zip(workspace, "fine", archive, max_entries=6).split_counts["train"] >= 2


@pytest.mark.parametrize("payload", [b"", b"PK\x03\x04 definitely not a zip" * 10, b"\x00" * 100])
def test_not_a_zip(workspace: Workspace, tmp_path: Path, clean, payload: bytes) -> None:
    path = tmp_path / "upload.zip"
    path.write_bytes(payload)
    with clean, pytest.raises(InvalidArchive, match="empty|not a valid ZIP"):
        import_dataset(workspace, "bad", path)


def test_zip_with_a_bad_image_leaves_nothing(workspace: Workspace, tmp_path: Path, clean) -> None:
    archive = make_zip(tmp_path / "a.zip", {**valid_entries(), "dog/oops.png": b"garbage"})
    with clean, pytest.raises(InvalidImage, match="dog/oops.png"):
        import_dataset(workspace, "bad", archive)


# --- csv ---------------------------------------------------------------------------------------


def _frame(rows: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame({
        "height": rng.normal(170, 10, rows).round(2),
        "weight": rng.normal(70, 5, rows).round(2),
        "flag": rng.integers(0, 2, rows).astype(bool),
        "kind": np.array(["b", "a", "c"])[np.arange(rows) % 3],
    })


def test_import_csv(home: Path, tmp_path: Path, workspace: Workspace) -> None:
    frame = _frame()
    frame.to_csv(tmp_path / "people.csv", index=False)
    info = import_dataset(workspace, "people", tmp_path / "people.csv", target="kind")
    assert info.modality == "tabular" and not info.builtin and info.target == "kind"
    assert info.classes == ["a", "b", "c"]
    assert info.feature_names == ["height", "weight", "flag"]
    assert sum(info.split_counts.values()) == 60
    assert info.feature_ranges["flag"] == [0.0, 1.0]
    folder = home / "datasets" / "people"
    assert sorted(p.name for p in folder.iterdir()) == ["data.csv", "meta.json", "splits.json"]
    ds = load_dataset(workspace, "people")
    train_rows = json.loads((folder / "splits.json").read_text())["train"]
    row = ds.raw("train", 0)
    assert row.dtype == np.float32
    np.testing.assert_allclose(row, frame.iloc[train_rows[0], :3].astype(float), rtol=1e-6)
    assert info.classes[ds.labels("train")[0]] == frame["kind"][train_rows[0]]
    split = build_torch_split(ds, "train")
    assert split[0][0].shape == (3,)


def test_csv_numeric_target_classes_sort_numerically(workspace: Workspace, tmp_path: Path) -> None:
    frame = pd.DataFrame({"x": np.arange(30.0), "y": [10, 2, 1] * 10})
    frame.to_csv(tmp_path / "t.csv", index=False)
    info = import_dataset(workspace, "nums", tmp_path / "t.csv", target="y")
    assert info.classes == ["1", "2", "10"]
    ds = load_dataset(workspace, "nums")
    assert sorted(set(ds.labels("train").tolist())) == [0, 1, 2]


@pytest.mark.parametrize(
    "content, target, message",
    [
        (None, None, "needs a target"),
        (None, "species", "no column 'species'.*height, weight, flag, kind"),
        ("text", "kind", "must be numeric; 'city'"),
        ("missing", "kind", "2 of 60 rows have missing"),
        ("one-class", "kind", "single class"),
        ("empty", "kind", "empty"),
        ("header-only", "kind", "no rows"),
    ],
)
def test_csv_refusals(workspace: Workspace, tmp_path: Path, clean, content, target,
                      message) -> None:
    frame = _frame()
    path = tmp_path / "t.csv"
    if content == "text":
        frame["city"] = "Paris"
    elif content == "missing":
        frame.loc[[3, 7], "height"] = np.nan
    elif content == "one-class":
        frame["kind"] = "a"
    frame.to_csv(path, index=False)
    if content == "empty":
        path.write_bytes(b"")
    elif content == "header-only":
        path.write_text("a,b,kind\n")
    with clean, pytest.raises(InvalidTable, match=message):
        import_dataset(workspace, "bad", path, target=target)
