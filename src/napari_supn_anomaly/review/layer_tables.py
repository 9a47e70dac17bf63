"""A review's tables when all there is are napari's arrays: a cell table from the labels and the
heatmap, with the candidate cells and statuses the candidates layer carries."""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..pipeline.candidates import cell_table
from .statuses import CANDIDATE, cell_keys, clean_status


def cells_from_arrays(heatmap: np.ndarray, labels: np.ndarray, candidates: pd.DataFrame) -> pd.DataFrame:
    """One row per cell of every plane (``plane`` column when there are planes), candidate and
    status from ``candidates`` (the candidates layer's features: cell_id, plane, status)."""
    heat = heatmap.reshape(-1, *heatmap.shape[-2:])
    lab = labels.reshape(-1, *labels.shape[-2:])
    tables = []
    for plane in range(lab.shape[0]):
        table = cell_table(heat[plane], lab[plane])
        if labels.ndim > 2:
            table.insert(0, "plane", np.full(len(table), plane, np.int64))
        tables.append(table)
    cells = pd.concat(tables, ignore_index=True)
    if labels.ndim == 2 and "plane" in candidates.columns:
        candidates = candidates.drop(columns=["plane"])
    status = clean_status(candidates["status"]) if "status" in candidates.columns else np.full(len(candidates), CANDIDATE)
    by_cell = {}
    for key, s in zip(cell_keys(candidates), status):
        if by_cell.get(key, CANDIDATE) == CANDIDATE:
            by_cell[key] = s or CANDIDATE
    keys = cell_keys(cells)
    cells["candidate"] = [k in by_cell for k in keys]
    cells["status"] = np.array([by_cell.get(k, "") for k in keys], object)
    return cells
