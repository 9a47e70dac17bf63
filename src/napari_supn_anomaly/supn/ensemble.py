"""An ensemble of anomaly maps, each first calibrated on healthy cells.

Each member's map is put on a common scale with the distribution of its own healthy per-cell
scores (the max of the map inside a healthy cell): c = (m - median) / robust spread. A map
value of 0 is then "as anomalous as a typical healthy cell's worst pixel" for every member,
and 1 is one healthy spread above it. The ensemble map is the mean of the calibrated maps.
Normalising with healthy statistics (never per test image) keeps scores comparable across cells.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class MemberScale:
    centre: float
    spread: float

    @classmethod
    def from_healthy_scores(cls, scores) -> MemberScale:
        scores = np.asarray(scores, np.float64)
        scores = scores[np.isfinite(scores)]
        if len(scores) < 2:
            raise ValueError("at least two healthy cells are needed to calibrate an ensemble member")
        q25, q50, q75 = np.quantile(scores, [0.25, 0.5, 0.75])
        spread = (q75 - q25) / 1.349
        if not spread > 0:
            spread = float(np.std(scores)) or 1.0
        return cls(float(q50), float(spread))

    def apply(self, maps: np.ndarray) -> np.ndarray:
        return (maps - self.centre) / self.spread

    def to_dict(self) -> dict:
        return {"centre": self.centre, "spread": self.spread}

    @classmethod
    def from_dict(cls, data: dict) -> MemberScale:
        return cls(float(data["centre"]), float(data["spread"]))


def combine_calibrated(maps: list[np.ndarray], scales: list[MemberScale]) -> np.ndarray:
    """Mean of the calibrated member maps, [N, H, W]."""
    if not maps or len(maps) != len(scales):
        raise ValueError("an ensemble needs one healthy calibration per member map")
    return np.mean([s.apply(np.asarray(m, np.float64)) for m, s in zip(maps, scales)], axis=0).astype(np.float32)
