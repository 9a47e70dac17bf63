"""Cell sizes and positions from masks and label images (bincounts: fast on big fields)."""
from __future__ import annotations

import numpy as np

from ..errors import InputError, NoCellsFound

# Narrower objects are not measured as cells, and a model would see such a cell (and the image
# with it) blown up many times over.
MIN_CELL_DIAMETER_PX = 4.0


def is_finite_number(value) -> bool:
    """A real number a person gave (Python or numpy), neither a bool nor NaN nor infinite."""
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool) and bool(np.isfinite(value))


def check_cell_diameter(value, name: str = "the cell diameter") -> float:
    """A cell diameter a person gave, in pixels: a finite number of at least MIN_CELL_DIAMETER_PX."""
    if not is_finite_number(value) or value < MIN_CELL_DIAMETER_PX:
        raise InputError(f"{name} must be a positive number of pixels, at least {MIN_CELL_DIAMETER_PX:g} (the "
                         f"diameter of one cell in the image); got {value!r}")
    return float(value)


def equivalent_diameter(mask: np.ndarray) -> float:
    return float(2.0 * np.sqrt(mask.sum() / np.pi))


def equivalent_diameters(labels: np.ndarray) -> np.ndarray:
    areas = np.bincount(labels.ravel())[1:]
    areas = areas[areas > 0]
    return 2.0 * np.sqrt(areas / np.pi)


def edge_contact(labels: np.ndarray, n: int) -> np.ndarray:
    """[n] the most pixels each label 0..n-1 has on one side of the image: how long its edge cuts it."""
    contact = np.zeros(n, int)
    for side in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        np.maximum(contact, np.bincount(side, minlength=n)[:n], out=contact)
    contact[0] = 0
    return contact


def median_cell_diameter(labels: np.ndarray) -> float:
    """The median equivalent diameter of the cells the image's edge does not cut (of all cells when
    every one is cut): a cut cell shows only part of its size, and a field's or a tile's slivers
    would pull the median down, and with it the scale every cell is scored at."""
    areas = np.bincount(labels.ravel())
    present = areas > 0
    present[0] = False
    whole = present & (edge_contact(labels, len(areas)) == 0)
    use = whole if whole.any() else present
    if not use.any():
        raise NoCellsFound("no cells in the cell labels")
    return float(np.median(2.0 * np.sqrt(areas[use] / np.pi)))


def cell_ids(labels: np.ndarray) -> np.ndarray:
    """The labels' cell ids (> 0), sorted, in the labels' dtype: ``np.unique`` without its sort of
    every pixel when the ids are small non-negative integers (a bincount, several times faster)."""
    flat = labels.ravel()
    if flat.size and np.issubdtype(labels.dtype, np.integer) and flat.min() >= 0 and flat.max() <= 4 * flat.size:
        ids = np.flatnonzero(np.bincount(flat.astype(np.intp, copy=False)))
        return ids[ids > 0].astype(labels.dtype)
    ids = np.unique(labels)
    return ids[ids > 0]


def number_consecutively(labels: np.ndarray) -> np.ndarray:
    """The same cells numbered 1..n (int32) in the order of their ids; 0 stays background."""
    ids = cell_ids(labels)
    if len(ids) and int(ids[-1]) > 4 * labels.size:  # sparse ids: no lookup table as long as the largest
        numbered = np.searchsorted(ids, labels).astype(np.int32) + 1
        return np.where(labels > 0, numbered, 0).astype(np.int32)
    lookup = np.zeros(int(ids[-1]) + 1 if len(ids) else 1, np.int32)
    lookup[ids] = np.arange(1, len(ids) + 1, dtype=np.int32)
    return lookup[labels]


def label_centroids(labels: np.ndarray, ids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Centroids [N, 2] (y, x) and areas [N] of the labels ``ids``."""
    flat = labels.ravel()
    n = max(int(flat.max()), int(ids.max()) if len(ids) else 0) + 1
    count = np.bincount(flat, minlength=n).astype(np.float64)
    h, w = labels.shape
    ys = np.bincount(flat, weights=np.repeat(np.arange(h, dtype=np.float64), w), minlength=n)
    xs = np.bincount(flat, weights=np.tile(np.arange(w, dtype=np.float64), h), minlength=n)
    safe = np.maximum(count[ids], 1)
    return np.stack([ys[ids] / safe, xs[ids] / safe], 1), count[ids].astype(np.int64)


def cell_centres(labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Rounded centres of mass, [N, 2] (y, x); a half rounds up, so that a window cut at any offset
    (a block of a big plane) centres a cell's crop on the same pixel as the whole plane does."""
    if len(ids) == 0:
        return np.zeros((0, 2), int)
    centres, _ = label_centroids(labels, np.asarray(ids))
    return np.floor(centres + 0.5).astype(int).reshape(-1, 2)
