"""The scorers that add one term per cell to supn's map, decided once: which term, how it is
measured on a cell, put on the scale of healthy cells, and added to the map.

A term's settings (the saturation's weight and percentile) are recorded with each calibration
(``SETTINGS_KEY``): the values a model was calibrated with stay the values it scores with, whatever
a later version takes for new calibrations. A calibration made before settings were recorded
scores with ``CellTerm.before_recorded``.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, replace

import numpy as np

from ..supn import bright_spots, stain_saturation
from ..supn.ensemble import MemberScale
from .registry import SUPN_SATURATION, SUPN_SPOTS

SETTINGS_KEY = "term_settings"  # in a calibration entry: the settings it was made with


@dataclass(frozen=True)
class CellTerm:
    member: str   # its key in the scorer's calibration, beside "supn"
    units: str    # what a value of the scorer's maps is, in words
    # (crops, masks, cell diameter px, settings) -> [N]
    measure: Callable[[np.ndarray, np.ndarray, float, dict], np.ndarray]
    scale: Callable[[np.ndarray], MemberScale]  # healthy cells' values -> their scale
    # (supn maps, values, supn scale, term scale, settings) -> maps
    combine: Callable[[np.ndarray, np.ndarray, MemberScale, MemberScale, dict], np.ndarray]
    # (field plane [C, Y, X] as recorded, labels [Y, X], ids, hidden pixels or None, settings) -> [N], NaN where
    # it cannot be measured: the term measured on a whole field at its own resolution instead of on the crops
    measure_field: Callable[[np.ndarray, np.ndarray, np.ndarray, np.ndarray | None, dict], np.ndarray] | None = None
    defaults: dict = field(default_factory=dict)         # what a new calibration takes and records
    before_recorded: dict = field(default_factory=dict)  # what calibrations without recorded settings used
    settings: dict | None = None                         # this term's; None: ``defaults``

    def with_settings(self, settings: dict) -> "CellTerm":
        return replace(self, settings=dict(settings))

    def current(self) -> dict:
        return dict(self.defaults if self.settings is None else self.settings)

    def values(self, crops: np.ndarray, masks: np.ndarray, cell_diameter_px: float,
               on_field: np.ndarray | None = None) -> np.ndarray:
        """[N] the term of each crop: its value measured on the field (``on_field``) where given and
        finite, else measured on the crop."""
        out = np.full(len(crops), np.nan) if on_field is None else np.array(on_field, np.float64)
        on_crop = ~np.isfinite(out)
        if on_crop.all():
            out[:] = self.measure(crops, masks, cell_diameter_px, self.current())
        elif on_crop.any():
            out[on_crop] = self.measure(np.asarray(crops)[on_crop], np.asarray(masks)[on_crop], cell_diameter_px,
                                        self.current())
        return out

    def field_values(self, plane: np.ndarray, labels: np.ndarray, ids: np.ndarray,
                     hidden: np.ndarray | None = None) -> np.ndarray | None:
        """[N] the term of each cell ``ids`` measured on its field (None: this term is measured on crops only)."""
        if self.measure_field is None:
            return None
        return self.measure_field(plane, labels, ids, hidden, self.current())

    def add(self, supn_maps: np.ndarray, values: np.ndarray, supn_scale: MemberScale,
            term_scale: MemberScale) -> np.ndarray:
        """supn's maps plus each cell's term, on the scales of healthy cells."""
        return self.combine(supn_maps, values, supn_scale, term_scale, self.current())


def term_for(name: str, calibration_entry: dict | None) -> CellTerm | None:
    """The cell term of scorer ``name`` with the settings of its calibration entry (a new
    calibration's defaults when there is none yet); None when the scorer adds no term."""
    term = CELL_TERMS.get(name)
    if term is None or calibration_entry is None:
        return term
    return term.with_settings(calibration_entry.get(SETTINGS_KEY, term.before_recorded))


CELL_TERMS = {
    SUPN_SATURATION: CellTerm(
        "saturation",
        "supn's map plus the cell's stain saturation, each in healthy spreads above a typical healthy cell (log scale)",
        lambda crops, masks, _diameter, s: stain_saturation.cell_saturation(crops, masks, s["percentile"]),
        stain_saturation.log_scale,
        lambda maps, values, supn, term, s: stain_saturation.combine(maps, values, supn, term, s["weight"]),
        lambda plane, labels, ids, hidden, s: stain_saturation.field_cell_saturation(plane, labels, ids, hidden,
                                                                                     s["percentile"]),
        defaults={"weight": stain_saturation.SATURATION_WEIGHT, "percentile": stain_saturation.SATURATION_PERCENTILE},
        before_recorded={"weight": 0.25, "percentile": 99.5}),
    SUPN_SPOTS: CellTerm(
        "spots",
        "supn's map (log scale) plus the cell's brightest small spot, each in healthy spreads above a typical "
        "healthy cell",
        lambda crops, masks, diameter, _s: bright_spots.cell_spots(crops, masks, diameter), bright_spots.spot_scale,
        lambda maps, values, supn, term, _s: bright_spots.combine(maps, values, supn, term)),
}
