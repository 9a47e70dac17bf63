"""SUPN's score joined with the stain's saturation, each on the log scale of its healthy cells.

A Giemsa-stained parasite is both unexplained by the model of healthy cells (SUPN's map) and
strongly coloured (HSV saturation, the one-line hand-made detector). On other labs' slides the
two miss different parasites, so their sum ranks infected cells above healthy ones more often
than either alone (docs/benchmarks/generalisation.md, "SUPN and the stain's saturation").

Each part is put on the scale of its own healthy cells: c = (log s - centre) / spread, with the
centre and spread of the model's held-back healthy cells (never of the slide being scored), and
the cell's score is c_supn + w * c_saturation. The weight w and the percentile of a cell's pixels
that is its saturation are recorded with each calibration (``scoring.cell_terms``); the constants
below are what a new calibration takes.

On a field, a cell's saturation is measured on the field as the microscope recorded it
(:func:`field_cell_saturation`): at the field's own resolution, where a ring's chromatin dot
still fills a few pixels, and before the colour matching that brings the field to the model's
stain. The crops the model scores are resampled to its cell size (a MalariaNet cell of 124 px
becomes 36 px), which averages a dot into its cell. Measured on the crops, `supn+saturation`
ranked MalariaNet's test-slide cells at AUROC 0.948 +- 0.002 over three builds; on the field, 0.971 +- 0.005
(docs/benchmarks/generalisation.md, "The saturation term at the field's resolution"), and 0.982 +- 0.004 with
the weight and percentile chosen again for the field's resolution ("The weight and the percentile, chosen
again"). The pixel map is SUPN's map on
the same log scale plus the cell's saturation term, so its maximum inside a cell is the cell's
score and a candidate threshold means the same for cells and for regions.
"""
from __future__ import annotations

import numpy as np

from .ensemble import MemberScale

# both chosen on MalariaNet tuning slides (benchmarks/supn_saturation.py, generalisation.md); 0.25 and
# 99.5 until 2026-12-04, when the saturation began to be read at the field's resolution
SATURATION_WEIGHT = 0.5
SATURATION_PERCENTILE = 99.8  # a cell's saturation: this percentile of its pixels (a parasite is a few pixels)
HAND_MADE_PERCENTILE = 99.5   # the one-line hand-made detector's (evaluation), whatever the scorer's
LOG_FLOOR = 1e-3              # SUPN map values below this (healthy or paler than expected) count as this


def saturation_map(rgb: np.ndarray) -> np.ndarray:
    """HSV saturation of RGB images [..., C >= 3, H, W] (the first three channels), in their dtype: the
    stain's colour strength, the one-line hand-made detector's map (0 where a pixel is black)."""
    red, green, blue = rgb[..., 0, :, :], rgb[..., 1, :, :], rgb[..., 2, :, :]
    # channel by channel: 5x faster than a reduction over the channel axis
    brightest, darkest = np.maximum(np.maximum(red, green), blue), np.minimum(np.minimum(red, green), blue)
    return np.divide(brightest - darkest, brightest, out=np.zeros_like(brightest), where=brightest > 0)


def _percentile_ranks(counts, percentile: float):
    """(position, low, high) of numpy's linear ``percentile`` among ``counts`` sorted values (ints or
    arrays): the value is sorted[low] + (position - low) * (sorted[high] - sorted[low])."""
    position = (np.asarray(counts) - 1) * percentile / 100.0
    low = position.astype(np.int64)
    return position, low, np.minimum(low + 1, np.asarray(counts) - 1)


def cell_saturation(crops: np.ndarray, masks: np.ndarray, percentile: float = SATURATION_PERCENTILE) -> np.ndarray:
    """[N] the ``percentile`` of HSV saturation over each cell's mask (the whole crop where
    the mask is empty), from RGB crops [N, 3, S, S]; numpy's linear percentile, every crop at once."""
    n = len(crops)
    if n == 0:
        return np.empty(0)
    saturation = saturation_map(np.asarray(crops, np.float32)).reshape(n, -1)
    masks = np.array(masks, bool).reshape(n, -1)
    masks[~masks.any(1)] = True
    values = np.where(masks, saturation, np.float32(-1.0))  # left out: below every saturation (>= 0)
    counts = masks.sum(1)
    position, low, high = _percentile_ranks(counts, percentile)
    # the percentile lies among each cell's ``top`` largest values (numpy's float32 sort is vectorised; a
    # partition is slower on rows full of the left-out value)
    top = int((counts - low).max())
    largest = np.sort(values, axis=1)[:, -top:]
    rows = np.arange(n)
    below = largest[rows, top - counts + low].astype(np.float64)
    above = largest[rows, top - counts + high].astype(np.float64)
    return below + (position - low) * (above - below)


def field_cell_saturation(plane: np.ndarray, labels: np.ndarray, ids: np.ndarray,
                          hidden: np.ndarray | None = None, percentile: float = SATURATION_PERCENTILE) -> np.ndarray:
    """[N] the ``percentile`` of HSV saturation over each cell ``ids`` of ``labels`` [Y, X],
    from a field ``plane`` [C >= 3, Y, X] at its own resolution; pixels under ``hidden`` (annotation
    marks) left out. NaN for a cell with no pixel left."""
    flat = np.asarray(labels).ravel()
    keep = flat > 0
    if hidden is not None:
        keep &= ~np.asarray(hidden, bool).ravel()
    pixels = np.asarray(plane).reshape(plane.shape[0], -1)[:3, keep].astype(np.float32)
    saturation = saturation_map(pixels[:, None, :])[0]
    cells = flat[keep]
    order = np.argsort(cells, kind="stable")  # grouped by cell (a radix sort of the integer labels)
    cells, saturation = cells[order], saturation[order]
    starts, ends = np.searchsorted(cells, ids, "left"), np.searchsorted(cells, ids, "right")
    out = np.full(len(ids), np.nan)
    for i, (a, b) in enumerate(zip(starts, ends)):
        if b > a:  # numpy's linear percentile, from the two values around it
            position, low, high = _percentile_ranks(b - a, percentile)
            part = np.partition(saturation[a:b], (int(low), int(high)))
            out[i] = part[low] + (position - low) * (part[high] - part[low])
    return out


def log_scale(scores: np.ndarray) -> MemberScale:
    """The healthy centre and spread of ``log(scores)``."""
    return MemberScale.from_healthy_scores(_log(scores))


def combine(supn_maps: np.ndarray, saturation: np.ndarray, supn_scale: MemberScale,
            saturation_scale: MemberScale, weight: float = SATURATION_WEIGHT) -> np.ndarray:
    """Maps [N, S, S]: SUPN's map on its healthy log scale plus each cell's saturation term times ``weight``."""
    term = weight * saturation_scale.apply(_log(saturation))
    return (on_log_scale(supn_maps, supn_scale) + term[:, None, None]).astype(np.float32)


def on_log_scale(supn_maps: np.ndarray, supn_scale: MemberScale) -> np.ndarray:
    """SUPN's maps in healthy spreads above a typical healthy cell, on the log scale."""
    return supn_scale.apply(_log(supn_maps))


def _log(values) -> np.ndarray:
    return np.log(np.maximum(np.asarray(values, np.float64), LOG_FLOOR))
