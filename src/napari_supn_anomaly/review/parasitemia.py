"""Parasitemia from reviewed cell tables: counts, the estimate and its 95% interval.

What is counted (one rule, in one place):

* Only red cells: rows whose ``kind`` is ``red_cell`` when the table has a ``kind`` column (platelets,
  white cells and debris are neither counted nor, when flagged, counted as infected); a table
  without it (written before cells had kinds) counts every cell as a red cell.
* Cells cut by the image edge are counted like any other cell in the table (``edge`` true): they
  are red cells, scored and flagged like the others, and whether a cell touches the edge has
  nothing to do with its infection. (Fields of one slide do not overlap, so no cell is counted
  twice.) When detection was told to leave them out, they are in neither count.
* parasitemia = accepted / red cells. ``unsure`` and unreviewed candidates are not counted as
  infected in the estimate; the interval covers every way they could turn out.

The interval: a 95% Clopper-Pearson (exact binomial) interval for the infected share of red cells,
widened for the undecided candidates. Its lower end is the lower bound with none of them infected
(k = accepted), its upper end the upper bound with all of them infected (k = accepted + undecided).
With every candidate decided it is the plain Clopper-Pearson interval. Like the estimate, it covers
the infections the detector flagged: an infected cell never flagged is not in it.
"""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import pandas as pd

from .statuses import ACCEPTED, NOT_CANDIDATE, REJECTED, UNSURE

CONFIDENCE = 0.95
RED_CELL = "red_cell"
SUMMARY_COLUMNS = ["image", "cells", "candidate_cells", "accepted", "rejected", "unreviewed", "parasitemia",
                   "parasitemia_low", "parasitemia_high"]
POOLED = "ALL"


def clopper_pearson(k: int, n: int, confidence: float = CONFIDENCE) -> tuple[float, float]:
    """Exact binomial interval for k successes in n trials; (nan, nan) when n is 0."""
    from scipy.stats import beta

    if n <= 0:
        return math.nan, math.nan
    alpha = 1.0 - confidence
    low = 0.0 if k <= 0 else float(beta.ppf(alpha / 2, k, n - k + 1))
    high = 1.0 if k >= n else float(beta.ppf(1 - alpha / 2, k + 1, n - k))
    return low, high


def red_cells(cells: pd.DataFrame) -> pd.DataFrame:
    """The rows counted: red cells only (all rows of a table without a ``kind`` column)."""
    if "kind" not in cells.columns:
        return cells
    kind = cells["kind"].to_numpy(object)
    red = kind == RED_CELL
    if not red.all():  # a hand-edited table may say "Red_cell "
        red = np.array([str(k).strip().lower() == RED_CELL for k in kind])
    return cells[red] if not red.all() else cells


@dataclass(frozen=True)
class Counts:
    cells: int = 0
    candidate_cells: int = 0
    accepted: int = 0
    rejected: int = 0
    unsure: int = 0

    @property
    def unreviewed(self) -> int:
        """Candidates without a yes or no: never looked at, or marked unsure."""
        return self.candidate_cells - self.accepted - self.rejected

    @property
    def reviewed(self) -> int:
        return self.accepted + self.rejected + self.unsure

    @property
    def parasitemia(self) -> float:
        return self.accepted / self.cells if self.cells else math.nan

    @property
    def interval(self) -> tuple[float, float]:
        low, _ = clopper_pearson(self.accepted, self.cells)
        _, high = clopper_pearson(self.accepted + self.unreviewed, self.cells)
        return low, high

    def __add__(self, other: Counts) -> Counts:
        return Counts(*(a + b for a, b in zip(dataclasses.astuple(self), dataclasses.astuple(other))))

    def row(self, image: str, rbc_per_ul: float | None = None) -> dict:
        low, high = self.interval
        row = {"image": image, "cells": self.cells, "candidate_cells": self.candidate_cells,
               "accepted": self.accepted, "rejected": self.rejected, "unreviewed": self.unreviewed,
               "parasitemia": self.parasitemia, "parasitemia_low": low, "parasitemia_high": high,
               "unsure": self.unsure}
        if rbc_per_ul:
            row.update(parasites_per_ul=self.parasitemia * rbc_per_ul, parasites_per_ul_low=low * rbc_per_ul,
                       parasites_per_ul_high=high * rbc_per_ul)
        return row

    def describe(self) -> str:
        """One line for people, e.g. in the review widget."""
        if not self.cells:
            return "no red cells counted"
        low, high = self.interval
        return (f"parasitemia {100 * self.parasitemia:.2f}% (95% interval {100 * low:.2f}-{100 * high:.2f}%): "
                f"{self.accepted} accepted of {self.cells} red cells; {self.unreviewed} candidates undecided")


def count(cells: pd.DataFrame) -> Counts:
    """The counts of one table (a field, a stack, or any rows of them) with a clean ``status``
    column (as ``statuses.with_status`` leaves it)."""
    counted = red_cells(cells)
    status = counted["status"].to_numpy(object)
    return Counts(cells=len(counted), candidate_cells=int(np.sum(status != NOT_CANDIDATE)),
                  accepted=int(np.sum(status == ACCEPTED)), rejected=int(np.sum(status == REJECTED)),
                  unsure=int(np.sum(status == UNSURE)))


def count_per_plane(cells: pd.DataFrame) -> dict[int, Counts]:
    """Counts of each field (plane) of a stack; one entry, plane 0, for a single field."""
    if "plane" not in cells.columns:
        return {0: count(cells)}
    return {int(p): count(group) for p, group in cells.groupby("plane", sort=True)}


def summary_table(counts: dict[str, Counts], rbc_per_ul: float | None = None) -> pd.DataFrame:
    """One row per image and a pooled row ``ALL`` (the counts added up, then the interval)."""
    rows = [c.row(name, rbc_per_ul) for name, c in counts.items()]
    pooled = sum(counts.values(), Counts())
    rows.append(pooled.row(POOLED, rbc_per_ul))
    table = pd.DataFrame(rows)
    extra = [c for c in table.columns if c not in SUMMARY_COLUMNS]
    return table[SUMMARY_COLUMNS + extra]

