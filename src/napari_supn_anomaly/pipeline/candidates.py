"""From an anomaly heatmap and cell labels to tables: one row per cell, one row per candidate.

A candidate is a connected region of heatmap >= threshold inside one cell. A cell's score is the
maximum of the heatmap inside it, so a cell is a candidate exactly when it holds a candidate
region. Re-thresholding needs only the heatmap and the labels, never the model.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

from ..cells import cell_ids, label_centroids
from ..cells.kinds import edge_objects

CELL_COLUMNS = ["cell_id", "y", "x", "area", "score", "candidate", "edge", "kind"]
# A cell's review status (the ``status`` column of both tables; napari_supn_anomaly.review): empty
# for a cell that is not a candidate, "candidate" until a person decides, then one of DECISIONS.
CANDIDATE_STATUS = "candidate"
DECISIONS = ("accepted", "rejected", "unsure")
CANDIDATE_DTYPES = {"candidate_id": np.int64, "y": float, "x": float, "area": np.int64, "score": np.float32,
                    "mean_score": np.float32, "cell_id": np.int64, "status": object}


def label_maxima(values: np.ndarray, labels: np.ndarray, ids: np.ndarray) -> np.ndarray:
    """Maximum of ``values`` inside each label (per bounding box: fast on big fields)."""
    boxes = ndi.find_objects(labels)
    out = np.full(len(ids), -np.inf, np.float32)
    for k, i in enumerate(ids):
        box = boxes[i - 1] if 0 < i <= len(boxes) else None
        if box is not None:
            out[k] = values[box][labels[box] == i].max()
    return out


def cell_table(heatmap: np.ndarray, labels: np.ndarray, edge: np.ndarray | None = None,
               kinds: np.ndarray | None = None) -> pd.DataFrame:
    """cell_id, centroid (y, x), area (px), score (max of the heatmap inside the cell), ``edge``
    (the cell is cut by the field's edge: given per label 0..max, else whether it touches the
    border of ``labels``) and ``kind`` (given per label 0..max, else "red_cell": only red cells
    are scored, see cells/kinds.py)."""
    ids = cell_ids(labels)
    if len(ids) == 0:
        return pd.DataFrame({c: pd.Series(dtype=float) for c in CELL_COLUMNS[:5]}).assign(
            candidate=pd.Series(dtype=bool), edge=pd.Series(dtype=bool), kind=pd.Series(dtype=object))
    centres, areas = label_centroids(labels, ids)
    scores = label_maxima(heatmap, labels, ids)
    if edge is None:
        edge = edge_objects(labels)
    return pd.DataFrame({"cell_id": ids.astype(np.int64), "y": centres[:, 0], "x": centres[:, 1],
                         "area": areas.astype(np.int64), "score": scores, "candidate": False,
                         "edge": np.asarray(edge, bool)[ids],
                         "kind": "red_cell" if kinds is None else np.asarray(kinds, object)[ids]})


def candidate_regions(heatmap: np.ndarray, labels: np.ndarray, threshold: float) -> np.ndarray:
    """Label image of the candidate regions: heatmap >= threshold inside cells, split at cell borders."""
    above = (heatmap >= threshold) & (labels > 0)
    out = np.zeros(labels.shape, np.int32)
    if not above.any():
        return out
    components, _ = ndi.label(above, structure=np.ones((3, 3), bool), output=np.int32)
    # a region that crosses from one touching cell into the next becomes one region per cell;
    # only the pixels above threshold are keyed, so a huge plane costs a few bytes per pixel
    key = components[above].astype(np.int64) * (int(labels.max()) + 1) + labels[above]
    _, inverse = np.unique(key, return_inverse=True)
    out[above] = inverse.astype(np.int32) + 1
    return out


def candidate_table(heatmap: np.ndarray, labels: np.ndarray, threshold: float, min_area: int = 1) -> pd.DataFrame:
    """One row per candidate region: centroid, area, peak and mean score, the cell it lies in."""
    regions = candidate_regions(heatmap, labels, threshold)
    # measured on the regions' own pixels only: a block holds millions of pixels and a few hundred in regions
    where = np.flatnonzero(regions)
    if len(where) == 0:
        return empty_candidate_table()
    region = regions.ravel()[where]
    values = heatmap.ravel()[where]
    n = int(region.max())
    ids = np.arange(1, n + 1)
    areas = np.bincount(region, minlength=n + 1)[1:]
    means = (np.bincount(region, weights=values, minlength=n + 1)[1:] / areas).astype(np.float32)
    # the centroid is the peak's position (the first in row order): it lies inside the region even for a ring
    by_peak = np.lexsort((where, -values, region))
    first = by_peak[np.searchsorted(region[by_peak], ids)]
    peak_y, peak_x = np.divmod(where[first], heatmap.shape[1])
    table = pd.DataFrame({"candidate_id": ids, "y": peak_y.astype(float), "x": peak_x.astype(float),
                          "area": areas.astype(np.int64), "score": values[first].astype(np.float32),
                          "mean_score": means, "cell_id": labels.ravel()[where[first]].astype(np.int64),
                          "status": "candidate"})
    table = table[table["area"] >= min_area].reset_index(drop=True)
    table["candidate_id"] = np.arange(1, len(table) + 1)
    return table


def strongest_region_per_cell(candidates: pd.DataFrame) -> pd.DataFrame:
    """The row of each cell's highest-scoring candidate region (in table order): one marker per
    candidate cell, the unit a person reviews, however many regions the heatmap has in it."""
    if len(candidates) == 0:
        return candidates
    cell = ["plane", "cell_id"] if "plane" in candidates.columns else ["cell_id"]
    top = candidates.sort_values("score", ascending=False, kind="stable").drop_duplicates(cell)
    return candidates.loc[np.sort(top.index)]


def empty_candidate_table() -> pd.DataFrame:
    return pd.DataFrame({c: pd.Series(dtype=d) for c, d in CANDIDATE_DTYPES.items()})


def mark_candidate_cells(cells: pd.DataFrame, candidates: pd.DataFrame) -> pd.DataFrame:
    """Set the ``candidate`` column (the cell holds at least one candidate region) and the
    ``status`` column: a person's decision is kept, whatever the threshold; otherwise "candidate"
    for a candidate cell and empty for the others."""
    cells = cells.copy()
    if "plane" in cells.columns and "plane" in candidates.columns:
        hit = set(zip(candidates["plane"], candidates["cell_id"]))
        cells["candidate"] = [(p, c) in hit for p, c in zip(cells["plane"], cells["cell_id"])]
    else:
        cells["candidate"] = cells["cell_id"].isin(candidates["cell_id"])
    decided = cells["status"].isin(DECISIONS) if "status" in cells.columns else np.zeros(len(cells), bool)
    fresh = np.where(cells["candidate"].to_numpy(bool), CANDIDATE_STATUS, "")
    cells["status"] = np.where(decided, cells["status"] if "status" in cells.columns else "", fresh).astype(object)
    return cells
