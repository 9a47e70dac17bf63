"""Fixed, dataset-level intensity statistics (never per crop: a bright parasite would rescale it)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class IntensityStats:
    """Per-channel intensities mapped to -1 and +1."""

    low: list[float]
    high: list[float]

    @classmethod
    def from_images(cls, images: np.ndarray, masks: np.ndarray | None = None,
                    percentiles: tuple[float, float] = (1.0, 99.8)) -> IntensityStats:
        """images [N, C, H, W]; percentiles over all pixels (or the masked ones) per channel."""
        lows, highs = [], []
        for c in range(images.shape[1]):
            values = images[:, c][masks] if masks is not None else images[:, c]
            lo, hi = np.percentile(values, percentiles)
            if not np.isfinite(lo) or not np.isfinite(hi) or hi <= lo:
                raise ValueError(f"channel {c} has no intensity range to normalise by")
            lows.append(float(lo))
            highs.append(float(hi))
        return cls(lows, highs)

    def apply(self, images: np.ndarray) -> np.ndarray:
        """[N, C, H, W] raw intensities -> float32 roughly in [-1, 1]."""
        lo = np.asarray(self.low, np.float32)[None, :, None, None]
        hi = np.asarray(self.high, np.float32)[None, :, None, None]
        # in place on one float32 copy, the same operations in the same order as
        # 2 * (x - lo) / (hi - lo) - 1: the same numbers with one pass over memory instead of five
        out = images.astype(np.float32, copy=True)
        out -= lo
        out *= np.float32(2.0)
        out /= hi - lo
        out -= np.float32(1.0)
        return out

    def to_dict(self) -> dict:
        return {"low": self.low, "high": self.high}

    @classmethod
    def from_dict(cls, data: dict) -> IntensityStats:
        return cls([float(v) for v in data["low"]], [float(v) for v in data["high"]])
