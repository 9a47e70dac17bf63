"""Scoring a whole field: rescale so its cells have the model's cell size, crop around each cell,
score the crops in batches, and paste the anomaly maps back at the field's shape.

The generator :func:`iter_score_field` yields progress after every batch (so a caller can stop
between batches) and returns a :class:`FieldScores`.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Iterator

import numpy as np
from skimage import transform

from ..models import AnomalyModel
from .candidates import label_centroids


@dataclass
class FieldScores:
    heatmap: np.ndarray      # (Y, X) float32 anomaly map, 0 outside cells
    cell_ids: np.ndarray     # ids of the scored cells
    model_scores: np.ndarray  # each cell's score as the model computed it, at the model's scale
    scale: float             # field -> model rescaling factor that was used
    timings: dict


@dataclass
class BatchProgress:
    done: int    # cells scored so far in this plane
    total: int   # cells in this plane


def model_scale(model: AnomalyModel, field_cell_diameter: float) -> float:
    """Factor that brings cells of ``field_cell_diameter`` pixels to the model's cell size."""
    if not field_cell_diameter or field_cell_diameter <= 0:
        raise ValueError("the cell diameter must be a positive number of pixels")
    return float(model.cell_diameter_px) / float(field_cell_diameter)


def rescale_plane(plane: np.ndarray, labels: np.ndarray, scale: float):
    """[C, Y, X] intensities (linear) and labels (nearest) rescaled by ``scale``."""
    if abs(scale - 1.0) < 1e-3:
        return plane.astype(np.float32, copy=False), labels
    out_shape = tuple(max(1, int(round(s * scale))) for s in plane.shape[1:])
    scaled = np.stack([transform.resize(ch, out_shape, order=1, anti_aliasing=scale < 1, preserve_range=True)
                       for ch in plane]).astype(np.float32)
    scaled_labels = transform.resize(labels, out_shape, order=0, preserve_range=True,
                                     anti_aliasing=False).astype(labels.dtype)
    return scaled, scaled_labels


def background_fill(plane: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Per-channel median of the pixels outside cells: what lies beyond the field's edge."""
    outside = labels == 0
    if outside.sum() < 16:
        outside = np.ones_like(outside)
    values = plane[:, outside]
    if values.shape[1] > 200_000:  # a strided sample is plenty for a median
        values = values[:, :: values.shape[1] // 200_000]
    return np.median(values, axis=1).astype(np.float32)


def cell_centres(labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Rounded centres of mass, [N, 2] (y, x)."""
    if len(ids) == 0:
        return np.zeros((0, 2), int)
    centres, _ = label_centroids(labels, np.asarray(ids))
    return np.rint(centres).astype(int).reshape(-1, 2)


def cut_crops(plane: np.ndarray, labels: np.ndarray, ids: np.ndarray, centres: np.ndarray,
              crop_size: int, fill: np.ndarray):
    """Crops [N, C, S, S] centred on each cell, padded with ``fill``; masks [N, S, S] of that cell only."""
    c, h, w = plane.shape
    half = crop_size // 2
    crops = np.empty((len(ids), c, crop_size, crop_size), np.float32)
    crops[:] = fill[None, :, None, None]
    masks = np.zeros((len(ids), crop_size, crop_size), bool)
    for k, (cid, (cy, cx)) in enumerate(zip(ids, centres)):
        y0, x0 = cy - half, cx - half
        sy0, sx0, sy1, sx1 = max(0, y0), max(0, x0), min(h, y0 + crop_size), min(w, x0 + crop_size)
        if sy1 <= sy0 or sx1 <= sx0:
            continue
        crops[k, :, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = plane[:, sy0:sy1, sx0:sx1]
        masks[k, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = labels[sy0:sy1, sx0:sx1] == cid
    return crops, masks


def paste_maps(heatmap: np.ndarray, labels: np.ndarray, ids: np.ndarray, centres: np.ndarray,
               maps: np.ndarray) -> None:
    """Write each crop's map into ``heatmap`` inside its own cell (max where two maps overlap)."""
    h, w = heatmap.shape
    half = maps.shape[-1] // 2
    size = maps.shape[-1]
    for cid, (cy, cx), m in zip(ids, centres, maps):
        y0, x0 = cy - half, cx - half
        sy0, sx0, sy1, sx1 = max(0, y0), max(0, x0), min(h, y0 + size), min(w, x0 + size)
        if sy1 <= sy0 or sx1 <= sx0:
            continue
        window = heatmap[sy0:sy1, sx0:sx1]
        inside = labels[sy0:sy1, sx0:sx1] == cid
        piece = m[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0]
        window[inside] = np.maximum(window[inside], piece[inside])


def score_batch(model: AnomalyModel, scorer: str, crops: np.ndarray, masks: np.ndarray, segmenter=None):
    """One batch of crops through the model's own likelihood, or through a registry scorer
    (``segmenter``: the trained network of a self-supervised one)."""
    if scorer in model.scorers:
        (_, scored), = list(model.iter_score_batches(crops, masks, scorer, batch_size=len(crops)))
        return scored
    from ..scorers import score_cells_with

    return score_cells_with(scorer, model, crops, masks, batch_size=len(crops), segmenter=segmenter)


def iter_score_field(plane: np.ndarray, labels: np.ndarray, model: AnomalyModel, scorer: str,
                     field_cell_diameter: float, batch_size: int = 32, segmenter=None) -> Iterator[BatchProgress]:
    """Score every cell of one plane [C, Y, X] with labels [Y, X]; returns FieldScores.

    Yields a :class:`BatchProgress` after each batch. Close the generator to stop.
    """
    timings = {}
    t0 = time.perf_counter()
    scale = model_scale(model, field_cell_diameter)
    plane_s, labels_s = rescale_plane(plane, labels, scale)
    ids = np.unique(labels_s)
    ids = ids[ids > 0]
    centres = cell_centres(labels_s, ids)
    fill = background_fill(plane_s, labels_s)
    heatmap_s = np.full(labels_s.shape, -np.inf, np.float32)
    model_scores = np.zeros(len(ids), np.float32)
    timings["rescale_s"] = time.perf_counter() - t0
    t_score = t_paste = 0.0
    yield BatchProgress(0, len(ids))
    for start in range(0, len(ids), batch_size):
        sl = slice(start, start + batch_size)
        t1 = time.perf_counter()
        crops, masks = cut_crops(plane_s, labels_s, ids[sl], centres[sl], model.crop_size, fill)
        scored = score_batch(model, scorer, crops, masks, segmenter)
        t2 = time.perf_counter()
        paste_maps(heatmap_s, labels_s, ids[sl], centres[sl], scored.maps)
        model_scores[sl] = scored.scores
        t_paste += time.perf_counter() - t2
        t_score += t2 - t1
        yield BatchProgress(min(start + batch_size, len(ids)), len(ids))
    t3 = time.perf_counter()
    heatmap_s[~np.isfinite(heatmap_s)] = 0.0
    if heatmap_s.shape != labels.shape:
        heatmap = transform.resize(heatmap_s, labels.shape, order=1, preserve_range=True,
                                   anti_aliasing=False).astype(np.float32)
        heatmap[labels == 0] = 0.0
    else:
        heatmap = heatmap_s
    t_paste += time.perf_counter() - t3
    timings.update(score_s=t_score, paste_s=t_paste)
    return FieldScores(heatmap, ids, model_scores, scale, timings)
