"""Resizing planes as ``skimage.transform.resize`` does (linear or nearest, mode 'reflect'), faster.

skimage smooths the whole input with a Gaussian before a downscale (anti-aliasing) and then
interpolates: two full passes over the big plane, in float64, most of a field's scoring time.
Both steps are linear and act on each axis alone, so per axis they make one banded matrix (about
six taps per output pixel at a scale of 0.5); a plane is resized with one sparse product per axis,
evaluated only where output pixels are. Values agree with skimage to float32 rounding, masks
and labels exactly (tests/test_cell_crops.py).
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

# skimage's anti-aliasing Gaussian: sigma = (input / output - 1) / 2, cut at 4 sigma as scipy does
_TRUNCATE = 4.0


def scaled_shape(shape: tuple[int, ...], scale: float) -> tuple[int, ...]:
    """A plane's [Y, X] ``shape`` rescaled by ``scale``, rounded as ``skimage.transform.rescale`` does."""
    return tuple(max(1, round(s * scale)) for s in shape)


def _mirror(index: np.ndarray, n: int) -> np.ndarray:
    """Indices outside [0, n) reflected about the edge pixels (scipy's 'mirror', skimage's 'reflect')."""
    if n == 1:
        return np.zeros_like(index)
    period = 2 * (n - 1)
    index = np.abs(index) % period
    return np.where(index > n - 1, period - index, index)


def _sample_positions(n_in: int, n_out: int) -> np.ndarray:
    """Where output pixel centres fall in input pixels (scipy.ndimage.zoom with grid_mode=True)."""
    return (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5


def _antialias_sigma(n_in: int, n_out: int) -> float:
    return max(0.0, (n_in / n_out - 1.0) / 2.0)


@lru_cache(maxsize=64)
def _smoothing_axis(n: int, sigma: float):
    """Sparse [n, n] float64 matrix: scipy's Gaussian filter (mode 'mirror', cut at 4 sigma)."""
    from scipy import sparse

    taps = np.arange(-int(_TRUNCATE * sigma + 0.5), int(_TRUNCATE * sigma + 0.5) + 1)
    kernel = np.exp(-0.5 / sigma ** 2 * taps.astype(np.float64) ** 2)
    kernel /= kernel.sum()
    return sparse.csr_matrix((np.tile(kernel, n), (np.repeat(np.arange(n), len(taps)),
                             _mirror((np.arange(n)[:, None] + taps).ravel(), n))), shape=(n, n))


@lru_cache(maxsize=64)
def _interpolation_axis(n_in: int, n_out: int):
    """Sparse [n_out, n_in] float64 matrix: linear interpolation at the output pixels' centres."""
    from scipy import sparse

    pos = _sample_positions(n_in, n_out)
    start = np.floor(pos)
    frac = pos - start
    rows = np.repeat(np.arange(n_out), 2)
    cols = _mirror((start.astype(np.int64)[:, None] + np.arange(2)).ravel(), n_in)
    weights = np.stack([1.0 - frac, frac], 1).ravel()
    return sparse.csr_matrix((weights, (rows, cols)), shape=(n_out, n_in))


@lru_cache(maxsize=64)
def _linear_axis(n_in: int, n_out: int, anti_aliasing: bool):
    """Sparse [n_out, n_in] matrix: Gaussian smoothing (when downscaling with anti-aliasing) then
    linear interpolation along one axis."""
    matrix = _interpolation_axis(n_in, n_out)
    sigma = _antialias_sigma(n_in, n_out) if anti_aliasing else 0.0
    if sigma > 1e-15:  # scipy skips the axis below this
        matrix = matrix @ _smoothing_axis(n_in, sigma)
    matrix = matrix.tocsr()
    matrix.sum_duplicates()
    return matrix


def _transpose(a: np.ndarray) -> np.ndarray:
    """A C-contiguous copy of ``a.T``, strip by strip (about 3x faster than numpy's copy of a big one)."""
    out = np.empty(a.shape[::-1], a.dtype)
    for i in range(0, a.shape[0], 32):
        out[:, i:i + 32] = a[i:i + 32].T
    return out


def resize_linear(image: np.ndarray, shape: tuple[int, int], anti_aliasing: bool,
                  accumulate=np.float64) -> np.ndarray:
    """A 2-D image resized to ``shape`` with linear interpolation, float32.

    Equal (to float32 rounding) to ``skimage.transform.resize(image, shape, order=1,
    anti_aliasing=anti_aliasing, preserve_range=True)``. By default sums run in float64 as scipy's
    do: a flat region of integer values (8-bit images) then stays exactly those integers, which
    matters to scorers that look values up in a step-shaped table (histogram equalisation).
    ``accumulate=np.float32`` is about 3x faster where that cannot matter (anomaly maps).
    """
    (h, w), (oh, ow) = image.shape, tuple(int(s) for s in shape)
    if (h, w) == (oh, ow):
        return np.array(image, np.float32)
    along_y, along_x = _linear_axis(h, oh, anti_aliasing), _linear_axis(w, ow, anti_aliasing)
    if accumulate == np.float32:
        along_y, along_x = along_y.astype(np.float32), along_x.astype(np.float32)
    if w == ow:
        out = _down_columns(along_y, image, accumulate)
    elif h == oh:
        out = _transpose(_down_columns(along_x, _transpose(image), accumulate))
    # one intermediate must be transposed (the sparse product runs down columns): pick the order in
    # which the transposed arrays are smaller
    elif oh * w + oh * ow <= h * w + h * ow:
        out = _transpose(along_x @ _transpose(_down_columns(along_y, image, accumulate)))
    else:
        out = _down_columns(along_y, _transpose(along_x @ _transpose(np.asarray(image, accumulate))), accumulate)
    return out.astype(np.float32, copy=False)


def _down_columns(matrix, image: np.ndarray, dtype) -> np.ndarray:
    """``matrix @ image`` in ``dtype``, converting the image a strip of columns at a time (a float64
    copy of a whole big plane costs more than the product)."""
    out = np.empty((matrix.shape[0], image.shape[1]), dtype)
    for j in range(0, image.shape[1], 256):
        out[:, j:j + 256] = matrix @ np.ascontiguousarray(image[:, j:j + 256], dtype)
    return out


def resize_mask(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A boolean mask resized exactly as ``skimage.transform.resize(mask.astype(np.float32), shape,
    order=1) > 0.5`` (anti-aliased when shrinking).

    Masks often interpolate to exactly 0.5, where sums in another order or precision tip either
    way, so skimage's steps are kept: each axis smoothed in float64 and rounded to float32, then
    interpolated in float64 and rounded to float32. Crops are small; this costs little.
    """
    (h, w), (oh, ow) = mask.shape, tuple(int(s) for s in shape)
    image = mask.astype(np.float32)
    if oh < h or ow < w:
        if _antialias_sigma(h, oh) > 1e-15:
            image = (_smoothing_axis(h, _antialias_sigma(h, oh)) @ image.astype(np.float64)).astype(np.float32)
        if _antialias_sigma(w, ow) > 1e-15:
            smooth = _smoothing_axis(w, _antialias_sigma(w, ow))
            image = (smooth @ image.T.astype(np.float64)).T.astype(np.float32)
    if (oh, ow) != (h, w):
        out = _interpolation_axis(h, oh) @ image.astype(np.float64)
        image = (_interpolation_axis(w, ow) @ out.T).T.astype(np.float32)
    return image > 0.5


def resize_nearest(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Labels resized to ``shape`` by nearest neighbour: ``skimage.transform.resize(labels, shape,
    order=0, preserve_range=True, anti_aliasing=False)``, exactly, in the labels' dtype."""
    rows = _nearest_index(labels.shape[0], int(shape[0]))
    cols = _nearest_index(labels.shape[1], int(shape[1]))
    return labels[rows[:, None], cols[None, :]]


def _nearest_index(n_in: int, n_out: int) -> np.ndarray:
    # scipy rounds half up (floor(x + 0.5)); positions never fall more than half a pixel outside
    return _mirror(np.floor(_sample_positions(n_in, n_out) + 0.5).astype(np.intp), n_in)


def resize_within_labels(image: np.ndarray, labels_in: np.ndarray, labels_out: np.ndarray) -> np.ndarray:
    """A per-cell map [h, w] with labels ``labels_in`` resized to the shape of ``labels_out``
    (linear, no anti-aliasing, as ``resize_linear``), each output pixel interpolated only from input
    pixels of its own label; 0 outside labels.

    Plain interpolation mixes two touching cells' values along their border (and a cell's values
    with the 0 around it), so a cell could take a score from its neighbour's map. An output pixel
    none of whose input pixels carries its label takes its cell's lowest value, which cannot raise
    the cell's score.
    """
    (h, w), shape = image.shape, labels_out.shape
    out = resize_linear(image, shape, anti_aliasing=False, accumulate=np.float32)
    (r0, wy0), (r1, wy1) = _linear_taps(h, shape[0])
    (c0, wx0), (c1, wx1) = _linear_taps(w, shape[1])
    # an output pixel is interpolated within one label when its 2 x 2 input pixels share the label
    below = labels_in[np.minimum(np.arange(h) + 1, h - 1)]
    right = np.minimum(np.arange(w) + 1, w - 1)
    uniform = (labels_in == below) & (labels_in == labels_in[:, right]) & (labels_in == below[:, right])
    top, left = np.minimum(r0, r1), np.minimum(c0, c1)
    inside = labels_out > 0
    mixed = inside & ~(uniform[top][:, left] & (labels_in[r0][:, c0] == labels_out))
    out[~inside] = 0.0
    yy, xx = np.nonzero(mixed)
    own = labels_out[yy, xx]
    num = np.zeros(len(yy), np.float32)
    den = np.zeros(len(yy), np.float32)
    for rows, wy in ((r0[yy], wy0[yy]), (r1[yy], wy1[yy])):
        for cols, wx in ((c0[xx], wx0[xx]), (c1[xx], wx1[xx])):
            weight = np.where(labels_in[rows, cols] == own, wy * wx, 0.0).astype(np.float32)
            num += weight * image[rows, cols]
            den += weight
    value = np.divide(num, den, out=np.zeros_like(num), where=den > 0)
    lacking = den <= 0
    if lacking.any():
        from scipy import ndimage as ndi

        ids = np.unique(own[lacking])
        present = np.isin(ids, labels_in)
        lowest = np.zeros(len(ids), np.float32)
        if present.any():
            lowest[present] = ndi.minimum(image, labels_in, index=ids[present])
        value[lacking] = lowest[np.searchsorted(ids, own[lacking])]
    out[yy, xx] = value
    return out


def _linear_taps(n_in: int, n_out: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """The two input indices and weights of each output pixel along one axis (``_interpolation_axis``)."""
    pos = _sample_positions(n_in, n_out)
    start = np.floor(pos)
    frac = pos - start
    start = start.astype(np.intp)
    return [(_mirror(start, n_in), 1.0 - frac), (_mirror(start + 1, n_in), frac)]
