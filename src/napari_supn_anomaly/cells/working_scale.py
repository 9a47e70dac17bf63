"""The scale the cell finder works at: large cells are found on a shrunk copy of the field.

The finder's time grows with the pixels per cell (openings, distance transforms, convex hulls),
its accuracy does not: cells about 40 px wide are found as well as wider ones
(docs/benchmarks/cells.md). Cells much wider than ``FinderSettings.work_diameter`` are found on a
copy of the field shrunk until they are that wide, and their labels grown back to the field.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..errors import NoCellsFound
from .finder import FinderSettings, Foreground, field_cell_diameter, field_foreground
from .resize import resize_linear, resize_nearest, scaled_shape

GROW = 1.25            # cells up to this many times work_diameter wide are found at full size
MIN_MEASURE_SIDE = 64  # below this many pixels a side, the half-size subsample is too small to measure on
FULL_SIZE_MEASURE = 1_000_000  # planes of up to this many pixels are measured at full size, not on a
                               # half-size subsample first: cheap enough, and the finder reuses it


def working_scale(plane: np.ndarray, modality: str, cell_diameter: float | None,
                  settings: FinderSettings) -> tuple[float, np.ndarray, float | None, Foreground | None]:
    """The scale at which cells of the plane [C, Y, X] are found (1: full size), the plane at that
    scale, the cells' diameter in the plane's pixels (None: the finder measures it), and the
    working plane's ``field_foreground`` when it was measured there (the finder takes it over)."""
    if settings.work_diameter <= 0:
        return 1.0, plane, cell_diameter, None
    if cell_diameter is not None:
        if cell_diameter <= GROW * settings.work_diameter:
            return 1.0, plane, cell_diameter, None
        scale = settings.work_diameter / cell_diameter
        return scale, shrink(plane, scale), cell_diameter, None
    if min(plane.shape[1:]) // 2 < MIN_MEASURE_SIDE:
        return 1.0, plane, None, None
    at_full_size = (None, None)  # the plane's diameter and foreground, when measured at full size
    if plane.shape[1] * plane.shape[2] <= FULL_SIZE_MEASURE:
        # measured as the finder would measure it, and the finder takes both over
        full = field_foreground(plane, modality, settings)
        guess = field_cell_diameter(plane, modality, settings, full)
        at_full_size = (guess, full)
        if guess <= GROW * settings.work_diameter:
            return 1.0, plane, *at_full_size
    try:
        if at_full_size[0] is None:
            # every second pixel, not an anti-aliased copy: its blur joins touching small cells into
            # one sheet that measures as huge cells (a crowd of 40 px discs: 228 px, subsampled 43)
            guess = field_cell_diameter(np.ascontiguousarray(plane[:, ::2, ::2]), modality, settings) * 2
            if guess <= GROW * settings.work_diameter:
                return 1.0, plane, None, None
        scale = settings.work_diameter / guess
        work = shrink(plane, scale)
        foreground = field_foreground(work, modality, settings)
        diameter = field_cell_diameter(work, modality, settings, foreground) / scale  # measured where they are found
    except NoCellsFound:
        return 1.0, plane, *at_full_size  # the full-size finder says what is wrong with the field
    if diameter <= GROW * settings.work_diameter:
        return 1.0, plane, *at_full_size
    return scale, work, diameter, foreground


def shrink(plane: np.ndarray, scale: float) -> np.ndarray:
    """A plane [C, Y, X] resized by ``scale`` (< 1), anti-aliased, float32."""
    shape = scaled_shape(plane.shape[1:], scale)
    return np.stack([resize_linear(np.asarray(channel, np.float32), shape, anti_aliasing=True)
                     for channel in plane])


def grow_labels(labels: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Labels found on a shrunk copy, grown back to ``shape``: outlines follow the linear
    interpolation of the objects' mask (not nearest neighbour's staircase) and each pixel takes the
    label nearest to it."""
    near = resize_nearest(labels, shape)
    inside = resize_linear((labels > 0).astype(np.float32), shape, anti_aliasing=False) > 0.5
    unlabelled = inside & (near == 0)
    if unlabelled.any():
        rows, cols = ndi.distance_transform_edt(near == 0, return_distances=False, return_indices=True)
        near = near[rows, cols]
    near[~inside] = 0
    return near
