"""Detection on one block of a very large plane: the unit of work a cluster spreads out.

A plane is cut into square cores (:func:`plan_blocks`); each block is read with a halo of a few
cell diameters, so every cell whose centre lies in the core is segmented and scored with all of
its surroundings. :func:`detect_block` is pure (arrays in, arrays and a table out; no files, no
model loading) and its arguments pickle, so any process can run it. What must be the same in
every block - the cell diameter and the intensity matching - is decided once per plane by
:func:`plan_plane` and travels in a :class:`BlockPlan`.

Cell ids: a block numbers its own cells 1..n and adds ``index * id_stride``; ids are unique over
the plane without the blocks talking to each other (they are sparse when blocks hold few cells).
Given labels keep their ids.
"""
from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..cells import field_scale, median_cell_diameter, number_consecutively
from ..errors import Cancelled, InputError, NoCellsFound
from ..models.data_range import IntensityMatch, apply_match, plan_match
from ..progress import Progress
from .axes import read_plane
from .candidates import candidate_table, cell_table
from .fields import iter_score_field
from .result import DetectionResult, _with_plane_columns
from .tiles import (
    CORE_PX,
    HALO_DIAMETERS,
    Tile,
    _cells_in,
    _first_tile_with_cells,
    cells_of_core,
    plan_tiles,
)

if TYPE_CHECKING:
    from ..scoring import Scorer
    from .stacks import DetectSettings

INT32_MAX = 2**31 - 1


@dataclass(frozen=True)
class Block:
    index: int                    # row-major number of the block in its plane
    plane: tuple[int, ...]        # index of the plane in a stack; () for one plane
    outer: tuple[slice, slice]    # the window that is read: core + halo, clipped to the plane
    core: tuple[slice, slice]     # the block owns the cells whose centre lies here
    size: tuple[int, int] = (0, 0)  # (Y, X) of the whole plane: a cell is cut by the image's edge, not the block's

    def as_tile(self) -> Tile:
        return Tile(self.outer, self.core)


@dataclass(frozen=True)
class BlockPlan:
    """What every block of a plane shares: decided once, before the blocks run."""

    diameter: float               # cell diameter in the plane, px
    match: IntensityMatch         # intensity matching of the whole plane
    id_stride: int                # block k numbers its cells k * id_stride + 1, + 2, ...
    modality: str
    exclude_edges: bool
    batch_size: int
    labels_given: bool


@dataclass
class BlockResult:
    """The cells a block owns: their labels and heatmap over the bounding box of their pixels."""

    block: Block
    origin: tuple[int, int]       # plane position of labels[0, 0]
    labels: np.ndarray            # int32, ids as in the whole plane; 0 outside the block's cells
    heatmap: np.ndarray           # float32, 0 outside the block's cells
    cell_table: pd.DataFrame      # cell_id, y, x (plane pixels), area, score, candidate
    timings: dict = field(default_factory=dict)

    @property
    def window(self) -> tuple[slice, slice]:
        y0, x0 = self.origin
        return slice(y0, y0 + self.labels.shape[0]), slice(x0, x0 + self.labels.shape[1])


def block_halo(diameter: float, crop_px: float) -> int:
    """Halo wide enough that a cell centred in the core lies whole in the window, with its whole crop."""
    return int(np.ceil(HALO_DIAMETERS * max(diameter, crop_px / 2)))


def plan_blocks(height: int, width: int, halo: int, core: int = CORE_PX,
                plane: tuple[int, ...] = ()) -> list[Block]:
    """The plane's tiles (``tiles.plan_tiles``) as blocks of one plane, numbered in row-major order."""
    return [Block(k, tuple(plane), tile.outer, tile.core, (height, width))
            for k, tile in enumerate(plan_tiles(height, width, core, halo))]


def id_stride(n_blocks: int, core: int) -> int:
    """Room for each block's ids: a cell has at least a few pixels, and all ids must fit int32."""
    stride = min(core * core // 4, INT32_MAX // max(1, n_blocks))
    if stride < 1000:
        raise InputError(f"the plane is too large for one run ({n_blocks} blocks); crop it into parts")
    return int(stride)


def window_of(data, axes: str, plane: tuple[int, ...], chan_axis: str | None, channels: list[int] | None,
              outer: tuple[slice, slice]) -> np.ndarray:
    """The pixels of ``outer`` in one plane as [C, Y, X] float32, reading only them from a lazy array."""
    index = tuple(outer[0] if a == "Y" else outer[1] if a == "X" else slice(None) for a in axes)
    return read_plane(data[index], axes, plane, chan_axis, channels)


def plan_plane(probe: np.ndarray, scorer: Scorer, settings: DetectSettings, n_blocks: int, core: int,
               labels: np.ndarray | None = None) -> BlockPlan:
    """Measure the cell diameter and the intensity matching on ``probe`` (a window [C, Y, X] of the plane
    that holds cells, with its ``labels`` when they are given), as the tiled path does."""
    model = scorer.model
    h, w = probe.shape[1:]
    if labels is None:
        _, probe_labels = _first_tile_with_cells(probe, model.modality, settings.cell_diameter,
                                                 settings.exclude_edge_cells, max(h, w))
    else:
        probe_labels = labels
    diameter = float(settings.cell_diameter or median_cell_diameter(probe_labels))
    window = model.crop_size / field_scale(model.geometry, diameter)
    match = plan_match(probe, probe_labels, model.data_range, window, settings.intensity)
    return BlockPlan(diameter, match, id_stride(n_blocks, core), model.modality, settings.exclude_edge_cells,
                     settings.batch_size, labels is not None)


def detect_block(window: np.ndarray, block: Block, scorer: Scorer, plan: BlockPlan,
                 labels: np.ndarray | None = None) -> BlockResult:
    """Segment (unless ``labels`` of the window are given) and score the cells of one block.

    ``window`` is the block's ``outer`` window [C, Y, X]. Returns the cells whose centre lies in
    the block's core, with their maps and table rows in plane coordinates.
    """
    import time

    t0 = time.perf_counter()
    recorded, window = window, apply_match(window, plan.match)
    tile = block.as_tile()
    if labels is not None:
        own = cells_of_core(np.asarray(labels, np.int32), tile)
    else:
        found = _cells_in(window, plan.modality, plan.diameter, plan.exclude_edges)
        own = np.zeros(window.shape[1:], np.int32) if found is None else cells_of_core(found, tile)
        own = number_consecutively(own)  # 1..n, in the order segmentation found them
    timings = {"segmentation_s": time.perf_counter() - t0}
    oy, ox = block.outer[0].start, block.outer[1].start
    if not own.any():
        empty = cell_table(np.zeros((1, 1), np.float32), np.zeros((1, 1), np.int32))
        return BlockResult(block, (oy, ox), np.zeros((0, 0), np.int32), np.zeros((0, 0), np.float32), empty,
                           timings)
    scoring = iter_score_field(window, own, scorer, plan.diameter, plan.batch_size, recorded)
    while True:
        try:
            next(scoring)
        except StopIteration as done:
            scores = done.value
            break
    timings.update({k: scores.timings[k] for k in ("rescale_s", "score_s", "paste_s")})
    heatmap = np.where(own > 0, scores.heatmap, 0).astype(np.float32)
    edge = _cut_by_image_edge(own, block)
    ys, xs = np.nonzero(own)
    box = slice(ys.min(), ys.max() + 1), slice(xs.min(), xs.max() + 1)
    own, heatmap = own[box], heatmap[box]
    table = cell_table(heatmap, own, edge=edge)
    if not plan.labels_given:
        base = block.index * plan.id_stride
        own[own > 0] += base
        table["cell_id"] += base
    table["y"] += oy + box[0].start
    table["x"] += ox + box[1].start
    return BlockResult(block, (oy + box[0].start, ox + box[1].start), own, heatmap, table, timings)


def _cut_by_image_edge(labels: np.ndarray, block: Block) -> np.ndarray:
    """Whether each label 0..max of the block's window touches the edge of the whole image."""
    touching = np.zeros(int(labels.max()) + 1, bool)
    (y0, y1), (x0, x1) = (block.outer[0].start, block.outer[0].stop), (block.outer[1].start, block.outer[1].stop)
    height, width = block.size
    for at_edge, side in ((y0 == 0, labels[0]), (y1 == height, labels[-1]), (x0 == 0, labels[:, 0]),
                          (x1 == width, labels[:, -1])):
        if at_edge:
            touching[side] = True
    touching[0] = False
    return touching


def block_candidates(heatmap: np.ndarray, labels: np.ndarray, origin: tuple[int, int], threshold: float,
                     min_area: int = 1) -> pd.DataFrame:
    """Candidate regions of a block's cells (a region never leaves its cell); plane coordinates."""
    table = candidate_table(heatmap, labels, threshold, min_area)
    table["y"] += origin[0]
    table["x"] += origin[1]
    return table


def plane_layout(data, axes: str, model, channel):
    """Where the planes, channels and pixels of ``data`` are (as the in-process path sees them)."""
    from .stacks import _layout

    return _layout(data, axes, model, channel)


@dataclass
class BlockProgress(Progress):
    """A block is done: ``heatmap`` and ``cells`` (plane_shape + (Y, X)) hold every block finished so far."""

    heatmap: np.ndarray | None = None
    cells: np.ndarray | None = None


def is_lazy(data) -> bool:
    """A Dask (or zarr) array, read chunk by chunk: detection reads it block by block too."""
    return hasattr(data, "dask") or type(data).__module__.startswith("zarr")


# Side of the windows on which a big plane's cell size and intensity matching are measured before any
# block starts (serial time): at 2048 px the finder took 15-18 CPU s, which kept 2 Dask workers at 1.5x
# on a 5000^2 plane; 1024 px still holds about 200 cells of 64 px (docs/benchmarks/scale.md).
PROBE_PX = 1024
PROBE_SPOTS = ((0.5, 0.5), (0.25, 0.25), (0.25, 0.75), (0.75, 0.25), (0.75, 0.75), (0.5, 0.2), (0.5, 0.8))
NO_CELLS_IN_PROBES = "no cells were found in the parts of the image looked at to measure the cell size"


def probe_windows(height: int, width: int) -> Iterator[tuple[slice, slice]]:
    """The windows a big plane's cell size is measured on, in turn: its centre first, then around it."""
    side = min(PROBE_PX, height, width)
    for fy, fx in PROBE_SPOTS:
        y0 = int(np.clip(fy * height - side / 2, 0, height - side))
        x0 = int(np.clip(fx * width - side / 2, 0, width - side))
        yield slice(y0, y0 + side), slice(x0, x0 + side)


def plan_by_probes(read: Callable[[tuple[slice, slice]], tuple[np.ndarray, np.ndarray | None]],
                   height: int, width: int, scorer: Scorer, settings: DetectSettings, n_blocks: int,
                   core: int) -> BlockPlan:
    """Cell size and intensity matching from the first probe window that holds cells. ``read(outer)``
    gives the window [C, y, x] and its labels (None when the cells are to be found)."""
    for outer in probe_windows(height, width):
        probe, labels = read(outer)
        if np.ptp(probe) == 0 or (labels is not None and not labels.any()):
            continue
        try:
            return plan_plane(probe, scorer, settings, n_blocks, core, labels)
        except NoCellsFound:
            continue
    raise NoCellsFound(NO_CELLS_IN_PROBES)


def _probe(data, layout, plane, scorer, settings, n_blocks: int, core: int) -> BlockPlan:
    return plan_by_probes(lambda outer: (window_of(data, layout.axes, plane, layout.chan_axis, layout.channels,
                                                   outer), None),
                          *layout.yx, scorer, settings, n_blocks, core)


def iter_detect_blocks(data, axes: str, scorer: Scorer, *, channel=None, settings: DetectSettings | None = None,
                       should_stop: Callable[[], bool] | None = None, source: dict | None = None,
                       core: int | None = None) -> Iterator[Progress]:
    """Detection on a lazy image block by block in this process: only one block's pixels are read at a
    time. Yields a :class:`BlockProgress` after every block (its arrays fill in as blocks finish) and
    returns a DetectionResult; ``should_stop`` is asked between blocks."""
    from . import tiles
    from .stacks import DetectSettings, choose_run_threshold

    core = int(core or tiles.CORE_PX)
    settings = (settings or DetectSettings()).check()
    layout = plane_layout(data, axes, scorer.model, channel)
    heatmap = np.zeros(layout.plane_shape + layout.yx, np.float32)
    cells = np.zeros(layout.plane_shape + layout.yx, np.int32)
    tables, plans = [], []
    n_planes = layout.n_planes
    for flat in range(n_planes):
        plane = layout.plane_index(flat)
        n_blocks = len(plan_blocks(*layout.yx, 0, core))
        plan = _probe(data, layout, plane, scorer, settings, n_blocks, core)
        plans.append(plan)
        crop_px = scorer.model.crop_size * plan.diameter / scorer.model.cell_diameter_px
        blocks = plan_blocks(*layout.yx, block_halo(plan.diameter, crop_px), core, plane)
        for k, block in enumerate(blocks):
            if should_stop is not None and should_stop():
                raise Cancelled("detection was cancelled")
            window = window_of(data, layout.axes, plane, layout.chan_axis, layout.channels, block.outer)
            result = detect_block(window, block, scorer, plan)
            if len(result.cell_table):
                index = tuple(plane) + result.window
                mine = result.labels > 0
                cells[index] = np.where(mine, result.labels, cells[index])
                heatmap[index] = np.where(mine, result.heatmap, heatmap[index])
                tables.append(_with_plane_columns(result.cell_table, flat, plane, layout.plane_axes))
            where = f"plane {flat + 1} of {n_planes}: " if n_planes > 1 else ""
            yield BlockProgress("block", k + 1, len(blocks), f"{where}block {k + 1} of {len(blocks)}",
                                overall=(flat + (k + 1) / len(blocks)) / n_planes, plane=flat,
                                heatmap=heatmap, cells=cells)
    if not tables:
        raise NoCellsFound("no cells were found")
    table = pd.concat(tables, ignore_index=True)
    choice = choose_run_threshold(scorer, settings, table["score"].to_numpy())
    provenance = {"model": scorer.model.name, "scorer": scorer.name, "heatmap_units": scorer.units,
                  "cell_diameter_px": plans[0].diameter, "blocks": len(blocks), "block_core_px": core,
                  "cells_from": "segmentation", "intensity_matching": plans[0].match.to_dict(),
                  "axes": layout.axes}
    provenance.update(source or {})
    result = DetectionResult(heatmap, cells, table, None, choice.threshold, provenance, layout.plane_axes,
                             settings.min_area)
    return result.with_choice(choice)
