"""The ``shapes`` built-in: generated RGB images of four shapes, each with its pixel mask.

Every shape is inscribed in a circle of radius ``r`` around its centre, so it always lies fully
inside the image. The masks let tests (and the explain page) check that an explanation points at
the shape rather than the background.
"""

from __future__ import annotations

import numpy as np

SHAPE_CLASSES = ("circle", "square", "triangle", "star")
SHAPES_SEED = 1234
STAR_INNER = 0.45  # inner radius of the star's notches, relative to its outer radius
NOISE = 20  # background noise amplitude (uint8 units)


def generate_shapes(
    n: int = 2000, size: int = 64, seed: int = SHAPES_SEED
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Return (images (n,size,size,3) uint8, labels (n,) int64, masks (n,size,size) bool).

    Classes are balanced; colour, radius, position, rotation and noise are random but fixed by
    ``seed``. Vectorised per class: 2000 images take well under a second.
    """
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n) % len(SHAPE_CLASSES)).astype(np.int64)
    radius = (rng.uniform(0.16, 0.38, n) * size).astype(np.float32)
    centre = np.stack([rng.uniform(radius + 1, size - 1 - radius) for _ in range(2)], axis=1)
    centre = centre.astype(np.float32)
    angle = rng.uniform(0, 2 * np.pi, n).astype(np.float32)
    fg = rng.integers(0, 256, (n, 3), dtype=np.int16)
    # Background = foreground shifted by 80..176 per channel (mod 256): always a visible contrast.
    bg = (fg + rng.integers(80, 177, (n, 3), dtype=np.int16)) % 256
    noise = rng.integers(-NOISE, NOISE + 1, (n, size, size, 3), dtype=np.int16)

    masks = np.zeros((n, size, size), dtype=bool)
    for k, name in enumerate(SHAPE_CLASSES):
        idx = np.flatnonzero(labels == k)
        if len(idx):
            u, v = _local_coords(size, centre[idx], radius[idx], angle[idx])
            masks[idx] = _INSIDE[name](u, v)
    noise += np.where(masks[..., None], fg[:, None, None, :], bg[:, None, None, :])
    images = np.clip(noise, 0, 255, out=noise).astype(np.uint8)
    return images, labels, masks


def _local_coords(
    size: int, centre: np.ndarray, radius: np.ndarray, angle: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Pixel centres in each shape's frame: origin at its centre, unit = its radius, rotated."""
    grid = np.arange(size, dtype=np.float32) + 0.5
    dx = (grid[None, None, :] - centre[:, 0, None, None]) / radius[:, None, None]
    dy = (grid[None, :, None] - centre[:, 1, None, None]) / radius[:, None, None]
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    return dx * cos + dy * sin, -dx * sin + dy * cos


def _circle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u * u + v * v <= 1.0


def _square(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    half = 1.0 / np.sqrt(2.0)  # the square inscribed in the unit circle
    return np.maximum(np.abs(u), np.abs(v)) <= half


def _triangle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Equilateral, circumradius 1 (so inradius 0.5): inside all three edge half-planes.
    inside = np.ones(u.shape, dtype=bool)
    for normal in np.deg2rad([-90.0, 30.0, 150.0]):
        inside &= u * np.cos(normal) + v * np.sin(normal) <= 0.5
    return inside


def _star(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    # Fold every point into the half-sector next to one spike; test against that spike's edge,
    # the segment from the tip (1, 0) to the notch at angle pi/5 and radius STAR_INNER.
    sector = 2 * np.pi / 5
    rho = np.sqrt(u * u + v * v)
    t = np.abs(np.mod(np.arctan2(v, u), sector) - sector / 2)
    t = sector / 2 - t  # angle from the nearest tip, in [0, pi/5]
    qx, qy = rho * np.cos(t), rho * np.sin(t)
    ex, ey = STAR_INNER * np.cos(sector / 2) - 1.0, STAR_INNER * np.sin(sector / 2)
    # Same side of the edge as the origin <=> cross products agree in sign.
    return ex * qy - ey * (qx - 1.0) >= 0.0


_INSIDE = {"circle": _circle, "square": _square, "triangle": _triangle, "star": _star}
