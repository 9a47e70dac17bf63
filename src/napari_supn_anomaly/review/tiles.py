"""A candidate cell as a picture: the cell on the left, its heatmap on the right, same size.

The window is centred on the cell and a little larger than it, so its neighbours' edges show; the
cell's outline is drawn on both halves. Colours are the overlay's (``overlay.HEATMAP_STOPS``).
"""
from __future__ import annotations

import numpy as np

from ..overlay import CELL_COLOUR, HEATMAP_STOPS, SCALE_TOP

TILE_PX = 96          # each half of a tile, in screen pixels
GAP_PX = 4
CONTEXT = 1.6         # the window's side, in cell diameters


def to_display(plane: np.ndarray) -> np.ndarray:
    """A plane as shown: [Y, X] grey or [Y, X, 3] RGB in 0-1; 8-bit as it is, others from their
    0.5th to 99.95th percentile (as the overlay pictures)."""
    raw = np.asarray(plane)
    img = raw.astype(np.float32)
    if img.ndim == 3:
        img = img[..., :3]
    if raw.dtype == np.uint8:
        return img / 255.0
    finite = img[np.isfinite(img)]
    lo, hi = np.percentile(finite, (0.5, 99.95)) if finite.size else (0.0, 1.0)
    return np.clip((img - lo) / max(float(hi - lo), 1e-6), 0.0, 1.0)


def heatmap_rgb(heatmap: np.ndarray, threshold: float) -> np.ndarray:
    """Heatmap values as RGB in 0-1 on the overlay's scale (0 to 2x threshold), black where low."""
    stops = np.array([v for v, _ in HEATMAP_STOPS]) * threshold
    colours = np.array([[r * a, g * a, b * a] for _, (r, g, b, a) in HEATMAP_STOPS])
    values = np.nan_to_num(np.asarray(heatmap, np.float32), nan=0.0, posinf=SCALE_TOP * threshold, neginf=0.0)
    if threshold <= 0:
        stops = np.linspace(float(values.min()), float(values.max()) + 1e-6, len(HEATMAP_STOPS))
    return np.stack([np.interp(values, stops, colours[:, k]) for k in range(3)], axis=-1)


def cell_window(area: float, centre: tuple[float, float]) -> tuple[slice, slice]:
    """A square window around a cell of ``area`` pixels (it may reach past the plane's edge)."""
    diameter = 2.0 * np.sqrt(max(float(area), 1.0) / np.pi)
    side = max(16, round(CONTEXT * diameter))
    y0 = round(centre[0]) - side // 2
    x0 = round(centre[1]) - side // 2
    return slice(y0, y0 + side), slice(x0, x0 + side)


def cut_window(array: np.ndarray, ys: slice, xs: slice, fill=0.0) -> np.ndarray:
    """``array[ys, xs]`` padded with ``fill`` where the window leaves the plane."""
    h, w = array.shape[:2]
    side_y, side_x = ys.stop - ys.start, xs.stop - xs.start
    out = np.full((side_y, side_x, *array.shape[2:]), fill, dtype=array.dtype)
    y0, y1, x0, x1 = max(ys.start, 0), min(ys.stop, h), max(xs.start, 0), min(xs.stop, w)
    if y1 > y0 and x1 > x0:
        out[y0 - ys.start:y1 - ys.start, x0 - xs.start:x1 - xs.start] = array[y0:y1, x0:x1]
    return out


def _resize(rgb: np.ndarray, size: int) -> np.ndarray:
    idx = np.minimum((np.arange(size) + 0.5) * rgb.shape[0] / size, rgb.shape[0] - 1).astype(int)
    jdx = np.minimum((np.arange(size) + 0.5) * rgb.shape[1] / size, rgb.shape[1] - 1).astype(int)
    return rgb[idx][:, jdx]


def cell_tile(image: np.ndarray, heatmap: np.ndarray, labels: np.ndarray, cell_id: int, centre: tuple[float, float],
              area: float, threshold: float, size: int = TILE_PX) -> np.ndarray:
    """uint8 RGB (size, 2 * size + gap, 3): the cell (``image`` as from :func:`to_display`) and its
    heatmap, both with the cell's outline."""
    from skimage.segmentation import find_boundaries

    ys, xs = cell_window(area, centre)
    cut_labels = cut_window(labels, ys, xs, 0)
    left = cut_window(image, ys, xs, 0.0)
    if left.ndim == 2:
        left = np.repeat(left[..., None], 3, axis=-1)
    right = heatmap_rgb(cut_window(heatmap, ys, xs, 0.0), threshold)
    left, right = _resize(left, size), _resize(right, size)
    outline = _resize(find_boundaries(cut_labels == cell_id, mode="inner").astype(np.float32)[..., None], size)[..., 0] > 0
    for half in (left, right):
        half[outline] = CELL_COLOUR
    tile = np.ones((size, 2 * size + GAP_PX, 3), np.float32)
    tile[:, :size], tile[:, size + GAP_PX:] = left, right
    return (np.clip(tile, 0, 1) * 255).astype(np.uint8)


def png_bytes(rgb: np.ndarray) -> bytes:
    import io

    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(rgb).save(buffer, format="PNG")
    return buffer.getvalue()
