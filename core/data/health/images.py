"""Health checks of an image dataset: one pass over every image, then checks on what it found.

The pass reads each image once: the SHA-256 of its bytes (exact duplicates), a full decode
(undecodable and truncated files), its size and mode, the spread of its grey levels
(near-constant images), a perceptual hash (``imagehash.phash``, 64 bits) and a 16x16 colour
thumbnail. Near-duplicates are pairs whose hashes differ in a few bits (resized and recompressed
copies of one picture do; different pictures differ in about half), confirmed by their
thumbnails: on tiny or plain images (8x8 digits, flat shapes) different pictures can share a
hash, never their pixels. Duplicates that sit in different splits are the most serious finding:
a test image that is also in train inflates the test score.
"""

from __future__ import annotations

import hashlib
import logging
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from core.data.dataset import Dataset
from core.data.health.classes import class_findings
from core.data.health.groups import close_pairs, components
from core.data.health.report import finding, fix_args
from core.data.images import open_image, to_channels
from core.data.info import SPLITS
from core.errors import InvalidImage
from core.progress import ProgressFn, no_progress

logger = logging.getLogger(__name__)

HASH_SIZE = 8  # phash of 8x8 DCT coefficients: 64 bits
# Copies of the 64x64 test pictures (resized, recompressed down to JPEG quality 30) differ in at
# most 6 of the 64 bits, and their thumbnails by at most 5.4 grey levels on average. Different
# pictures whose hashes are that close (plain shapes, 8x8 digits) differ by 6.5 or more, except a
# handful of digits drawn near-identically.
NEAR_BITS = 8
NEAR_PIXELS = 6.0  # mean absolute difference of the 16x16 RGB thumbnails (0-255) of copies
THUMB_SIDE = 16
FLAT_STD = 2.0  # grey-level standard deviation (0-255) under which an image is near-constant
SIZE_FACTOR = 3.0  # smaller side this many times off the median: off-size
ASPECT_FACTOR = 2.0  # aspect ratio this many times off the median: odd aspect
MODE_CHANNELS = {"1": 1, "L": 1, "P": 3, "I": 1, "I;16": 1, "F": 1, "LA": 2, "PA": 2, "RGB": 3,
                 "YCbCr": 3, "LAB": 3, "HSV": 3, "RGBA": 4, "CMYK": 4}


@dataclass
class ImageScan:
    """What one pass over the images found, one entry per sample (splits in SPLITS order)."""

    splits: list[str] = field(default_factory=list)
    positions: list[int] = field(default_factory=list)
    ids: list[str] = field(default_factory=list)
    labels: list[int] = field(default_factory=list)
    digests: list[str] = field(default_factory=list)
    hashes: list[np.ndarray | None] = field(default_factory=list)  # 1 uint64 word, None: broken
    thumbs: list[np.ndarray | None] = field(default_factory=list)  # 16x16x3 uint8
    sizes: list[tuple[int, int]] = field(default_factory=list)
    modes: list[str] = field(default_factory=list)
    stds: list[float] = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.splits)


def scan_images(dataset: Dataset, progress: ProgressFn = no_progress) -> ImageScan:
    """Read every image of ``dataset`` once (see the module docstring)."""
    import imagehash

    scan = ImageScan()
    total = len(dataset)
    for split in SPLITS:
        ids, labels = dataset.ids(split), dataset.labels(split)
        for i in range(dataset.size(split)):
            scan.splits.append(split)
            scan.positions.append(i)
            scan.ids.append(ids[i])
            scan.labels.append(int(labels[i]))
            _read_one(scan, dataset, split, i, imagehash)
            progress(len(scan), total, "reading images")
    return scan


def _read_one(scan: ImageScan, dataset: Dataset, split: str, i: int, imagehash: Any) -> None:
    path = dataset.path(split, i)
    try:
        if path is not None:
            data = path.read_bytes()
            scan.digests.append(hashlib.sha256(data).hexdigest())
            img = open_image(data)
        else:  # an in-memory dataset: the pixels are the content
            img = dataset.raw(split, i)
            arr = np.ascontiguousarray(np.asarray(img))
            scan.digests.append(hashlib.sha256(f"{arr.shape}".encode() + arr.data).hexdigest())
        gray = to_channels(img, 1)
    except (InvalidImage, OSError) as exc:
        if len(scan.digests) < len(scan.splits):
            scan.digests.append("")
        scan.errors[len(scan.splits) - 1] = str(exc)
        scan.hashes.append(None)
        scan.thumbs.append(None)
        scan.sizes.append((0, 0))
        scan.modes.append("")
        scan.stds.append(0.0)
        return
    bits = imagehash.phash(gray, hash_size=HASH_SIZE).hash
    scan.hashes.append(np.packbits(bits.ravel()).view(">u8").astype(np.uint64))
    colour = to_channels(img, 3) if MODE_CHANNELS.get(img.mode, 3) > 1 else gray.convert("RGB")
    scan.thumbs.append(np.asarray(colour.resize((THUMB_SIDE, THUMB_SIDE), Image.BILINEAR)))
    scan.sizes.append(img.size)
    scan.modes.append(img.mode)
    scan.stds.append(float(np.asarray(gray.resize((32, 32)), dtype=np.float32).std()))


# -- the checks ----------------------------------------------------------------------------------


def image_findings(dataset: Dataset, scan: ImageScan) -> list[dict[str, Any]]:
    """Every image finding of ``scan``, and the class checks."""
    classes = dataset.info.classes
    exact = _exact_groups(scan)
    near = _near_groups(scan, exact)
    found = [
        _undecodable(scan, classes),
        _copies_finding("exact", scan, classes, exact),
        _copies_finding("near", scan, classes, near),
        _cross_split(scan, classes, exact + near),
        _flat(scan, classes),
        _off_size(scan, classes),
        _odd_channels(scan, classes),
        *class_findings(classes, dataset.info.class_counts_by_split),
    ]
    return [f for f in found if f is not None]


def sample(scan: ImageScan, k: int, classes: list[str], **detail: Any) -> dict[str, Any]:
    """A report item naming sample ``k`` of the scan."""
    return {"split": scan.splits[k], "index": scan.positions[k], "id": scan.ids[k],
            "label": classes[scan.labels[k]], **detail}


def _group(scan: ImageScan, members: list[int], classes: list[str]) -> dict[str, Any]:
    return {"samples": [sample(scan, k, classes) for k in members]}


def _exact_groups(scan: ImageScan) -> list[list[int]]:
    by_digest: dict[str, list[int]] = {}
    for k, digest in enumerate(scan.digests):
        if digest and k not in scan.errors:
            by_digest.setdefault(digest, []).append(k)
    return [members for members in by_digest.values() if len(members) > 1]


def _near_groups(scan: ImageScan, exact: list[list[int]]) -> list[list[int]]:
    """Groups of different files that are near-copies; exact copies of one file count once.
    Near-constant images are left out: every blank image "looks like" every other."""
    first_of = {k: members[0] for members in exact for k in members}
    keep = [k for k, h in enumerate(scan.hashes)
            if h is not None and first_of.get(k, k) == k and scan.stds[k] >= FLAT_STD]
    if len(keep) < 2:
        return []
    i, j = close_pairs(np.stack([scan.hashes[k] for k in keep]), NEAR_BITS)
    thumbs = np.stack([scan.thumbs[k] for k in keep]).astype(np.int16)
    same = np.abs(thumbs[i] - thumbs[j]).mean(axis=(1, 2, 3)) <= NEAR_PIXELS
    i, j = i[same], j[same]
    copies = {members[0]: members for members in exact}
    return [sorted(m for r in group for m in copies.get(keep[r], [keep[r]]))
            for group in components(len(keep), i, j)]


def _undecodable(scan: ImageScan, classes: list[str]) -> dict[str, Any] | None:
    if not scan.errors:
        return None
    items = [sample(scan, k, classes, detail=message) for k, message in scan.errors.items()]
    return finding("undecodable", "error", f"{len(items)} undecodable or truncated image(s)",
                   "These files cannot be decoded (damaged or cut short): training skips them, "
                   "so they only cost time and hide samples you meant to use.", items,
                   fix=fix_args("--remove", "undecodable", label="Remove them"))


# The two kinds of copies: (check, title, what the copies are, fix kind, fix label).
_COPIES = {
    "exact": ("exact_duplicates", "exact duplicate(s)",
              "image(s) are stored more than once ({extra} extra copies, byte for byte): they "
              "weigh double in training.", "exact-duplicates", "Keep one copy of each"),
    "near": ("near_duplicates", "near-duplicate(s)",
             "picture(s) appear as several files that differ only by size, compression or "
             f"small edits (perceptual hashes within {NEAR_BITS} of {HASH_SIZE ** 2} bits, "
             f"thumbnails within {NEAR_PIXELS:.0f} grey levels).", "near-duplicates",
             "Keep one of each"),
}


def _copies_finding(kind: str, scan: ImageScan, classes: list[str], groups: list[list[int]]
                    ) -> dict[str, Any] | None:
    """Exact or near copies within the dataset (``kind``: a key of ``_COPIES``)."""
    if not groups:
        return None
    check, title, what, removal, label = _COPIES[kind]
    extra = sum(len(g) - 1 for g in groups)
    mixed = sum(len({scan.labels[k] for k in g}) > 1 for g in groups)
    labels = f" {mixed} group(s) carry different labels for the same image." if mixed else ""
    return finding(check, "warning", f"{extra} {title}",
                   f"{len(groups)} {what.format(extra=extra)}{labels}",
                   [_group(scan, g, classes) for g in groups], count=extra,
                   fix=fix_args("--remove", removal, label=label))


def _cross_split(scan: ImageScan, classes: list[str], groups: list[list[int]]
                 ) -> dict[str, Any] | None:
    merged = components_of(len(scan), groups)
    spanning = [g for g in merged if len({scan.splits[k] for k in g}) > 1]
    if not spanning:
        return None
    leaked = {s: sorted({k for g in spanning for k in g if scan.splits[k] == s
                         and any(SPLITS.index(scan.splits[m]) < SPLITS.index(s) for m in g)})
              for s in SPLITS[1:]}
    sizes = Counter(scan.splits)
    leak = {s: {"copies": len(ks), "of": sizes[s], "share": round(len(ks) / sizes[s], 4)}
            for s, ks in leaked.items() if sizes[s]}
    parts = [f"{v['copies']} of {v['of']} {s} images ({v['share']:.1%})" for s, v in leak.items()
             if v["copies"]]
    message = (f"{', and '.join(parts)} also appear in an earlier split (train, or val for "
               "test). A model is scored on pictures it has seen: its validation and test "
               "scores are inflated.")
    result = finding("cross_split_duplicates", "error",
                     f"{sum(len(v) for v in leaked.values())} image(s) shared across splits",
                     message, [_group(scan, g, classes) for g in spanning],
                     count=sum(len(v) for v in leaked.values()),
                     fix=fix_args("--remove", "cross-split-duplicates",
                                  label="Remove the copies from val and test"))
    result["leak"] = leak
    return result


def components_of(n: int, groups: list[list[int]]) -> list[list[int]]:
    """Merge overlapping groups of sample numbers (exact and near copies of one picture)."""
    i = np.array([g[0] for g in groups for _ in g[1:]], dtype=np.int64)
    j = np.array([m for g in groups for m in g[1:]], dtype=np.int64)
    return components(n, i, j)


def _flat(scan: ImageScan, classes: list[str]) -> dict[str, Any] | None:
    items = [sample(scan, k, classes, detail=f"grey-level std {std:.2f}")
             for k, std in enumerate(scan.stds) if k not in scan.errors and std < FLAT_STD]
    if not items:
        return None
    return finding("near_constant", "warning", f"{len(items)} near-constant image(s)",
                   "These images are (almost) a single colour: blank frames, failed captures "
                   "or placeholders carry no information about their class.", items,
                   fix=fix_args("--remove", "near-constant", label="Remove them"))


def _off_size(scan: ImageScan, classes: list[str]) -> dict[str, Any] | None:
    good = [k for k in range(len(scan)) if k not in scan.errors]
    if len(good) < 2:
        return None
    sides = np.array([min(scan.sizes[k]) for k in good], dtype=np.float64)
    aspects = np.array([scan.sizes[k][0] / scan.sizes[k][1] for k in good])
    side, aspect = float(np.median(sides)), float(np.median(aspects))
    items = []
    for k, s, a in zip(good, sides, aspects, strict=True):
        reasons = []
        if not side / SIZE_FACTOR <= s <= side * SIZE_FACTOR:
            reasons.append(f"smaller side {int(s)} px (typical {int(side)})")
        if not aspect / ASPECT_FACTOR <= a <= aspect * ASPECT_FACTOR:
            reasons.append(f"aspect {a:.2f} (typical {aspect:.2f})")
        if reasons:
            w, h = scan.sizes[k]
            items.append(sample(scan, k, classes, detail=f"{w}x{h}: " + ", ".join(reasons)))
    if not items:
        return None
    return finding("off_size", "info", f"{len(items)} image(s) far off the typical size",
                   "Training resizes every image to one square size: these are blown up, "
                   "shrunk a lot or squashed. Check that they belong (thumbnails, banners, "
                   "screenshots).", items)


def _odd_channels(scan: ImageScan, classes: list[str]) -> dict[str, Any] | None:
    channels = [MODE_CHANNELS.get(m, 0) for m in scan.modes]
    counted = Counter(c for k, c in enumerate(channels) if k not in scan.errors)
    if len(counted) < 2:
        return None
    usual = counted.most_common(1)[0][0]
    items = [sample(scan, k, classes, detail=f"mode {scan.modes[k]}")
             for k, c in enumerate(channels) if k not in scan.errors and c != usual]
    return finding("odd_channels", "info", f"{len(items)} image(s) with an unusual channel count",
                   f"Most images have {usual} channel(s); these differ (greyscale among colour, "
                   "transparency, CMYK). They are converted for training, which may not be "
                   "what they look like.", items)


def image_stats(scan: ImageScan) -> dict[str, Any]:
    """A summary of the pass, for the report's header."""
    good = [k for k in range(len(scan)) if k not in scan.errors]
    sides = [min(scan.sizes[k]) for k in good]
    return {"images": len(scan), "decoded": len(good),
            "median_side": int(np.median(sides)) if sides else 0,
            "modes": dict(Counter(scan.modes[k] for k in good))}
