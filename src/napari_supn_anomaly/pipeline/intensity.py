"""Bring a field's intensities to the range the model was trained on.

A model normalises with fixed, dataset-level intensities (``IntensityStats``: the 1st and 99.8th
percentiles of its training crops). A 12- or 16-bit camera, another exposure or another lamp puts
the same cells at quite different grey levels, and the model would then call every cell abnormal.
Matching measures the same two percentiles on the field, over the pixels a crop around each cell
would hold, and maps them linearly onto the model's. In ``auto`` mode this happens only when the
field is clearly outside the model's range, so fields that already match are scored unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..supn.normalisation import IntensityStats

MODES = ("auto", "match", "off")  # offered by the command line, whose --help loads no scipy
PERCENTILES = (1.0, 99.8)  # as IntensityStats.from_images, which measured the model's range
AUTO_TOLERANCE = 0.25      # auto matches when either end is off by more than this share of the range


@dataclass
class IntensityMatch:
    applied: bool
    gain: list[float]      # per channel: matched = gain * raw + offset
    offset: list[float]
    field_low: list[float]
    field_high: list[float]

    def to_dict(self) -> dict:
        return {"applied": self.applied, "gain": self.gain, "offset": self.offset,
                "field_low": self.field_low, "field_high": self.field_high}


def check_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"unknown intensity matching {mode!r}; choose one of {', '.join(MODES)}")
    return mode


def field_range(plane: np.ndarray, labels: np.ndarray, window_px: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel 1st / 99.8th percentiles over the pixels within ``window_px / 2`` of a cell."""
    from scipy import ndimage as ndi

    near = ndi.maximum_filter(labels > 0, size=max(1, int(window_px))) if window_px > 1 else labels > 0
    if near.sum() < 64:
        near = np.ones(labels.shape, bool)
    values = plane[:, near]
    if values.shape[1] > 500_000:  # a strided sample is plenty for two percentiles
        values = values[:, :: values.shape[1] // 500_000]
    low, high = np.percentile(values, PERCENTILES, axis=1)
    return low.astype(np.float64), high.astype(np.float64)


def plan_match(plane: np.ndarray, labels: np.ndarray, stats: IntensityStats, window_px: int,
               mode: str = "auto") -> IntensityMatch:
    """How to map ``plane`` [C, Y, X] onto the model's intensity range (``labels``: its cells)."""
    check_mode(mode)
    low, high = field_range(plane, labels, window_px)
    ref_low, ref_high = np.asarray(stats.low, np.float64), np.asarray(stats.high, np.float64)
    ref_span = np.maximum(ref_high - ref_low, 1e-6)
    flat = high - low <= 1e-6 * np.maximum(np.abs(high), 1.0)
    gain = np.where(flat, 1.0, ref_span / np.where(flat, 1.0, high - low))
    offset = ref_low - gain * low
    off_by = np.maximum(np.abs(low - ref_low), np.abs(high - ref_high)) / ref_span
    applied = mode == "match" or (mode == "auto" and bool((off_by > AUTO_TOLERANCE).any()))
    if not applied:
        gain, offset = np.ones_like(gain), np.zeros_like(offset)
    return IntensityMatch(applied, gain.tolist(), offset.tolist(), low.tolist(), high.tolist())


def apply_match(plane: np.ndarray, match: IntensityMatch) -> np.ndarray:
    if not match.applied:
        return plane
    gain = np.asarray(match.gain, np.float32)[:, None, None]
    offset = np.asarray(match.offset, np.float32)[:, None, None]
    return plane.astype(np.float32) * gain + offset
