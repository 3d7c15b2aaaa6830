"""Datasets: the built-ins, splits, images, transforms and the torch views."""

from __future__ import annotations

import io
import json
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader, default_collate

from core.data import (
    DatasetInfo,
    builtin_names,
    delete_dataset,
    get_info,
    list_datasets,
    load_dataset,
    open_image,
)
from core.data.shapes import generate_shapes
from core.data.splits import stratified_split
from core.data.torchdata import CorruptSample, build_torch_split, collate_skipping
from core.data.transforms import (
    make_preprocess,
    make_train_transform,
    preprocess_spec,
    preview_augmentations,
)
from core.errors import DatasetNotFound, InvalidConfig, InvalidImage, InvalidTable, UserError
from core.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
BUILTINS = builtin_names()
IMAGE_BUILTINS = ["digits", "shapes"]
TABULAR_BUILTINS = ["iris", "wine", "breast_cancer"]
ALL_AUGMENT = ["flip", "rotate", "crop", "color"]


# --- built-ins ---------------------------------------------------------------------------------


def test_registry_lists_every_builtin_first(workspace: Workspace) -> None:
    assert BUILTINS == IMAGE_BUILTINS + TABULAR_BUILTINS
    assert [i.name for i in list_datasets(workspace)] == BUILTINS
    assert all(i.builtin for i in list_datasets(workspace))


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_info_matches_its_data(name: str, workspace: Workspace) -> None:
    info = get_info(workspace, name)
    ds = load_dataset(workspace, name)
    assert info == ds.info
    assert json.loads(json.dumps(info.to_dict())) == info.to_dict()
    assert DatasetInfo.from_dict(info.to_dict()) == info
    assert info.num_classes == len(info.classes) >= 2
    assert set(info.split_counts) == {"train", "val", "test"}
    assert sum(info.split_counts.values()) == len(ds)
    for split, count in info.split_counts.items():
        assert ds.size(split) == count == len(ds.labels(split)) == len(ds.ids(split))
        assert ds.labels(split).dtype == np.int64
        assert sum(info.class_counts(split).values()) == count
    ids = [i for split in ("train", "val", "test") for i in ds.ids(split)]
    assert len(set(ids)) == len(ids)
    expected = len(info.feature_names) if info.modality == "tabular" else info.channels
    assert len(info.mean) == len(info.std) == expected


def test_builtin_facts(ws: Workspace) -> None:
    digits, shapes = get_info(ws, "digits"), get_info(ws, "shapes")
    assert (digits.channels, digits.image_size, digits.classes) == (1, 8, list("0123456789"))
    assert sum(digits.split_counts.values()) == 1797
    assert (shapes.channels, shapes.image_size) == (3, 64)
    assert shapes.classes == ["circle", "square", "triangle", "star"]
    assert sum(shapes.split_counts.values()) == 2000
    iris = get_info(ws, "iris")
    assert iris.modality == "tabular" and iris.classes == ["setosa", "versicolor", "virginica"]
    assert iris.feature_names[0] == "sepal length (cm)"
    assert set(iris.feature_ranges) == set(iris.feature_names)
    assert all(lo <= hi for lo, hi in iris.feature_ranges.values())


@pytest.mark.parametrize("name", BUILTINS)
def test_builtin_splits_are_stratified_70_15_15(name: str, ws: Workspace) -> None:
    ds = load_dataset(ws, name)
    total = len(ds)
    everything = np.concatenate([ds.labels(s) for s in ("train", "val", "test")])
    overall = np.bincount(everything) / total
    for split, share in (("train", 0.70), ("val", 0.15), ("test", 0.15)):
        labels = ds.labels(split)
        assert abs(len(labels) / total - share) < 0.03
        shares = np.bincount(labels, minlength=len(overall)) / len(labels)
        assert np.abs(shares - overall).max() < 0.05


@pytest.mark.parametrize("name", BUILTINS)
def test_builtins_are_deterministic(name: str, ws: Workspace) -> None:
    a, b = load_dataset(ws, name), load_dataset(ws, name)
    for split in ("train", "val", "test"):
        np.testing.assert_array_equal(a.labels(split), b.labels(split))
        assert a.ids(split) == b.ids(split)
    first_a, first_b = a.raw("test", 3), b.raw("test", 3)
    np.testing.assert_array_equal(np.asarray(first_a), np.asarray(first_b))


@pytest.mark.parametrize("name", BUILTINS)
def test_raw_types(name: str, ws: Workspace) -> None:
    ds = load_dataset(ws, name)
    sample = ds.raw("train", 0)
    assert ds.path("train", 0) is None
    if ds.info.modality == "image":
        assert isinstance(sample, Image.Image)
        assert sample.mode == ("L" if ds.info.channels == 1 else "RGB")
        assert sample.size == (ds.info.image_size, ds.info.image_size)
    else:
        assert isinstance(sample, np.ndarray) and sample.dtype == np.float32
        assert sample.shape == (len(ds.info.feature_names),)
        assert ds.mask("train", 0) is None
    with pytest.raises(IndexError):
        ds.raw("train", ds.size("train"))
    with pytest.raises(InvalidConfig):
        ds.size("holdout")


def test_digits_pixels_are_scaled_to_bytes(ws: Workspace) -> None:
    pixels = np.asarray(load_dataset(ws, "digits").raw("train", 0))
    assert pixels.dtype == np.uint8 and pixels.max() > 200


def test_builtin_cache_cannot_be_corrupted(ws: Workspace) -> None:
    ds = load_dataset(ws, "digits")
    ds.info.classes.append("oops")
    ds.labels("train")[:] = 0
    ds.array("train")[:] = 0
    fresh = load_dataset(ws, "digits")
    assert get_info(ws, "digits").num_classes == fresh.info.num_classes == 10
    assert len(set(fresh.labels("train").tolist())) == 10
    assert np.asarray(fresh.raw("train", 0)).any()


def test_shapes_masks_lie_on_the_shape_inside_the_image(ws: Workspace) -> None:
    ds = load_dataset(ws, "shapes")
    for split in ("train", "test"):
        for i in range(0, ds.size(split), 37):
            mask = ds.mask(split, i)
            assert mask.dtype == bool and mask.shape == (64, 64)
            assert 0 < mask.sum() < 64 * 64
            assert not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any())
            pixels = np.asarray(ds.raw(split, i)).astype(float)
            # The shape is one flat colour (plus noise), distinct from the background.
            assert np.abs(pixels[mask].mean(0) - pixels[~mask].mean(0)).max() > 40


def test_shapes_generation_is_deterministic_and_fast() -> None:
    start = time.perf_counter()
    images, labels, masks = generate_shapes()
    elapsed = time.perf_counter() - start
    again = generate_shapes()
    assert elapsed < 2.0
    assert images.shape == (2000, 64, 64, 3) and images.dtype == np.uint8
    assert np.bincount(labels).tolist() == [500, 500, 500, 500]
    for x, y in zip((images, labels, masks), again, strict=True):
        np.testing.assert_array_equal(x, y)
    assert masks.reshape(2000, -1).any(1).all()
    assert not np.array_equal(generate_shapes(n=8, seed=1)[0], images[:8])


def test_unknown_dataset_lists_the_available_ones(workspace: Workspace) -> None:
    for call in (get_info, load_dataset, delete_dataset):
        with pytest.raises(DatasetNotFound, match="digits, shapes"):
            call(workspace, "nope")
    with pytest.raises(DatasetNotFound):
        get_info(workspace, "../ws")
    with pytest.raises(UserError, match="built-in"):
        delete_dataset(workspace, "digits")


def test_importing_core_data_does_not_import_torch(tmp_path: Path) -> None:
    code = (
        "import sys, core.data as d\nfrom core.workspace import Workspace\n"
        f"ws = Workspace.open({str(tmp_path)!r}); d.list_datasets(ws); d.get_info(ws, 'digits')\n"
        "from core.data import import_dataset, open_image\n"
        "heavy = [m for m in ('torch', 'torchvision') if m in sys.modules]\n"
        "assert not heavy, heavy\n"
    )
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True, timeout=120)


# --- splits ------------------------------------------------------------------------------------


def test_split_of_tiny_classes() -> None:
    labels = np.repeat(np.arange(5), [1, 2, 3, 4, 20])
    splits = stratified_split(labels)
    again = stratified_split(labels)
    assert all(np.array_equal(splits[s], again[s]) for s in ("train", "val", "test"))
    joined = np.concatenate(list(splits.values()))
    assert sorted(joined.tolist()) == list(range(len(labels)))
    for cls in range(5):
        assert (labels[splits["train"]] == cls).sum() >= 1
    assert (labels[splits["val"]] == 1).sum() == 1  # 2 samples: one each in train and val
    for split in ("train", "val", "test"):
        assert (labels[splits[split]] == 2).sum() == 1  # 3 samples: one per split


# --- images ------------------------------------------------------------------------------------


def _png_bytes(img: Image.Image, fmt: str = "PNG") -> bytes:
    buf = io.BytesIO()
    img.save(buf, format=fmt)
    return buf.getvalue()


def test_open_image_sources(tmp_path: Path) -> None:
    data = _png_bytes(Image.new("RGB", (5, 4), (1, 2, 3)))
    (tmp_path / "a.png").write_bytes(data)
    for source in (data, io.BytesIO(data), tmp_path / "a.png", str(tmp_path / "a.png")):
        img = open_image(source)
        assert img.size == (5, 4) and img.getpixel((0, 0)) == (1, 2, 3)


@pytest.mark.parametrize(
    "payload, message",
    [
        (b"", "not a readable image"),
        (b"hello, I am text", "not a readable image"),
        (_png_bytes(Image.new("RGB", (4, 4)), "PPM"), "allowed format"),
        (_png_bytes(Image.new("RGB", (64, 64)), "ICO"), "allowed format"),
        (_png_bytes(Image.new("RGB", (300, 300)))[:200], "corrupt or truncated"),
    ],
)
def test_open_image_refuses(payload: bytes, message: str) -> None:
    with pytest.raises(InvalidImage, match=message):
        open_image(payload)


def test_open_image_pixel_cap_is_checked_before_decoding() -> None:
    with pytest.raises(InvalidImage, match="pixel cap"):
        open_image(_png_bytes(Image.new("L", (100, 100))), max_pixels=5_000)


def test_open_image_applies_exif_orientation() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotated 90 degrees: stored landscape, shown portrait
    buf = io.BytesIO()
    Image.new("RGB", (40, 20), (200, 10, 10)).save(buf, format="JPEG", exif=exif)
    assert open_image(buf.getvalue()).size == (20, 40)


def test_open_image_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidImage, match="Cannot read"):
        open_image(tmp_path / "missing.png")


# --- transforms --------------------------------------------------------------------------------


@pytest.mark.parametrize("name", BUILTINS)
def test_preprocess_output(name: str, ws: Workspace) -> None:
    ds = load_dataset(ws, name)
    x = make_preprocess(ds.info)(ds.raw("val", 1))
    assert x.dtype == torch.float32
    if ds.info.modality == "image":
        size = ds.info.image_size
        assert x.shape == (ds.info.channels, size, size)
        assert make_preprocess(ds.info, 32)(ds.raw("val", 1)).shape == (ds.info.channels, 32, 32)
    else:
        assert x.shape == (len(ds.info.feature_names),)
        expected = (ds.raw("val", 1) - np.array(ds.info.mean)) / np.array(ds.info.std)
        np.testing.assert_allclose(x.numpy(), expected, rtol=1e-4, atol=1e-4)
    assert json.loads(json.dumps(preprocess_spec(ds.info)))["modality"] == ds.info.modality


def _odd_inputs() -> dict[str, Image.Image]:
    rng = np.random.default_rng(0)
    photo = Image.fromarray(rng.integers(0, 256, (700, 1000, 3), dtype=np.uint8))
    palette = Image.new("P", (30, 20))
    palette.info["transparency"] = 0
    return {
        "rgba": Image.new("RGBA", (40, 30), (255, 0, 0, 128)),
        "cmyk": Image.new("CMYK", (50, 50), (0, 255, 255, 0)),
        "gray": Image.new("L", (17, 23), 99),
        "photo": photo,
        "palette": palette,
        "16bit": Image.fromarray(np.full((12, 12), 40000, dtype=np.uint16)),
        "bilevel": Image.new("1", (9, 9), 1),
        "la": Image.new("LA", (10, 10), (30, 200)),
    }


@pytest.mark.parametrize("kind", list(_odd_inputs()))
@pytest.mark.parametrize("name", IMAGE_BUILTINS)
def test_any_image_mode_gives_the_training_shape(name: str, kind: str, ws: Workspace) -> None:
    info = get_info(ws, name)
    img = _odd_inputs()[kind]
    expected = build_torch_split(load_dataset(ws, name), "val")[0][0].shape
    for transform in (make_preprocess(info), make_train_transform(info, augment=ALL_AUGMENT)):
        x = transform(img)
        assert x.shape == expected and x.dtype == torch.float32
        assert torch.isfinite(x).all()


def test_transparency_is_composited_on_white(ws: Workspace) -> None:
    info = get_info(ws, "shapes")
    clear = make_preprocess(info)(Image.new("RGBA", (8, 8), (0, 0, 0, 0)))
    white = make_preprocess(info)(Image.new("RGB", (8, 8), (255, 255, 255)))
    torch.testing.assert_close(clear, white)


def test_sixteen_bit_is_scaled_not_clipped(ws: Workspace) -> None:
    img = Image.fromarray(np.full((8, 8), 65535 // 2, dtype=np.uint16))
    info = get_info(ws, "digits")
    x = make_preprocess(info)(img)
    pixel = x[0, 0, 0].item() * info.std[0] + info.mean[0]
    assert abs(pixel - 0.5) < 0.01


def test_augmentation_is_reproducible_under_torch_seed(ws: Workspace) -> None:
    info = get_info(ws, "shapes")
    img = load_dataset(ws, "shapes").raw("train", 5)
    transform = make_train_transform(info, augment=ALL_AUGMENT)
    torch.manual_seed(7)
    first = [transform(img) for _ in range(3)]
    torch.manual_seed(7)
    second = [transform(img) for _ in range(3)]
    for a, b in zip(first, second, strict=True):
        torch.testing.assert_close(a, b)
    assert not torch.equal(first[0], first[1])
    assert not torch.equal(first[0], make_preprocess(info)(img))


def test_unknown_augmentation_is_refused(ws: Workspace) -> None:
    with pytest.raises(InvalidConfig, match="blur"):
        make_train_transform(get_info(ws, "shapes"), augment=["blur"])


def test_tabular_ignores_augment_and_takes_dicts(ws: Workspace) -> None:
    info = get_info(ws, "iris")
    row = load_dataset(ws, "iris").raw("train", 0)
    preprocess = make_preprocess(info)
    augmented = make_train_transform(info, augment=ALL_AUGMENT)
    torch.testing.assert_close(augmented(row), preprocess(row))
    as_dict = dict(zip(info.feature_names, row.tolist(), strict=True))
    torch.testing.assert_close(preprocess(as_dict), preprocess(row))
    with pytest.raises(InvalidTable, match="Expected 4 features"):
        preprocess([1.0, 2.0])
    with pytest.raises(InvalidTable, match="Missing features"):
        preprocess({"sepal length (cm)": 1.0})


def test_constant_feature_std_counts_as_one() -> None:
    info = DatasetInfo("t", "tabular", ["a", "b"], {}, feature_names=["f", "g"],
                       mean=[1.0, 0.0], std=[0.0, 2.0])
    torch.testing.assert_close(make_preprocess(info)([3.0, 4.0]), torch.tensor([2.0, 2.0]))


def test_preview_augmentations(ws: Workspace) -> None:
    img = load_dataset(ws, "shapes").raw("train", 0)
    state = torch.get_rng_state()
    views = preview_augmentations(ws, "shapes", img, ALL_AUGMENT, n=6, seed=3)
    assert torch.equal(state, torch.get_rng_state())
    assert len(views) == 6 and all(v.size == (64, 64) and v.mode == "RGB" for v in views)
    again = preview_augmentations(ws, get_info(ws, "shapes"), img, ALL_AUGMENT, n=6, seed=3)
    assert all(np.array_equal(np.asarray(a), np.asarray(b)) for a, b in zip(views, again,
                                                                             strict=True))
    assert len(preview_augmentations(ws, "digits", img, [], n=2, image_size=16)) == 2
    with pytest.raises(UserError, match="image datasets only"):
        preview_augmentations(ws, "iris", img, ["flip"])


# --- torch views -------------------------------------------------------------------------------


def test_digits_dataloader_pass(ws: Workspace) -> None:
    ds = load_dataset(ws, "digits")
    split = build_torch_split(ds, "train")
    assert split.tensors is not None and len(split) == ds.size("train")
    loader = DataLoader(split, batch_size=64, shuffle=True, collate_fn=collate_skipping)
    seen, skipped = [], []
    for x, y, idx, skip in loader:
        assert x.shape[1:] == (1, 8, 8) and x.dtype == torch.float32
        assert y.dtype == torch.int64 and idx.dtype == torch.int64
        np.testing.assert_array_equal(y.numpy(), ds.labels("train")[idx.numpy()])
        seen += idx.tolist()
        skipped += skip
    assert sorted(seen) == list(range(ds.size("train"))) and skipped == []
    # The precomputed tensors are exactly what the shared preprocessing gives per sample.
    preprocess = make_preprocess(ds.info)
    for i in (0, 17, ds.size("train") - 1):
        assert torch.equal(split[i][0], preprocess(ds.raw("train", i)))


@pytest.mark.parametrize("name", BUILTINS)
def test_torch_split_items(name: str, ws: Workspace) -> None:
    ds = load_dataset(ws, name)
    split = build_torch_split(ds, "val")
    x, y, i = split[2]
    assert (y, i) == (int(ds.labels("val")[2]), 2)
    batch = collate_skipping(split.__getitems__([0, 2, 4]))
    assert batch[0].shape == (3, *x.shape) and batch[2].tolist() == [0, 2, 4]
    # Any other collate sees the batch as a sequence of (x, y, i) items.
    default = default_collate(split.__getitems__([0, 2, 4]))
    for mine, theirs in zip(batch[:3], default, strict=True):
        assert torch.equal(mine, theirs)


def test_augmented_training_split_transforms_per_sample(ws: Workspace) -> None:
    ds = load_dataset(ws, "shapes")
    split = build_torch_split(ds, "train", train=True, augment=["flip", "crop"], image_size=32)
    assert split.tensors is None
    torch.manual_seed(0)
    x, _, _ = split[0]
    assert x.shape == (3, 32, 32)
    # Evaluation splits never augment, whatever is asked.
    assert build_torch_split(ds, "val", augment=["flip"]).tensors is not None


def test_collate_skipping_reports_corrupt_samples() -> None:
    good = [(torch.zeros(2), 1, 0), CorruptSample(1), None, (torch.ones(2), 0, 3)]
    x, y, idx, skipped = collate_skipping(good)
    assert x.shape == (2, 2) and y.tolist() == [1, 0] and idx.tolist() == [0, 3]
    assert skipped == [1]
    x, y, idx, skipped = collate_skipping([CorruptSample(5)])
    assert len(y) == 0 and len(idx) == 0 and skipped == [5]
