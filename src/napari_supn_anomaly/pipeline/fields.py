"""Scoring a whole field: rescale so its cells have the model's cell size, crop around each cell,
score the crops in batches, and paste the anomaly maps back at the field's shape.

The generator :func:`iter_score_field` yields progress after every batch (so a caller can stop
between batches) and returns a :class:`FieldScores`.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from ..cells import (
    background_fill,
    cell_centres,
    cell_ids,
    cut_crops,
    field_scale,
    paste_maps,
    rescale_plane,
)
from ..cells.field_crops import cut_margin_px, fill_unscored
from ..cells.modality import MIRRORED_BEYOND_EDGE
from ..cells.overlay_marks import fill_marks, mark_mask
from ..cells.resize import resize_nearest, resize_within_labels
from ..progress import Progress
from ..supn.batch_threads import batch_threads
from .memory import check_rescale_fits

if TYPE_CHECKING:
    from ..scoring import Scorer


@dataclass
class FieldScores:
    heatmap: np.ndarray      # (Y, X) float32 anomaly map, 0 outside cells
    cell_ids: np.ndarray     # ids of the scored cells
    model_scores: np.ndarray  # each cell's score as the model computed it, at the model's scale
    scale: float             # field -> model rescaling factor that was used
    timings: dict


def iter_score_field(plane: np.ndarray, labels: np.ndarray, scorer: Scorer, field_cell_diameter: float,
                     batch_size: int = 32, recorded: np.ndarray | None = None,
                     marks: np.ndarray | None = None) -> Iterator[Progress]:
    """Score every cell of one plane [C, Y, X] with labels [Y, X]; returns FieldScores.

    ``recorded``: the plane as the microscope recorded it, before its intensities were matched to the
    model's (default: ``plane``); a scorer's per-cell term (``CellTerm.field_values``) is measured on it.
    ``marks``: the recorded plane's annotation marks [Y, X] when already found (``Segmentation.marks``);
    found here otherwise.

    Yields a "scoring" :class:`Progress` (cells done of the plane's cells) after each batch.
    Close the generator to stop.
    """
    timings = {}
    t0 = time.perf_counter()
    geometry = scorer.model.geometry
    scale = field_scale(geometry, field_cell_diameter)
    check_rescale_fits(*labels.shape, plane.shape[0], scale)
    # annotation marks burned into the image: filled in, and out of the masks like the field's edge.
    # Found on the field as recorded, as the cell finder finds them: matching its colours to the
    # model's stain can give parts of a parasite a mark's hue (docs/benchmarks/cells.md)
    if marks is None:
        marks = mark_mask(plane if recorded is None else recorded, scorer.model.modality)
    if marks.any():
        plane = fill_marks(plane, marks)
    plane_s, labels_s = rescale_plane(plane, labels, scale)
    hidden = resize_nearest(marks, labels_s.shape) if marks.any() else None
    ids = cell_ids(labels_s)
    term = scorer.cell_term
    cell_values = None if term is None else \
        term.field_values(plane if recorded is None else recorded, labels, ids, marks if marks.any() else None)
    centres = cell_centres(labels_s, ids)
    fill = None if scorer.model.modality in MIRRORED_BEYOND_EDGE else background_fill(plane_s, labels_s)
    heatmap_s = np.full(labels_s.shape, -np.inf, np.float32)
    model_scores = np.zeros(len(ids), np.float32)
    margin = cut_margin_px(geometry)
    timings["rescale_s"] = time.perf_counter() - t0
    t_score = t_paste = 0.0
    yield Progress("scoring", 0, len(ids))
    # as many batches cut at once as the scorer scores side by side (supn.batch_threads)
    step = batch_size * batch_threads(scorer.model.device)
    for chunk in range(0, len(ids), step):
        t1 = time.perf_counter()
        part = slice(chunk, chunk + step)
        crops, masks = cut_crops(plane_s, labels_s, ids[part], centres[part], geometry.crop_size, fill, margin,
                                 hidden)
        values = None if cell_values is None else cell_values[part]
        for offset, scored in scorer.iter_batches(crops, masks, batch_size=batch_size, cell_values=values):
            t2 = time.perf_counter()
            start = chunk + offset
            sl = slice(start, start + len(scored.scores))
            # along a cut by the field's edge the map is the model's guess of the missing half: not shown
            batch_masks = masks[offset:offset + len(scored.scores)]
            paste_maps(heatmap_s, labels_s, ids[sl], centres[sl], np.where(batch_masks, scored.maps, -np.inf))
            model_scores[sl] = scored.scores
            t_paste += time.perf_counter() - t2
            yield Progress("scoring", sl.stop, len(ids))
        t_score += time.perf_counter() - t1
    t_score -= t_paste
    t3 = time.perf_counter()
    fill_unscored(heatmap_s, labels_s)
    # each cell's map resized within the cell: a cell's score never comes from its neighbour's map
    heatmap = resize_within_labels(heatmap_s, labels_s, labels) if heatmap_s.shape != labels.shape else heatmap_s
    t_paste += time.perf_counter() - t3
    timings.update(score_s=t_score, paste_s=t_paste)
    return FieldScores(heatmap, ids, model_scores, scale, timings)
