"""Per-cell numbers a re-ranker can learn from: the heatmap inside the cell, its size and its colour.

Everything is measured inside the cell's label, per bounding box (fast on big fields).
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

PERCENTILES = (5, 50)


def cell_measurements(image: np.ndarray, heatmap: np.ndarray, labels: np.ndarray, ids) -> pd.DataFrame:
    """One row per cell id: area, heatmap max/mean/p90 and share above its mean + 2 sd, and per
    image channel the mean, standard deviation and 5th/50th percentiles. ``image`` is (Y, X) or
    (Y, X, C) in the labels' geometry."""
    img = np.asarray(image, np.float32)
    if img.ndim == 2:
        img = img[..., None]
    heat = np.asarray(heatmap, np.float32)
    boxes = ndi.find_objects(labels)
    rows = []
    for cell in ids:
        cell = int(cell)
        box = boxes[cell - 1] if 0 < cell <= len(boxes) else None
        row = {"cell_id": cell}
        if box is None:
            rows.append(row)
            continue
        inside = labels[box] == cell
        h = heat[box][inside]
        h = h[np.isfinite(h)]
        row.update(area=float(inside.sum()), heat_max=float(h.max()) if h.size else 0.0,
                   heat_mean=float(h.mean()) if h.size else 0.0,
                   heat_p90=float(np.percentile(h, 90)) if h.size else 0.0)
        pixels = img[box][inside]
        for c in range(pixels.shape[1]):
            values = pixels[:, c]
            row[f"c{c}_mean"] = float(values.mean())
            row[f"c{c}_sd"] = float(values.std())
            for q, v in zip(PERCENTILES, np.percentile(values, PERCENTILES)):
                row[f"c{c}_p{q}"] = float(v)
        rows.append(row)
    return pd.DataFrame(rows).fillna(0.0)


def feature_matrix(table: pd.DataFrame, exclude=("cell_id", "plane", "y", "x", "t", "z", "candidate")) -> np.ndarray:
    """The numeric columns of ``table`` (not ids or positions) as a float matrix, non-finite as 0."""
    numeric = table.drop(columns=[c for c in exclude if c in table.columns]).select_dtypes(include=[np.number, bool])
    values = np.array(numeric.to_numpy(np.float64), copy=True)
    values[~np.isfinite(values)] = 0.0
    return values


SCORE_LIKE = ("score", "area")


def review_measurements(cells: pd.DataFrame, planes, heatmap: np.ndarray, labels: np.ndarray) -> pd.DataFrame:
    """Re-ranker features for every row of a cell table (rows aligned): its score columns and area,
    and :func:`cell_measurements` of the display image ``planes(flat)`` (None: heatmap only),
    ``heatmap`` and ``labels`` laid out as plane axes + (Y, X)."""
    heat = heatmap.reshape(-1, *heatmap.shape[-2:])
    lab = labels.reshape(-1, *labels.shape[-2:])
    plane_of = cells["plane"].to_numpy(int) if "plane" in cells.columns else np.zeros(len(cells), int)
    parts = []
    for plane in np.unique(plane_of):
        rows = np.flatnonzero(plane_of == plane)
        pixels = planes(int(plane)) if planes is not None else None
        if pixels is None:
            pixels = np.zeros(lab.shape[1:], np.float32)
        measured = cell_measurements(pixels, heat[plane], lab[plane], cells["cell_id"].to_numpy(int)[rows])
        parts.append(measured.drop(columns=["cell_id", "area"], errors="ignore").set_index(rows))
    measured = pd.concat(parts).sort_index() if parts else pd.DataFrame(index=range(len(cells)))
    own = cells[[c for c in cells.columns if c.endswith(SCORE_LIKE) and pd.api.types.is_numeric_dtype(cells[c])]]
    return pd.concat([own.reset_index(drop=True), measured.reset_index(drop=True)], axis=1)
