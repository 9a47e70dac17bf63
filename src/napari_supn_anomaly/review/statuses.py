"""A cell's review status and how tables carry it.

Every cell-table row has a ``status``: empty for a cell that is not a candidate, else one of
``candidate`` (not yet reviewed), ``accepted`` (a parasite), ``rejected`` (not one) or ``unsure``.
A cell is keyed by ``cell_id``, and by ``(plane, cell_id)`` in a stack, where ids restart per plane.
"""
from __future__ import annotations

import numpy as np
import pandas as pd

from ..errors import InputError
from ..pipeline.candidates import CANDIDATE_STATUS as CANDIDATE
from ..pipeline.candidates import DECISIONS

ACCEPTED, REJECTED, UNSURE = DECISIONS
NOT_CANDIDATE = ""
STATUSES = (CANDIDATE, *DECISIONS)


def cell_keys(table: pd.DataFrame) -> list[tuple[int, int]]:
    """(plane, cell_id) of every row; plane 0 for a single field."""
    planes = table["plane"] if "plane" in table.columns else np.zeros(len(table), np.int64)
    return [(int(p), int(c)) for p, c in zip(planes, table["cell_id"])]


def clean_status(values) -> np.ndarray:
    """Statuses as lower-case strings, a missing value (NaN) as empty."""
    series = pd.Series(values, dtype=object)
    return series.where(series.notna(), "").astype(str).str.strip().str.lower().to_numpy(object)


def with_status(cells: pd.DataFrame) -> pd.DataFrame:
    """The table with a ``status`` column: kept where it exists, else ``candidate`` for candidate
    cells and empty for the others (a table written before reviews existed)."""
    cells = cells.copy()
    if "status" in cells.columns:
        cells["status"] = clean_status(cells["status"])
    else:
        flagged = cells["candidate"].astype(bool) if "candidate" in cells.columns else np.zeros(len(cells), bool)
        cells["status"] = np.where(flagged, CANDIDATE, NOT_CANDIDATE).astype(object)
    return cells


def check_statuses(table: pd.DataFrame, name: str) -> None:
    """InputError naming the first row (as a spreadsheet numbers it: header = row 1) whose status is
    not one of the known ones, or that is a candidate without a status."""
    status = clean_status(table["status"])
    known = set(STATUSES) | {NOT_CANDIDATE}
    flagged = table["candidate"].astype(bool).to_numpy() if "candidate" in table.columns else None
    for i, value in enumerate(status):
        if value not in known:
            raise InputError(f"{name} row {i + 2}: unknown status {value!r}; use candidate, accepted, rejected, "
                             "unsure, or leave it empty for a cell that is not a candidate")
        if flagged is not None and flagged[i] and value == NOT_CANDIDATE:
            raise InputError(f"{name} row {i + 2}: the cell is a candidate but its status is empty; use candidate, "
                             "accepted, rejected or unsure")


def statuses_for_candidates(cells: pd.DataFrame, candidates: pd.DataFrame) -> np.ndarray:
    """The status of each candidate region: its cell's."""
    lookup = dict(zip(cell_keys(cells), cells["status"]))
    return np.array([lookup.get(key, CANDIDATE) or CANDIDATE for key in cell_keys(candidates)], object)


def decisions_from_candidates(cells: pd.DataFrame, candidates: pd.DataFrame) -> pd.DataFrame:
    """Cells take a decision recorded on their candidate regions (a Points layer edited by hand
    before the cell table had statuses); regions of one cell that disagree leave it a candidate."""
    if "status" not in candidates.columns or len(candidates) == 0:
        return cells
    cells = cells.copy()
    by_cell: dict[tuple[int, int], set] = {}
    for key, status in zip(cell_keys(candidates), clean_status(candidates["status"])):
        by_cell.setdefault(key, set()).add(status)
    keys = cell_keys(cells)
    status = cells["status"].to_numpy(object).copy()
    for i, key in enumerate(keys):
        seen = by_cell.get(key, set())
        if status[i] == CANDIDATE and len(seen) == 1 and next(iter(seen)) in DECISIONS:
            status[i] = next(iter(seen))
    cells["status"] = status
    return cells


def carry_decisions(old: pd.DataFrame, new: pd.DataFrame) -> pd.DataFrame:
    """``new`` (e.g. the same result cut at another threshold) with the decisions recorded in ``old``,
    matched by cell; every other status as ``new`` has it."""
    if "status" not in old.columns:
        return new
    decided = {k: s for k, s in zip(cell_keys(old), clean_status(old["status"])) if s in DECISIONS}
    new = with_status(new)
    if decided:
        status = new["status"].to_numpy(object).copy()
        for i, key in enumerate(cell_keys(new)):
            status[i] = decided.get(key, status[i])
        new["status"] = status
    return new
