"""Superpixels for LIME that fit the image: a segmentation is checked, and replaced when it
degenerates.

scikit-image's SLIC with connectivity enforcement (its default) collapses a noisy image into one
or two superpixels: LIME then has a single feature to switch on and off, and its map is one
constant value. SLIC without the enforcement scatters each segment over the noise instead. So a
segmentation is kept only when it is *healthy* (enough segments, none covering most of the
image, each mostly one connected blob), else the next one of ``CHAIN`` is tried; the last, a
grid scaled to the image, always fits.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

MAX_SHARE = 0.5  # no segment may cover more than this share of the image
MIN_COHERENCE = 0.8  # share of pixels inside their segment's largest connected blob
CHOICES = ("auto", "slic", "slic-unconnected", "felzenszwalb", "grid")


def segment(image: np.ndarray, n_segments: int, compactness: float,
            method: str = "auto") -> tuple[np.ndarray, str]:
    """An (H, W) map of segment ids 0..K-1 for an (H, W, 3) uint8 image, and the name of the
    segmentation that made it: ``method``, or with ``auto`` the first healthy one of the chain
    (SLIC, SLIC without connectivity enforcement, Felzenszwalb, a grid)."""
    check_method(method)
    names = [name for name, _ in CHAIN] if method == "auto" else [method]
    makers = dict(CHAIN)
    for name in names:
        segments = _relabel(makers[name](image, n_segments, compactness))
        if method != "auto" or name == "grid" or healthy(segments, n_segments):
            return segments, name
    raise AssertionError("unreachable: the grid always fits")  # pragma: no cover


def check_method(method: str) -> str:
    """``method`` if it names a segmentation, else a clear ``InvalidConfig``."""
    if method not in CHOICES:
        from core.errors import InvalidConfig

        raise InvalidConfig(f"LIME: segmentation must be one of {', '.join(CHOICES)}; got "
                            f"{method!r}.")
    return method


def healthy(segments: np.ndarray, n_segments: int) -> bool:
    """Enough segments (half the requested count, at most 8 needed), none larger than
    ``MAX_SHARE`` of the image, and segments that are blobs rather than scattered pixels."""
    count = int(segments.max()) + 1
    needed = max(2, min(n_segments, 16, segments.size) // 2)
    if count < needed:
        return False
    sizes = np.bincount(segments.ravel())
    return sizes.max() <= MAX_SHARE * segments.size and coherence(segments) >= MIN_COHERENCE


def coherence(segments: np.ndarray) -> float:
    """The share of pixels that lie in their segment's largest 4-connected component."""
    from scipy import ndimage

    kept = 0
    for label in range(int(segments.max()) + 1):
        blobs, count = ndimage.label(segments == label)
        if count:
            kept += int(np.bincount(blobs.ravel())[1:].max())
    return kept / segments.size


def grid(image: np.ndarray, n_segments: int, _compactness: float = 0.0) -> np.ndarray:
    """Square cells sized so that about ``n_segments`` of them cover the image."""
    height, width = image.shape[:2]
    side = max(1, int(np.ceil(np.sqrt(height * width / max(1, n_segments)))))
    rows, cols = np.arange(height) // side, np.arange(width) // side
    return rows[:, None] * (int(cols.max()) + 1) + cols[None, :]


def _slic(image: np.ndarray, n_segments: int, compactness: float,
          connected: bool = True) -> np.ndarray:
    from skimage.segmentation import slic

    return slic(image, n_segments=n_segments, compactness=compactness, start_label=0,
                channel_axis=-1, enforce_connectivity=connected)


def _felzenszwalb(image: np.ndarray, n_segments: int, _compactness: float) -> np.ndarray:
    from skimage.segmentation import felzenszwalb

    # A small scale with a minimum segment size of one n-th of the image: it follows edges
    # (a coloured square on noise comes out whole) yet merges the noise into about n regions.
    return felzenszwalb(image, scale=1.0, sigma=0.8,
                        min_size=max(1, image.shape[0] * image.shape[1] // max(1, n_segments)))


def _relabel(segments: np.ndarray) -> np.ndarray:
    """Ids 0..K-1 with no gap (LIME indexes its weights by segment id)."""
    _, inverse = np.unique(segments, return_inverse=True)
    return inverse.reshape(segments.shape).astype(np.int64)


CHAIN: list[tuple[str, Callable[[np.ndarray, int, float], np.ndarray]]] = [
    ("slic", _slic),
    ("slic-unconnected", lambda img, n, c: _slic(img, n, c, connected=False)),
    ("felzenszwalb", _felzenszwalb),
    ("grid", grid),
]
