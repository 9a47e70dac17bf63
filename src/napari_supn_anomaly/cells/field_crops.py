"""Cutting the cells of a whole field at a model's scale, and pasting per-cell maps back.

The field is rescaled so that its cells have the model's cell diameter, then one crop of the
model's size is cut around each cell's centre; what lies beyond the field's edge is filled with
the background, or, for the modalities of ``modality.MIRRORED_BEYOND_EDGE``, shows the field
mirrored at the edge, so that a cell cut by the edge looks whole to the model. Maps computed on
the crops go back inside their own cell only.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..errors import InputError
from .crops import CropGeometry
from .resize import resize_linear, resize_nearest, scaled_shape


def field_scale(geometry: CropGeometry, field_cell_diameter: float) -> float:
    """Factor that brings cells of ``field_cell_diameter`` pixels to the model's cell size."""
    if not field_cell_diameter or field_cell_diameter <= 0:
        raise InputError("the cell diameter must be a positive number of pixels")
    return float(geometry.cell_diameter_px) / float(field_cell_diameter)


def rescale_plane(plane: np.ndarray, labels: np.ndarray, scale: float):
    """[C, Y, X] intensities (linear, float32) and labels (nearest) rescaled by ``scale``, as
    ``skimage.transform.resize`` would (anti-aliased when shrinking; see :mod:`.resize`)."""
    if abs(scale - 1.0) < 1e-3:
        return plane.astype(np.float32, copy=False), labels
    out_shape = scaled_shape(plane.shape[1:], scale)
    scaled = np.stack([resize_linear(ch, out_shape, anti_aliasing=scale < 1) for ch in plane])
    return scaled, resize_nearest(labels, out_shape)


def background_fill(plane: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-channel median of the pixels outside cells: what lies beyond the field's edge."""
    outside = labels == 0
    if outside.sum() < 16:
        outside = np.ones_like(outside)
    where = np.flatnonzero(outside)
    if len(where) > 200_000:  # a strided sample is plenty for a median
        where = where[:: len(where) // 200_000]
    return np.median(plane.reshape(len(plane), -1)[:, where], axis=1).astype(np.float32)


# a cell cut by the field's edge is scored without this share of the model's cell diameter next
# to the cut (see cut_crops)
CUT_MARGIN_FRACTION = 0.1


def cut_margin_px(geometry: CropGeometry) -> int:
    """Pixels (at the model's scale) left out of a cell's scoring mask along the field's edge."""
    return max(1, round(CUT_MARGIN_FRACTION * geometry.cell_diameter_px))


def _window(centre, size: int, shape) -> tuple[int, int, int, int, int, int] | None:
    """(y0, x0, sy0, sx0, sy1, sx1): a crop's corner and its part inside an image of ``shape``."""
    h, w = shape
    y0, x0 = centre[0] - size // 2, centre[1] - size // 2
    sy0, sx0, sy1, sx1 = max(0, y0), max(0, x0), min(h, y0 + size), min(w, x0 + size)
    if sy1 <= sy0 or sx1 <= sx0:
        return None
    return y0, x0, sy0, sx0, sy1, sx1


def cut_crops(plane: np.ndarray, labels: np.ndarray, ids: np.ndarray, centres: np.ndarray,
              crop_size: int, fill: np.ndarray | None, edge_margin: int = 0, hidden: np.ndarray | None = None):
    """Crops [N, C, S, S] centred on each cell, padded with ``fill`` (None: the field mirrored at
    its edge); masks [N, S, S] of that cell only (its pixels inside the field).

    A cell cut by the field's edge loses the ``edge_margin`` pixels next to the cut from its mask:
    the model sees half a cell and draws the missing half, so the residual along the cut is the
    model's guess, not the cell. Pixels ``hidden`` [Y, X] by an annotation mark are treated the
    same way: out of every mask, with ``edge_margin`` pixels around them (the plane should hold
    the marks already filled in, ``overlay_marks.fill_marks``).
    """
    if hidden is not None and not hidden.any():
        hidden = None
    crops = np.empty((len(ids), plane.shape[0], crop_size, crop_size), np.float32)
    if fill is not None:
        crops[:] = fill[None, :, None, None]
    masks = np.zeros((len(ids), crop_size, crop_size), bool)
    for k, (cid, centre) in enumerate(zip(ids, centres)):
        win = _window(centre, crop_size, plane.shape[1:])
        if win is None:
            continue
        y0, x0, sy0, sx0, sy1, sx1 = win
        if fill is None and (sy1 - sy0 < crop_size or sx1 - sx0 < crop_size):
            crops[k] = plane[:, mirrored(y0, crop_size, plane.shape[1])[:, None],
                             mirrored(x0, crop_size, plane.shape[2])[None, :]]
        else:
            crops[k, :, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = plane[:, sy0:sy1, sx0:sx1]
        masks[k, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = labels[sy0:sy1, sx0:sx1] == cid
        if edge_margin:
            _clear_cut_margin(masks[k], (y0, x0, sy0, sx0, sy1, sx1), plane.shape[1:], edge_margin)
        if hidden is not None:
            masks[k, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] &= ~_widened(hidden, (sy0, sx0, sy1, sx1), edge_margin)
    return crops, masks


def mirrored(start: int, size: int, n: int) -> np.ndarray:
    """Indices ``start`` .. ``start + size - 1`` of an axis of length ``n``, mirrored at its ends
    (-1 -> 0, n -> n - 1, as ``np.pad(mode="symmetric")``), however far beyond them."""
    m = np.mod(np.arange(start, start + size), 2 * n)
    return np.where(m < n, m, 2 * n - 1 - m)


def _widened(hidden: np.ndarray, window, margin: int) -> np.ndarray:
    """``hidden`` grown by ``margin`` pixels, read in ``window`` only: the window and a band of
    ``margin`` around it are grown, not the whole field (cut_crops runs once per batch)."""
    sy0, sx0, sy1, sx1 = window
    py0, px0 = max(0, sy0 - margin), max(0, sx0 - margin)
    part = hidden[py0:sy1 + margin, px0:sx1 + margin]
    if margin and part.any():
        part = ndi.binary_dilation(part, iterations=margin)
    return part[sy0 - py0:sy1 - py0, sx0 - px0:sx1 - px0]


def _clear_cut_margin(mask: np.ndarray, window, shape, margin: int) -> None:
    """Clear ``margin`` pixels of ``mask`` inside every side of the crop that the field's edge cuts."""
    y0, x0, sy0, sx0, sy1, sx1 = window
    h, w = shape
    if sy0 == 0:
        mask[: sy0 - y0 + margin] = False
    if sy1 == h:
        mask[max(0, sy1 - y0 - margin):] = False
    if sx0 == 0:
        mask[:, : sx0 - x0 + margin] = False
    if sx1 == w:
        mask[:, max(0, sx1 - x0 - margin):] = False


def paste_maps(heatmap: np.ndarray, labels: np.ndarray, ids: np.ndarray, centres: np.ndarray,
               maps: np.ndarray) -> None:
    """Write each crop's map into ``heatmap`` inside its own cell (max where two maps overlap)."""
    size = maps.shape[-1]
    for cid, centre, m in zip(ids, centres, maps):
        win = _window(centre, size, heatmap.shape)
        if win is None:
            continue
        y0, x0, sy0, sx0, sy1, sx1 = win
        window = heatmap[sy0:sy1, sx0:sx1]
        inside = labels[sy0:sy1, sx0:sx1] == cid
        piece = m[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0]
        window[inside] = np.maximum(window[inside], piece[inside])


def fill_unscored(heatmap: np.ndarray, labels: np.ndarray) -> None:
    """Give the pixels ``paste_maps`` left unset (-inf) their cell's lowest map value, and 0 outside
    cells. A cell's pixels outside its crop's mask (the margin along a cut by the field's edge, an
    annotation mark) are not scored; with a signed map, 0 there could be the cell's highest value."""
    unset = ~np.isfinite(heatmap)
    heatmap[unset & (labels == 0)] = 0.0
    holes = unset & (labels > 0)
    if not holes.any():
        return
    ids = np.unique(labels[holes])
    scored = np.where(np.isfinite(heatmap), labels, 0)
    lowest = np.asarray(ndi.minimum(heatmap, scored, index=ids), np.float32)
    lowest[~np.isfinite(lowest)] = 0.0  # a cell with no scored pixel
    heatmap[holes] = lowest[np.searchsorted(ids, labels[holes])]
