"""Convex hulls of pixel masks, drawn row by row.

skimage's ``regionprops`` gets an object's solidity by drawing its convex hull as an image: every
pixel of the bounding box is tested against the hull's polygon. The finder asks for the solidity
of every cell-sized object, several times per field, and that was a quarter of its time. Here the
same hull (skimage's: the polygon around the midpoints of the outer pixels' edges, pixels on it
included) is drawn as one run of pixels per row, from where the row crosses the polygon.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.spatial import ConvexHull, QhullError

_EPS = 1e-9
_DIAMOND = np.array([[-0.5, 0.0], [0.5, 0.0], [0.0, -0.5], [0.0, 0.5]])


def _row_ends(mask: np.ndarray) -> np.ndarray:
    """[N, 2] the first and last pixel of every row of ``mask``: every other pixel lies between
    two of them, so they hold all of the hull's corners."""
    rows = np.nonzero(mask.any(1))[0]
    taken = mask[rows]
    first = taken.argmax(1)
    last = taken.shape[1] - 1 - taken[:, ::-1].argmax(1)
    return np.concatenate([np.stack([rows, first], 1), np.stack([rows, last], 1)])


def hull_runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, first, last): for each row the hull of ``mask`` [H, W] crosses, its first and last
    column, as int arrays. Empty arrays for an empty mask or one whose hull is a line."""
    empty = (np.zeros(0, int),) * 3
    pixels = _row_ends(np.asarray(mask, bool))
    if not len(pixels):
        return empty
    corners = (pixels[:, None, :] + _DIAMOND).reshape(-1, 2)
    # duplicate points can upset qhull; they are exact multiples of 0.5
    twice = np.rint(2 * corners).astype(np.int64)
    width = 2 * mask.shape[1] + 4
    keys = np.unique(twice[:, 0] * width + twice[:, 1] + 2)
    corners = np.stack([keys // width, keys % width - 2], 1) / 2.0
    try:
        vertices = corners[ConvexHull(corners).vertices]
    except QhullError:
        return empty
    start, end = vertices, np.roll(vertices, -1, axis=0)
    rows = np.arange(int(np.ceil(vertices[:, 0].min() - _EPS)), int(np.floor(vertices[:, 0].max() + _EPS)) + 1)
    rows = rows[(rows >= 0) & (rows < mask.shape[0])]
    y0, y1 = start[:, 0][:, None], end[:, 0][:, None]
    x0, x1 = start[:, 1][:, None], end[:, 1][:, None]
    r = rows[None, :].astype(float)
    spans = (np.minimum(y0, y1) - _EPS <= r) & (r <= np.maximum(y0, y1) + _EPS)
    flat = np.abs(y1 - y0) < _EPS
    t = np.where(flat, 0.0, (r - y0) / np.where(flat, 1.0, y1 - y0))
    x = x0 + np.clip(t, 0.0, 1.0) * (x1 - x0)
    # a horizontal edge on the row covers both its ends
    lo = np.where(spans, np.where(flat, np.minimum(x0, x1), x), np.inf).min(0)
    hi = np.where(spans, np.where(flat, np.maximum(x0, x1), x), -np.inf).max(0)
    first = np.maximum(np.ceil(lo - _EPS), 0).astype(int)
    last = np.minimum(np.floor(hi + _EPS), mask.shape[1] - 1).astype(int)
    keep = last >= first
    return rows[keep], first[keep], last[keep]


def convex_image(mask: np.ndarray) -> np.ndarray:
    """The convex hull of ``mask`` as a mask of the same shape (skimage's ``convex_hull_image``)."""
    rows, first, last = hull_runs(mask)
    out = np.zeros(np.shape(mask), bool)
    columns = np.arange(out.shape[1])
    out[rows] = (columns >= first[:, None]) & (columns <= last[:, None])
    return out


def solidity(mask: np.ndarray) -> float:
    """The share of its convex hull that ``mask`` fills (skimage's ``regionprops`` solidity)."""
    rows, first, last = hull_runs(mask)
    hull_area = int((last - first + 1).sum())
    return float(np.count_nonzero(mask)) / hull_area if hull_area else 0.0


# normals (a, b) of the bounding polygon's sides: the rows, the columns, the diagonals and the
# directions between them (a 16-gon)
_SIDES = ((1, 0), (0, 1), (1, 1), (1, -1), (1, 2), (2, 1), (1, -2), (2, -1))


def _bounding_pixels(labels: np.ndarray, n: int) -> np.ndarray:
    """[n + 1] for each object of ``labels``, the pixels of the 16-gon bounded by its extremes of
    a·y + b·x along ``_SIDES``: its convex hull (as ``convex_image`` draws it, around the pixels'
    edge midpoints, which reach max(|a|, |b|) / 2 beyond a pixel's centre) lies inside, so the
    count bounds the hull's area from above."""
    # a linear function's extremes over a run of pixels lie at its ends: only they are visited
    ends = np.zeros(labels.shape, bool)
    ends[:, 0] = ends[:, -1] = True
    ends[:, 1:] |= labels[:, 1:] != labels[:, :-1]
    ends[:, :-1] |= labels[:, :-1] != labels[:, 1:]
    ys, xs = np.nonzero(ends & (labels > 0))
    lab = labels[ys, xs]
    present = np.flatnonzero(np.bincount(lab, minlength=n + 1))
    big = np.iinfo(np.int64).max // 4
    lows, highs = [], []
    for a, b in _SIDES:
        v = a * ys + b * xs
        lo, hi = np.full(n + 1, big, np.int64), np.full(n + 1, -big, np.int64)
        np.minimum.at(lo, lab, v)
        np.maximum.at(hi, lab, v)
        reach = max(abs(a), abs(b)) // 2  # pixel centres are integers: a half step rounds away
        lows.append(lo - reach)
        highs.append(hi + reach)
    heights = highs[0][present] - lows[0][present] + 1
    owner = np.repeat(present, heights)
    y = lows[0][owner] + np.arange(len(owner)) - np.repeat(np.cumsum(heights) - heights, heights)
    left = np.full(len(owner), -big, np.int64)
    right = np.full(len(owner), big, np.int64)
    for (a, b), lo, hi in zip(_SIDES[1:], lows[1:], highs[1:]):
        # lo <= a y + b x <= hi, for x
        first, last = lo[owner] - a * y, hi[owner] - a * y
        if b < 0:
            first, last, b = -last, -first, -b
        left = np.maximum(left, -(-first // b))
        right = np.minimum(right, last // b)
    return np.bincount(owner, weights=np.maximum(right - left + 1, 0), minlength=n + 1)


def solid_objects(labels: np.ndarray, candidates: np.ndarray, min_solidity: float) -> np.ndarray:
    """[n + 1] bool: which objects of ``labels`` among ``candidates`` ([n + 1] bool) have a
    ``solidity`` of at least ``min_solidity``. An object that fills that share of its bounding
    16-gon has it without drawing its hull: most cells of a field."""
    n = len(candidates) - 1
    area = np.bincount(labels.ravel(), minlength=n + 1)
    solid = candidates & (area >= min_solidity * _bounding_pixels(labels, n))
    solid[0] = False
    for i, box in enumerate(ndi.find_objects(labels, n), start=1):
        if candidates[i] and not solid[i] and box is not None:
            solid[i] = solidity(labels[box] == i) >= min_solidity
    return solid
