"""Dataset health: the time of a health check per 1,000 images, and of opening the stored report.

1. ``folder_64px`` and ``folder_256px``: generated ImageFolders (``--images`` pictures: random
   gradients with coloured shapes, PNG and 1 in 5 JPEG, 2 classes) imported into a temporary
   workspace, then checked (``dataset_report(..., refresh=True)``: read, hash, decode, perceptual
   hash and thumbnail of every image, then every check). Seconds in all and per 1,000 images,
   wall clock and CPU time of this process (the CPU time is what a busy shared box does not
   inflate).
2. ``builtin_shapes``: the in-memory ``shapes`` built-in (2,000 64x64 images), checked the same way.
3. ``stored``: opening the stored report again (fingerprint compared, nothing recomputed), and
   the ratio of a check over reopening its report.
4. ``pairs_20k``: the near-duplicate pair search alone on 20,000 random 64-bit hashes (all pairs,
   block by block): how the one quadratic step scales.

Prints one JSON object.

    python benchmarks/health.py [--images 1000]
"""

from __future__ import annotations

import argparse
import io
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from PIL import Image, ImageDraw  # noqa: E402


def scene(rng: np.random.Generator, size: int) -> Image.Image:
    y, x = np.mgrid[0:size, 0:size] / size
    a, b = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    img = Image.fromarray(((a * x[..., None] + b * (1 - y[..., None])) / 1.5).astype(np.uint8))
    draw = ImageDraw.Draw(img)
    for _ in range(4):
        x0, y0 = (int(v) for v in rng.integers(0, size * 3 // 4, 2))
        w, h = (int(v) for v in rng.integers(size // 8, size // 2, 2))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        (draw.ellipse if rng.random() < 0.5 else draw.rectangle)([x0, y0, x0 + w, y0 + h],
                                                                 fill=colour)
    return img


def write_folder(root: Path, n: int, size: int) -> None:
    rng = np.random.default_rng(0)
    for k in range(n):
        folder = root / ("a" if k % 2 else "b")
        folder.mkdir(parents=True, exist_ok=True)
        img = scene(rng, size)
        if k % 5 == 0:
            out = io.BytesIO()
            img.save(out, "JPEG", quality=85)
            (folder / f"{k:05d}.jpg").write_bytes(out.getvalue())
        else:
            img.save(folder / f"{k:05d}.png")


def timed_check(ws, name: str) -> dict:
    from core.data.health import dataset_report

    started, cpu = time.perf_counter(), time.process_time()
    report = dataset_report(ws, name, refresh=True)
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    started = time.perf_counter()
    dataset_report(ws, name)
    reopen = time.perf_counter() - started
    return {"images": report["samples"], "seconds": round(seconds, 3),
            "seconds_per_1000_images": round(1000 * seconds / report["samples"], 3),
            "cpu_seconds_per_1000_images": round(1000 * cpu / report["samples"], 3),
            "findings": [f["check"] for f in report["findings"]],
            "reopen_seconds": round(reopen, 4), "check_over_reopen": round(seconds / reopen, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    args = parser.parse_args()

    from core.data import import_dataset
    from core.data.health.groups import close_pairs
    from core.workspace import Workspace

    out: dict = {"images": args.images}
    with tempfile.TemporaryDirectory() as tmp, Workspace.open(Path(tmp) / "ws") as ws:
        dataset_report_warmup(ws)
        for size in (64, 256):
            folder = Path(tmp) / f"src{size}"
            write_folder(folder, args.images, size)
            import_dataset(ws, f"bench{size}", folder)
            out[f"folder_{size}px"] = timed_check(ws, f"bench{size}")
        out["builtin_shapes"] = timed_check(ws, "shapes")
    hashes = np.random.default_rng(0).integers(0, 2**63, (20_000, 1), dtype=np.int64)
    started, cpu = time.perf_counter(), time.process_time()
    close_pairs(hashes.astype(np.uint64), 8)
    out["pairs_20k"] = {"hashes": 20_000, "seconds": round(time.perf_counter() - started, 3),
                        "cpu_seconds": round(time.process_time() - cpu, 3)}
    print(json.dumps(out, indent=1))


def dataset_report_warmup(ws) -> None:
    """Pay the library imports (imagehash, scipy, scikit-learn) before anything is timed."""
    from core.data.health import dataset_report

    dataset_report(ws, "iris", refresh=True)
    import imagehash  # noqa: F401
    import scipy.sparse.csgraph  # noqa: F401


if __name__ == "__main__":
    main()
