"""The segmenter as it was before issue 11 (git 9f8f411, cells/segmentation.py), kept here only so
benchmarks/cells_benchmark.py can show it side by side with the new cell finder. Not part of the package.

Classical red-cell segmentation for whole fields: threshold the modality's contrast, split
touching cells by a watershed on the distance transform, and drop objects of the wrong size.

Works for bright cells on dark (fluorescence), dark cells on light (bright-field) and stained
cells on white (Giemsa RGB), through :func:`cell_contrast`, which makes cells bright in all three.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage import filters, measure, morphology, segmentation
from skimage.feature import peak_local_max

from napari_supn_anomaly.cells.measure import (
    MIN_CELL_DIAMETER_PX,
    equivalent_diameters,
    median_cell_diameter,
)
from napari_supn_anomaly.cells.modality import cell_contrast
from napari_supn_anomaly.cells.segmentation import check_plane
from napari_supn_anomaly.errors import NoCellsFound


@dataclass
class Segmentation:
    labels: np.ndarray   # (Y, X) int32, 0 = background
    diameter_px: float   # median equivalent diameter of the cells found


def segment_cells(plane: np.ndarray, modality: str = "fluorescence", cell_diameter: float | None = None,
                  min_size: float = 0.3, max_size: float = 3.0, exclude_edges: bool = True) -> Segmentation:
    """Cells in one plane ``[C, Y, X]`` (or ``[Y, X]``).

    ``cell_diameter`` (pixels in this plane) sets the smoothing, the watershed's peak spacing
    and the size filter; without it the diameter is measured from a first threshold.
    Objects smaller than ``min_size`` or larger than ``max_size`` times the typical cell area
    (debris, clumps that could not be split) are dropped, and with ``exclude_edges`` so are
    cells cut by the field's edge: their cut side looks like nothing a healthy cell does.
    """
    plane = np.asarray(plane, np.float32)
    if plane.ndim == 2:
        plane = plane[None]
    check_plane(plane)
    contrast = cell_contrast(plane, modality)
    sigma = 1.0 if cell_diameter is None else max(1.0, cell_diameter / 30.0)
    contrast = filters.gaussian(contrast, sigma)
    try:
        level = filters.threshold_otsu(contrast)
    except ValueError as exc:
        raise NoCellsFound("the image has no contrast between cells and background") from exc
    fg = contrast > level
    opening = morphology.disk(2 if cell_diameter is None else max(1, int(cell_diameter / 15)))
    fg = ndi.binary_fill_holes(ndi.binary_opening(fg, opening))
    components = measure.label(fg)
    if components.max() == 0:
        raise NoCellsFound("no cells were found: the image has no objects brighter (or darker) than its background")

    if cell_diameter is None:
        d = equivalent_diameters(components)
        d = d[d >= MIN_CELL_DIAMETER_PX]
        if len(d) == 0:
            raise NoCellsFound("no cells were found: every object is only a few pixels wide")
        # clumps inflate the mean, single cells dominate the median
        cell_diameter = float(np.median(d))

    distance = ndi.gaussian_filter(ndi.distance_transform_edt(fg), max(1.0, cell_diameter / 20.0))
    peaks = peak_local_max(distance, min_distance=max(2, int(0.3 * cell_diameter)),
                           threshold_abs=0.15 * cell_diameter, labels=components, exclude_border=False)
    markers = np.zeros(fg.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    # components without a peak (small or thin objects) keep one marker each so they are not lost
    missing = np.setdiff1d(np.unique(components[fg]), np.unique(components[markers > 0]))
    for comp in missing:
        ys, xs = np.nonzero(components == comp)
        k = len(ys) // 2
        markers[ys[k], xs[k]] = markers.max() + 1
    labels = segmentation.watershed(-distance, markers, mask=fg)
    if exclude_edges:
        labels = segmentation.clear_border(labels)

    typical_area = np.pi * (cell_diameter / 2.0) ** 2
    areas = np.bincount(labels.ravel())
    keep = (areas >= min_size * typical_area) & (areas <= max_size * typical_area)
    keep[0] = False
    if not keep.any():
        raise NoCellsFound(f"no cells of about {cell_diameter:.0f} px were found; "
                           "check the cell diameter or the modality of the model")
    mapping = np.zeros(len(areas), np.int32)
    mapping[keep] = np.arange(1, keep.sum() + 1, dtype=np.int32)
    labels = mapping[labels]
    return Segmentation(labels, median_cell_diameter(labels))
