"""Very large planes (slide scans, stitched mosaics) in overlapping tiles.

Segmentation needs about 80 bytes per pixel of the whole plane (``pipeline/memory.py``), so a plane
above ``AUTO_TILE_PIXELS`` is cut into square cores of ``core`` pixels, each processed with a halo
of a few cell diameters around it. A cell belongs to the tile whose core holds its centre, so every
cell is segmented and scored once, with all of its surroundings, and tiles meet without seams.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Iterator

import numpy as np

from ..cells import cell_ids, field_scale, label_centroids, median_cell_diameter, number_consecutively, segment_cells
from ..errors import NoCellsFound
from ..models.data_range import IntensityMatch, apply_match, plan_match
from ..progress import Progress
from .fields import iter_score_field

if TYPE_CHECKING:
    from ..scoring import Scorer

AUTO_TILE_PIXELS = 4096 * 4096
CORE_PX = 2048
HALO_DIAMETERS = 2.0


@dataclass
class Tile:
    outer: tuple[slice, slice]  # the window that is read and segmented
    core: tuple[slice, slice]   # the cells whose centre lies here belong to this tile


@dataclass
class PlaneOutcome:
    heatmap: np.ndarray
    labels: np.ndarray
    diameter: float
    scale: float
    match: IntensityMatch
    timings: dict = field(default_factory=dict)
    n_tiles: int = 1
    warning: str | None = None  # the field does not look like red cells (cells.plausibility)


def needs_tiles(height: int, width: int) -> bool:
    return height * width > AUTO_TILE_PIXELS


def _cuts(length: int, core: int) -> list[int]:
    """Edges of as few parts of at most ``core`` px as cover ``length``, all of one size (within 1 px): a
    last thin strip would be a tile costing a whole halo for little core, and run last on its own."""
    n = max(1, -(-length // core))
    return [i * length // n for i in range(n + 1)]


def plan_tiles(height: int, width: int, core: int, halo: int) -> list[Tile]:
    """Cores that cover the plane once, in row-major order, each read with ``halo`` px around it."""
    tiles = []
    rows, cols = _cuts(height, core), _cuts(width, core)
    for y0, y1 in zip(rows[:-1], rows[1:]):
        for x0, x1 in zip(cols[:-1], cols[1:]):
            outer = (slice(max(0, y0 - halo), min(height, y1 + halo)), slice(max(0, x0 - halo), min(width, x1 + halo)))
            tiles.append(Tile(outer, (slice(y0, y1), slice(x0, x1))))
    return tiles


def cells_of_core(labels: np.ndarray, tile: Tile) -> np.ndarray:
    """``labels`` of the tile's outer window, keeping only the cells whose centre lies in its core."""
    ids = cell_ids(labels)
    if len(ids) == 0:
        return labels
    centres, _ = label_centroids(labels, ids)
    y = centres[:, 0] + tile.outer[0].start
    x = centres[:, 1] + tile.outer[1].start
    inside = ((y >= tile.core[0].start) & (y < tile.core[0].stop) & (x >= tile.core[1].start) & (x < tile.core[1].stop))
    keep = np.zeros(int(labels.max()) + 1, bool)
    keep[ids[inside]] = True
    return np.where(keep[labels], labels, 0)


def _centre_tile(tiles: list[Tile]) -> Tile:
    return tiles[len(tiles) // 2]


def _first_tile_with_cells(plane: np.ndarray, modality: str, cell_diameter: float | None, exclude_edges: bool,
                           core: int) -> tuple[Tile, np.ndarray]:
    """The tile nearest the plane's centre in which segmentation finds cells, and its cells."""
    height, width = plane.shape[1:]
    tiles = plan_tiles(height, width, core, core // 2)  # a margin, so cells cut by the window are few
    centre = np.array([height / 2, width / 2])
    tiles.sort(key=lambda t: np.hypot(*(np.array([(t.core[0].start + t.core[0].stop) / 2,
                                                  (t.core[1].start + t.core[1].stop) / 2]) - centre)))
    for tile in tiles:
        found = _cells_in(plane[(slice(None),) + tile.outer], modality, cell_diameter, exclude_edges)
        if found is not None:
            return tile, found
    raise NoCellsFound("no cells were found in any part of the plane")


def _cells_in(window: np.ndarray, modality: str, cell_diameter: float | None, exclude_edges: bool):
    """Cell labels of one window, or None where it holds none (empty or blank parts of a mosaic)."""
    if np.ptp(window) == 0:
        return None
    try:
        return segment_cells(window, modality, cell_diameter, exclude_edges=exclude_edges).labels
    except NoCellsFound:
        return None


def iter_plane_in_tiles(plane: np.ndarray, scorer: Scorer, *, labels: np.ndarray | None = None,
                        cell_diameter: float | None = None, intensity: str = "auto", batch_size: int = 32,
                        exclude_edges: bool = True, core: int | None = None) -> Iterator[Progress]:
    """Segment (unless ``labels`` are given) and score one plane [C, Y, X] tile by tile.

    Yields a "tiles" Progress after every scored batch; returns a :class:`PlaneOutcome`. The cell diameter and the
    intensity matching are measured once, on the tile nearest the centre that holds cells, so
    every tile is treated alike.
    Given labels keep their ids; segmented cells are numbered across the whole plane.
    """
    model = scorer.model
    height, width = plane.shape[1:]
    core = int(core or CORE_PX)
    timings = {"segmentation_s": 0.0, "rescale_s": 0.0, "score_s": 0.0, "paste_s": 0.0}
    diameter = cell_diameter
    t0 = time.perf_counter()
    if labels is not None:
        probe = _centre_tile(plan_tiles(height, width, core, 0))
        probe_labels = labels[probe.outer]
        diameter = diameter or median_cell_diameter(labels)
    else:
        probe, probe_labels = _first_tile_with_cells(plane, model.modality, cell_diameter, exclude_edges, core)
        diameter = diameter or median_cell_diameter(probe_labels)
    scale = field_scale(model.geometry, diameter)
    window = model.crop_size / scale  # a crop's width in this plane's pixels
    match = plan_match(plane[(slice(None),) + probe.outer], probe_labels, model.data_range, window, intensity)
    timings["segmentation_s"] += time.perf_counter() - t0

    halo = int(np.ceil(HALO_DIAMETERS * max(diameter, window / 2)))
    tiles = plan_tiles(height, width, core, halo)
    heatmap = np.zeros((height, width), np.float32)
    out_labels = np.zeros((height, width), np.int32)
    next_id, n_cells = 1, 0
    yield _tile_progress(0, len(tiles), 0)
    for k, tile in enumerate(tiles):
        t1 = time.perf_counter()
        recorded = plane[(slice(None),) + tile.outer]
        window_plane = apply_match(recorded, match)
        if labels is not None:
            tile_labels = cells_of_core(labels[tile.outer].astype(np.int32), tile)
        else:
            found = _cells_in(window_plane, model.modality, diameter, exclude_edges)
            tile_labels = np.zeros(window_plane.shape[1:], np.int32) if found is None else cells_of_core(found, tile)
        timings["segmentation_s"] += time.perf_counter() - t1
        if tile_labels.any():
            scoring = iter_score_field(window_plane, tile_labels, scorer, diameter, batch_size, recorded)
            while True:
                try:
                    step = next(scoring)
                except StopIteration as done:
                    scores = done.value
                    break
                yield _tile_progress(k, len(tiles), n_cells + step.done)
            for key in ("rescale_s", "score_s", "paste_s"):
                timings[key] += scores.timings[key]
            mine = tile_labels > 0
            free = out_labels[tile.outer] == 0
            if labels is None:  # number the segmented cells across the plane
                tile_labels = number_consecutively(tile_labels)
                found = int(tile_labels.max(initial=0))
                tile_labels[mine] += next_id - 1
                next_id += found
            out_labels[tile.outer][mine & free] = tile_labels[mine & free]
            heatmap[tile.outer][mine & free] = scores.heatmap[mine & free]
            n_cells += len(scores.cell_ids)
        yield _tile_progress(k + 1, len(tiles), n_cells)
    return PlaneOutcome(heatmap, out_labels, float(diameter), scale, match, timings, len(tiles))


def _tile_progress(done: int, total: int, cells: int) -> Progress:
    return Progress("tiles", done, total, f"tile {done} of {total}, {cells} cells scored")
