"""One preprocessing: the project's (the torch path of predict and evaluate) and a bundle's (the
``runtime/`` folder as export copies it, run by a separate Python outside the repository) give
the same array, bit for bit, over every image mode and a few sizes, decoded from real files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from core.data.info import DatasetInfo
from core.data.transforms import make_preprocess, preprocess_spec
from core.deploy.bundle import add_server

SIZES = [(5, 7), (8, 8), (33, 20)]  # (width, height): smaller, equal and larger than the target
MODES = ["1", "L", "P", "RGB", "RGBA", "CMYK", "I", "I;16", "F"]
# What the runtime copied into a bundle computes, with nothing of the project importable.
BUNDLE_SIDE = """
import json, sys
import numpy as np
from runtime.images import open_image
from runtime.preprocess import image_array
specs, files, out = json.loads(sys.argv[1]), json.loads(sys.argv[2]), sys.argv[3]
arrays = {f"{key}|{name}": image_array(open_image(path), spec)
          for key, spec in specs.items() for name, path in files.items()}
np.savez(out, **arrays)
"""


def info(channels: int, size: int) -> DatasetInfo:
    mean, std = ([0.3], [0.2]) if channels == 1 else ([0.5, 0.4, 0.3], [0.2, 0.25, 0.0])
    return DatasetInfo(name=f"c{channels}", modality="image", classes=["a", "b"],
                       split_counts={}, channels=channels, image_size=size, mean=mean, std=std)


INFOS = {"gray8": info(1, 8), "rgb16": info(3, 16)}


def sample(mode: str, size: tuple[int, int], variant: int = 0) -> Image.Image:
    """A seeded image in ``mode`` whose values use the range that mode is for."""
    rng = np.random.default_rng(zlib.crc32(repr((mode, size, variant)).encode()))
    w, h = size
    if mode == "1":
        return Image.fromarray(rng.integers(0, 2, (h, w)).astype(bool))
    if mode == "I;16":
        return Image.fromarray(rng.integers(0, 65536, (h, w)).astype(np.uint16))
    if mode == "I":  # three ranges: 8-bit values, 16-bit values, wide signed values
        high = [(0, 256), (0, 65536), (-70_000, 9_000_000)][variant]
        return Image.fromarray(rng.integers(*high, (h, w)).astype(np.int32), mode="I")
    if mode == "F":  # values in [0, 1] (x 255), beyond 1 (as is), and a NaN
        arr = rng.random((h, w), dtype=np.float32) * (1.0 if variant == 0 else 300.0)
        arr[0, 0] = np.nan
        return Image.fromarray(arr, mode="F")
    base = Image.fromarray(rng.integers(0, 256, (h, w, 4), dtype=np.uint8), mode="RGBA")
    if mode == "P":
        img = base.convert("RGB").convert("P", palette=Image.Palette.ADAPTIVE, colors=16)
        if variant:
            img.info["transparency"] = 3
        return img
    return base if mode == "RGBA" else base.convert(mode)


def write_samples(folder: Path) -> dict[str, str]:
    files = {}
    for mode in MODES:
        for size in SIZES:
            for variant in range({"I": 3, "F": 2, "P": 2}.get(mode, 1)):
                img = sample(mode, size, variant)
                fmt = "TIFF" if mode in ("CMYK", "I", "F") else "PNG"
                name = f"{mode.replace(';', '_')}-{size[0]}x{size[1]}-{variant}.{fmt.lower()}"
                path = folder / name
                img.save(path, fmt)
                assert Image.open(path).mode == mode  # the file really holds that mode
                files[name] = str(path)
    return files


@pytest.fixture(scope="module")
def bundle_arrays(tmp_path_factory) -> tuple[dict[str, str], dict[str, np.ndarray]]:
    """Samples on disk, and the arrays a bundle's own runtime makes of them."""
    root = tmp_path_factory.mktemp("parity")
    (root / "images").mkdir()
    files = write_samples(root / "images")
    bundle = root / "bundle"
    bundle.mkdir()
    add_server(bundle)  # exactly what export puts in a bundle
    specs = {key: preprocess_spec(i) for key, i in INFOS.items()}
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    out = root / "bundle.npz"
    proc = subprocess.run([sys.executable, "-s", "-c", BUNDLE_SIDE, json.dumps(specs),
                           json.dumps(files), str(out)], cwd=bundle, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with np.load(out) as npz:
        return files, {k: npz[k] for k in npz.files}


@pytest.mark.parametrize("key", sorted(INFOS))
def test_core_and_bundle_preprocess_every_mode_identically(bundle_arrays, key: str) -> None:
    files, bundle = bundle_arrays
    preprocess = make_preprocess(INFOS[key])
    channels, size = INFOS[key].channels, INFOS[key].image_size
    assert len(files) == 3 * (len(MODES) + 4)  # I has 3 variants, F and P 2
    for name, path in files.items():
        want = preprocess(path).numpy()  # the project's path: a file -> open -> tensor
        got = bundle[f"{key}|{name}"]
        assert got.dtype == np.float32 and got.shape == want.shape == (channels, size, size)
        assert np.array_equal(got, want), f"{key} {name}: max diff {np.abs(got - want).max()}"


def test_32_bit_images_follow_one_documented_rule(bundle_arrays) -> None:
    """``I`` within 0..255 as is, within 0..65535 / 257, wider: stretched by its own range."""
    from core.data.images import to_channels

    def gray(values: list[int]) -> list[int]:
        img = Image.fromarray(np.asarray([values], dtype=np.int32), mode="I")
        return np.asarray(to_channels(img, 1)).ravel().tolist()

    assert gray([0, 100, 255]) == [0, 100, 255]
    assert gray([0, 257 * 100, 65535]) == [0, 100, 255]
    assert gray([-1000, 0, 99_000]) == [0, 3, 255]  # stretched: min -> 0, max -> 255
    assert gray([70_000, 70_000]) == [0, 0]  # flat: no division by zero
    files, bundle = bundle_arrays
    wide = next(n for n in files if n.startswith("I-8x8-2"))  # 8x8: no resize in the way
    pixels = np.rint((bundle[f"gray8|{wide}"] * 0.2 + 0.3) * 255)
    assert pixels.min() == 0 and pixels.max() == 255  # stretched, not clipped to white
