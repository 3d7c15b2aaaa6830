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


# The feature names scikit-learn's loaders give these tables (its CSV files hold only numbers).
_BREAST_CANCER_FEATURES = [
    name.format(f) for name in ("mean {}", "{} error", "worst {}")
    for f in ("radius", "texture", "perimeter", "area", "smoothness", "compactness", "concavity",
              "concave points", "symmetry", "fractal dimension")]
_TABLES = {  # name: (scikit-learn's data file, its loader, feature names, description)
    "iris": ("iris.csv", "load_iris", [f"{part} {dim} (cm)" for part in ("sepal", "petal")
                                         for dim in ("length", "width")],
             "Iris flowers: 150 samples, 4 measurements."),
    "wine": ("wine_data.csv", "load_wine",
             ["alcohol", "malic_acid", "ash", "alcalinity_of_ash", "magnesium", "total_phenols",
              "flavanoids", "nonflavanoid_phenols", "proanthocyanins", "color_intensity", "hue",
              "od280/od315_of_diluted_wines", "proline"],
             "Wine cultivars: 178 samples, 13 chemical features."),
    "breast_cancer": ("breast_cancer.csv", "load_breast_cancer", _BREAST_CANCER_FEATURES,
                      "Breast cancer diagnosis (Wisconsin): 569 samples, 30 cell-nucleus "
                      "features."),
}


def _register_table(name: str) -> None:
    @register_builtin(name)
    def build() -> ArrayDataset:
        return _sklearn_table(name, *_TABLES[name])


for _table in _TABLES:
    _register_table(_table)


def _digits_arrays() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's digits as (N, 8, 8) pixels 0..16 and labels."""
    data = _sklearn_file("digits.csv.gz")
    if data is None:
        from sklearn.datasets import load_digits

        bunch = load_digits()
        return bunch.images, bunch.target
    data = np.loadtxt(data, delimiter=",")  # what load_digits reads: 64 pixels, then the label
    return data[:, :-1].reshape(-1, 8, 8), data[:, -1].astype(np.int64)


def _sklearn_file(filename: str) -> Any:
    """The path of a data file scikit-learn ships, found without importing scikit-learn: that
    import costs 1-2 s on a small CPU (more than a whole 10-epoch fit of digits), paid by every
    job and by the dashboard's first page. None should the file ever move (the caller then uses
    scikit-learn's loader)."""
    import importlib.util
    from pathlib import Path

    spec = importlib.util.find_spec("sklearn")
    path = Path(spec.origin).parent / "datasets" / "data" / filename if spec else None
    return path if path is not None and path.is_file() else None


def _sklearn_table(name: str, filename: str, loader: str, features: list[str],
                   description: str) -> ArrayDataset:
    """A table scikit-learn ships: its CSV's first line is ``n_samples,n_features,class
    names...``, then one row of features and the label each (what its ``load_*`` reads)."""
    path = _sklearn_file(filename)
    if path is None:
        import sklearn.datasets

        bunch = getattr(sklearn.datasets, loader)()
        x, y, classes = bunch.data, bunch.target, list(bunch.target_names)
    else:
        with open(path) as fh:
            classes = fh.readline().strip().split(",")[2:]
            data = np.loadtxt(fh, delimiter=",")
        x, y = data[:, :-1], data[:, -1].astype(np.int64)
    return table_dataset(name, np.asarray(x, dtype=np.float32), np.asarray(y),
                         classes=[str(c) for c in classes], feature_names=features,
                         description=description)


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
