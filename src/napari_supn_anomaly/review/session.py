"""A review in progress, without any GUI: the queue of candidate cells, the current one, the
decisions with undo, the live counts, and re-ranking once there are enough decisions.

The queue holds every cell with a status (the candidates), highest score first. Re-ranking
reorders only the undecided cells after the current one, by the re-ranker's score; nothing is
ever removed from the queue.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from . import rerank
from .features import feature_matrix
from .parasitemia import Counts, count
from .statuses import CANDIDATE, DECISIONS, NOT_CANDIDATE, cell_keys, with_status

RERANK_COLUMN = "review_score"   # the re-ranker's second score, P(accepted), for every cell


@dataclass(frozen=True)
class Step:
    row: int
    before: str
    position: int


class ReviewSession:
    def __init__(self, cells: pd.DataFrame, score_column: str = "score", measurements: pd.DataFrame | None = None):
        self.cells = with_status(cells).reset_index(drop=True)
        self.score_column = score_column
        self.measurements = measurements   # per-cell features for the re-ranker, rows aligned with cells
        self._undo: list[Step] = []
        self.position = 0
        self.reranked = False
        scores = pd.to_numeric(self.cells[score_column], errors="coerce").fillna(-np.inf).to_numpy()
        flagged = np.flatnonzero(self.cells["status"].to_numpy(object) != NOT_CANDIDATE)
        self.queue: list[int] = [int(i) for i in flagged[np.argsort(-scores[flagged], kind="stable")]]
        self.position = self._first_undecided(0)
        self.rerank_rest()   # a review restored with enough decisions starts re-ranked

    # -- what is shown ---------------------------------------------------------------------------
    @property
    def status(self) -> np.ndarray:
        return self.cells["status"].to_numpy(object)

    @property
    def current(self) -> int | None:
        """The row (of ``cells``) under review; None for an empty queue."""
        return self.queue[self.position] if self.queue else None

    def current_cell(self) -> pd.Series | None:
        return None if self.current is None else self.cells.iloc[self.current]

    def counts(self) -> Counts:
        return count(self.cells)

    @property
    def reviewed(self) -> int:
        return int(np.isin(self.status[self.queue], DECISIONS).sum()) if self.queue else 0

    @property
    def left(self) -> int:
        return len(self.queue) - self.reviewed

    def progress_text(self) -> str:
        c = self.counts()
        where = f"{self.position + 1} of {len(self.queue)}" if self.queue else "no candidates"
        return (f"candidate {where} · reviewed {self.reviewed} · left {self.left} · accepted {c.accepted} · "
                f"rejected {c.rejected} · unsure {c.unsure}" + (" · re-ranked" if self.reranked else ""))

    # -- moving ----------------------------------------------------------------------------------
    def go_to(self, position: int) -> None:
        if self.queue:
            self.position = int(np.clip(position, 0, len(self.queue) - 1))

    def next(self) -> None:
        self.go_to(self.position + 1)

    def previous(self) -> None:
        self.go_to(self.position - 1)

    def _first_undecided(self, start: int) -> int:
        status = self.status
        for pos in list(range(start, len(self.queue))) + list(range(start)):
            if status[self.queue[pos]] == CANDIDATE:
                return pos
        return min(start, max(len(self.queue) - 1, 0))

    # -- deciding --------------------------------------------------------------------------------
    def decide(self, status: str) -> None:
        """Record ``status`` (accepted, rejected, unsure) for the current cell, then move to the next
        undecided cell; re-rank the rest when the re-ranker is ready."""
        if status not in DECISIONS:
            raise ValueError(f"unknown decision {status!r}; use one of {', '.join(DECISIONS)}")
        row = self.current
        if row is None:
            return
        self._undo.append(Step(row, self.status[row], self.position))
        self.cells.loc[row, "status"] = status
        self.rerank_rest()
        self.position = self._first_undecided(min(self.position + 1, len(self.queue) - 1))

    def undo(self) -> bool:
        """Take back the last decision and show its cell again; False when there is nothing to undo."""
        if not self._undo:
            return False
        step = self._undo.pop()
        self.cells.loc[step.row, "status"] = step.before
        self.position = self.queue.index(step.row)
        return True

    # -- learning --------------------------------------------------------------------------------
    def rerank_rest(self) -> bool:
        """Fit the re-ranker on the decisions so far, give every cell its score (``review_score``)
        and reorder the undecided cells from the current position on. False until it is ready."""
        if self.measurements is None:
            return False
        scores = rerank.rerank_scores(feature_matrix(self.measurements), self.status)
        if scores is None:
            return False
        self.cells[RERANK_COLUMN] = scores
        status = self.status
        tail = [pos for pos in range(self.position, len(self.queue)) if status[self.queue[pos]] == CANDIDATE]
        rows = sorted((self.queue[pos] for pos in tail), key=lambda r: -scores[r])
        for pos, row in zip(tail, rows):
            self.queue[pos] = row
        self.reranked = True
        return True

    # -- keeping decisions across a new cell table (re-thresholding) ----------------------------
    def decisions(self) -> dict[tuple[int, int], str]:
        return {k: s for k, s in zip(cell_keys(self.cells), self.status) if s in DECISIONS}

