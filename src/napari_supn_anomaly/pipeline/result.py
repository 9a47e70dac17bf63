"""The one result type that leaves the pipeline; the widget turns it into layers, the CLI into files."""
from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from .candidates import (
    candidate_regions,
    candidate_table,
    empty_candidate_table,
    mark_candidate_cells,
)
from .self_calibration import ThresholdChoice, choose_threshold, outlying_fields


@dataclass
class DetectionResult:
    """Detection on one plane or a stack of planes.

    heatmap and cells have the plane axes first, then (Y, X): ``plane_shape`` + (Y, X). Tables
    carry a ``plane`` column (flat plane index) and one column per plane axis (``t``, ``z``) for
    stacks. ``provenance`` says how the result was made (model, scorer, threshold, settings).
    """

    heatmap: np.ndarray
    cells: np.ndarray
    cell_table: pd.DataFrame
    candidate_table: pd.DataFrame
    threshold: float
    provenance: dict = field(default_factory=dict)
    plane_axes: str = ""
    min_area: int = 1

    @property
    def is_stack(self) -> bool:
        return bool(self.plane_axes)

    @property
    def plane_shape(self) -> tuple[int, ...]:
        return self.heatmap.shape[:-2]

    @property
    def n_planes(self) -> int:
        return int(np.prod(self.plane_shape)) if self.plane_shape else 1

    def plane_index(self, flat: int) -> tuple[int, ...]:
        return tuple(int(i) for i in np.unravel_index(flat, self.plane_shape)) if self.plane_shape else ()

    def with_threshold(self, threshold: float, **provenance) -> DetectionResult:
        """The same result cut at another threshold; the model is not needed."""
        planes = []
        for flat in range(self.n_planes):
            idx = self.plane_index(flat)
            table = candidate_table(self.heatmap[idx], self.cells[idx], threshold, self.min_area)
            planes.append(_with_plane_columns(table, flat, idx, self.plane_axes))
        candidates = pd.concat(planes, ignore_index=True) if planes else empty_candidate_table()
        if self.is_stack:
            candidates["candidate_id"] = np.arange(1, len(candidates) + 1)
        cells = mark_candidate_cells(self.cell_table, candidates)
        prov = dict(self.provenance, threshold=float(threshold), **provenance)
        return dataclasses.replace(self, cell_table=cells, candidate_table=candidates,
                                   threshold=float(threshold), provenance=prov)

    def with_choice(self, choice: ThresholdChoice) -> DetectionResult:
        """The result cut at a chosen threshold, which the provenance and summary then report."""
        return self.with_threshold(choice.threshold, target_fpr=choice.fpr, calibration=choice.to_dict())

    @property
    def calibration(self) -> ThresholdChoice | None:
        """How the threshold was chosen (slide, model or by hand); None for results made before it was recorded."""
        entry = self.provenance.get("calibration")
        return ThresholdChoice.from_dict(entry) if isinstance(entry, dict) else None

    def recalibrated(self, fpr: float, calibration: str | None = None,
                     model_threshold: Callable[[float], float] | None = None,
                     model_healthy=None, scale: str | None = None) -> DetectionResult:
        """The result cut at the threshold for another share ``fpr`` of healthy cells, calibrated as
        before (or as ``calibration`` says) on its own cell scores; ``model_threshold``: the model's
        stored calibration, fpr -> threshold; ``model_healthy``: its stored healthy scores; ``scale``: the
        scorer's fitting scale (all three from ``stacks.calibration_inputs(scorer)``). No model is run.
        Raises ValueError when neither calibration can be used."""
        before = self.calibration
        if calibration is None:
            calibration = before.requested if before is not None and before.requested in ("slide", "model") else "model"
        choice = choose_threshold(self.cell_table["score"].to_numpy(), fpr, calibration,
                                  model_threshold=model_threshold, model_healthy=model_healthy, scale=scale)
        return self.with_choice(choice)

    def candidate_mask(self) -> np.ndarray:
        """Label image of candidate regions, per plane (ids restart in every plane)."""
        out = np.zeros(self.cells.shape, np.int32)
        for flat in range(self.n_planes):
            idx = self.plane_index(flat)
            out[idx] = candidate_regions(self.heatmap[idx], self.cells[idx], self.threshold)
        return out

    @property
    def warnings(self) -> list[str]:
        """What a person must know before trusting the result, e.g. a field that does not look like red
        cells, or a plane of a stack with far more candidates at the current threshold than the others."""
        return list(self.provenance.get("warnings") or []) + self._outlying_planes()

    def _outlying_planes(self) -> list[str]:
        if not self.is_stack or "plane" not in self.cell_table.columns or self.cell_table.empty:
            return []
        planes, tables = zip(*self.cell_table.groupby("plane", sort=True))
        return [f.describe(f"plane {int(planes[f.index]) + 1}", "planes") + "."
                for f in outlying_fields(tables, self.threshold)]

    def summary(self) -> str:
        n_cells = len(self.cell_table)
        n_flagged = int(self.cell_table["candidate"].sum()) if n_cells else 0
        where = f" in {self.n_planes} planes" if self.is_stack else ""
        matching = self.provenance.get("intensity_matching") or {}
        applied = [p for p in matching.get("planes", [matching]) if p.get("applied")]
        matched = ""
        if applied:
            matched = ("; colours were matched to the stain of the model's training cells"
                       if any(p.get("kind") == "stain" for p in applied) else "; intensities were mapped onto the model's range")
        warnings = self.warnings
        more = f" (and {len(warnings) - 1} more warning(s))" if len(warnings) > 1 else ""
        choice = self.calibration
        return (f"{n_cells} cells{where}; {n_flagged} with candidates; {len(self.candidate_table)} candidate "
                f"regions at threshold {self.threshold:.3g}"
                + (f" ({choice.describe()})" if choice is not None else "")
                + matched
                + (f"; WARNING: {warnings[0]}{more}" if warnings else ""))


def _with_plane_columns(table: pd.DataFrame, flat: int, idx: tuple[int, ...], plane_axes: str) -> pd.DataFrame:
    if not plane_axes:
        return table
    table = table.copy()
    for pos, axis in enumerate(plane_axes):
        table.insert(pos, axis.lower(), np.full(len(table), idx[pos], np.int64))
    table.insert(0, "plane", np.full(len(table), flat, np.int64))
    return table
