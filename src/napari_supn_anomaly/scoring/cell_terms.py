"""The scorers that add one term per cell to supn's map, decided once: which term, how it is
measured on a cell, put on the scale of healthy cells, and added to the map."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ..supn import bright_spots, stain_saturation
from ..supn.ensemble import MemberScale
from .registry import SUPN_SATURATION, SUPN_SPOTS


@dataclass(frozen=True)
class CellTerm:
    member: str   # its key in the scorer's calibration, beside "supn"
    units: str    # what a value of the scorer's maps is, in words
    measure: Callable[[np.ndarray, np.ndarray, float], np.ndarray]  # (crops, masks, cell diameter px) -> [N]
    scale: Callable[[np.ndarray], MemberScale]                        # healthy cells' values -> their scale
    combine: Callable[[np.ndarray, np.ndarray, MemberScale, MemberScale], np.ndarray]
    # (field plane [C, Y, X] as recorded, labels [Y, X], ids, hidden pixels or None) -> [N], NaN where it cannot
    # be measured: the term measured on a whole field at its own resolution instead of on the crops
    measure_field: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None], np.ndarray] | None = None

    def values(self, crops: np.ndarray, masks: np.ndarray, cell_diameter_px: float,
               on_field: np.ndarray | None = None) -> np.ndarray:
        """[N] the term of each crop: its value measured on the field (``on_field``) where given and
        finite, else measured on the crop."""
        out = np.full(len(crops), np.nan) if on_field is None else np.array(on_field, np.float64)
        on_crop = ~np.isfinite(out)
        if on_crop.all():
            out[:] = self.measure(crops, masks, cell_diameter_px)
        elif on_crop.any():
            out[on_crop] = self.measure(np.asarray(crops)[on_crop], np.asarray(masks)[on_crop], cell_diameter_px)
        return out


CELL_TERMS = {
    SUPN_SATURATION: CellTerm(
        "saturation",
        "supn's map plus the cell's stain saturation, each in healthy spreads above a typical healthy cell (log scale)",
        lambda crops, masks, _diameter: stain_saturation.cell_saturation(crops, masks),
        stain_saturation.log_scale, stain_saturation.combine, stain_saturation.field_cell_saturation),
    SUPN_SPOTS: CellTerm(
        "spots",
        "supn's map (log scale) plus the cell's brightest small spot, each in healthy spreads above a typical "
        "healthy cell",
        bright_spots.cell_spots, bright_spots.spot_scale, bright_spots.combine),
}
