"""The built-in datasets. Each is a small builder registered by name; results are cached."""

from __future__ import annotations

from typing import Any

import numpy as np

from core.data.dataset import ArrayDataset, split_info, tabular_info
from core.data.images import channel_stats
from core.data.registry import register_builtin
from core.data.shapes import SHAPE_CLASSES, generate_shapes
from core.data.splits import stratified_split


@register_builtin("digits")
def digits() -> ArrayDataset:
    pixels, target = _digits_arrays()
    images = np.rint(pixels * (255.0 / 16.0)).astype(np.uint8)  # 0..16 -> 0..255
    return image_dataset(
        "digits",
        images,
        target,
        classes=[str(d) for d in range(10)],
        image_size=8,
        description="Handwritten digits (scikit-learn): 1,797 grayscale 8x8 images, 10 classes.",
    )


@register_builtin("shapes")
def shapes() -> ArrayDataset:
    images, labels, masks = generate_shapes()
    return image_dataset(
        "shapes",
        images,
        labels,
        classes=list(SHAPE_CLASSES),
        image_size=64,
        masks=masks,
        description=(
            "Generated RGB 64x64 circles, squares, triangles and stars of random colour, size, "
            "position and rotation on a noisy background, with each shape's pixel mask."
        ),
    )


@register_builtin("iris")
def iris() -> ArrayDataset:
    from sklearn.datasets import load_iris

    return _sklearn_table("iris", load_iris(), "Iris flowers: 150 samples, 4 measurements.")


@register_builtin("wine")
def wine() -> ArrayDataset:
    from sklearn.datasets import load_wine

    return _sklearn_table("wine", load_wine(), "Wine cultivars: 178 samples, 13 chemical features.")


@register_builtin("breast_cancer")
def breast_cancer() -> ArrayDataset:
    from sklearn.datasets import load_breast_cancer

    return _sklearn_table(
        "breast_cancer",
        load_breast_cancer(),
        "Breast cancer diagnosis (Wisconsin): 569 samples, 30 cell-nucleus features.",
    )


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (N, 8, 8) pixels 0..16 and labels.

    Read from the data file scikit-learn ships, without importing scikit-learn: that import
    costs 1-2 s on a small CPU, more than a whole 10-epoch fit of digits, and every job that
    trains, evaluates or explains a digits run paid it. ``load_digits`` is the fallback should
    the file ever move.
    """
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.origin).parent / "datasets" / "data" / "digits.csv.gz" if spec else None
    if path is None or not path.is_file():
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.images, bunch.target
    data = np.loadtxt(path, delimiter=",")  # what load_digits reads: 64 pixels, then the label
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)


def _sklearn_table(name: str, bunch: Any, description: str) -> ArrayDataset:
    return table_dataset(
        name,
        np.asarray(bunch.data, dtype=np.float32),
        np.asarray(bunch.target),
        classes=[str(c) for c in bunch.target_names],
        feature_names=[str(f) for f in bunch.feature_names],
        description=description,
    )


def image_dataset(
    name: str,
    images: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    image_size: int,
    description: str,
    masks: np.ndarray | None = None,
) -> ArrayDataset:
    """An in-memory image dataset: uint8 (N,H,W) or (N,H,W,3), split and described."""
    labels = np.asarray(labels, dtype=np.int64)
    splits = stratified_split(labels)
    channels = 1 if images.ndim == 3 else images.shape[-1]
    mean, std = channel_stats([images[splits["train"]]], channels)
    info = split_info(name, "image", classes, labels, splits, channels=channels,
                      image_size=image_size, mean=mean, std=std, description=description)
    return ArrayDataset(info, _frozen(images), _frozen(labels), splits, _frozen(masks))


def table_dataset(
    name: str,
    x: np.ndarray,
    labels: np.ndarray,
    classes: list[str],
    feature_names: list[str],
    description: str,
) -> ArrayDataset:
    """An in-memory tabular dataset: float32 rows, split and described."""
    labels = np.asarray(labels, dtype=np.int64)
    info, splits = tabular_info(name, x, labels, classes, feature_names, description=description)
    return ArrayDataset(info, _frozen(x), _frozen(labels), splits)


def _frozen(arr: np.ndarray | None) -> np.ndarray | None:
    # Built-ins are cached and shared by every caller in the process: nobody may edit them.
    if arr is not None:
        arr.setflags(write=False)
    return arr
