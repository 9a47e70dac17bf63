"""The intensity (and colour) range of the cells a model was trained on, and whether a field fits it.

A model normalises with fixed intensities (``IntensityStats``). Which raw intensities that means
is the *data range*: per channel, the 1st and 99.8th percentiles of the pixels around the
training cells (a crop's width around each cell), stored in a model's metadata as
``data_range`` when it is trained or fine-tuned. Detection measures the same two percentiles, with
the same function, over the pixels around a field's cells; a field whose percentiles lie close
to the model's data range came from the same kind of microscope and is never remapped.

Model files written before ``data_range`` existed fall back to their normalisation range (with
``low``/``high`` put in order: fine-tuning with inverted contrast stores them swapped).

Matching (``plan_match``, ``apply_match``) maps a field that does not fit linearly onto the
range; detection (``pipeline``) and the fine-tuning check (``training.guard``) both call these.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PERCENTILES = (1.0, 99.8)  # as IntensityStats.from_images, which measures a model's normalisation
MAX_SAMPLES = 500_000      # a strided sample is plenty for two percentiles
FIT_TOLERANCE = 0.25       # a field fits when both ends lie within this share of the model's range
# A range measured on whole fields (fine-tuning) is the fields' own kind of range, so a field that is
# off by more than this is mapped, in training and in detection alike: the field-to-field spread of
# one microscope's stain and lamp is normalised away (on MalariaNet it cost 0.13 AUROC to keep it).
FIELD_TOLERANCE = 0.05
MODES = ("auto", "match", "off")


def measure_range(values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-channel (1st, 99.8th percentile, median) of pixel values [C, N]: the one measurement
    both training and detection use."""
    values = np.asarray(values).reshape(len(values), -1)
    if values.shape[1] > MAX_SAMPLES:
        values = values[:, :: values.shape[1] // MAX_SAMPLES]
    low, high, median = np.percentile(values, (*PERCENTILES, 50.0), axis=1)
    return low.astype(np.float64), high.astype(np.float64), median.astype(np.float64)


@dataclass
class DataRange:
    """Per-channel raw intensities of the data a model was trained on (``low`` < ``high``)."""

    low: list[float]
    high: list[float]
    median: list[float] | None = None     # of the same pixels: the colour of cells plus background
    source: str = "training cells"       # or "normalisation" (older model files)
    tolerance: float = FIT_TOLERANCE     # how far a field may lie from the range and still fit

    @property
    def span(self) -> np.ndarray:
        return np.maximum(np.asarray(self.high, np.float64) - np.asarray(self.low, np.float64), 1e-6)

    def off_by(self, low, high) -> np.ndarray:
        """Per channel: how far a field's (low, high) lie from this range, as a share of its span."""
        low, high = np.asarray(low, np.float64), np.asarray(high, np.float64)
        return np.maximum(np.abs(low - np.asarray(self.low)), np.abs(high - np.asarray(self.high))) / self.span

    def fits(self, low, high, tolerance: float | None = None) -> bool:
        return bool((self.off_by(low, high) <= (self.tolerance if tolerance is None else tolerance)).all())

    def to_dict(self) -> dict:
        out = {"low": [float(v) for v in self.low], "high": [float(v) for v in self.high],
               "percentiles": list(PERCENTILES), "tolerance": float(self.tolerance)}
        if self.median is not None:
            out["median"] = [float(v) for v in self.median]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> DataRange:
        median = data.get("median")
        tolerance = float(data.get("tolerance", FIT_TOLERANCE))
        return cls([float(v) for v in data["low"]], [float(v) for v in data["high"]],
                   None if median is None else [float(v) for v in median],
                   tolerance=tolerance if np.isfinite(tolerance) and tolerance >= 0 else FIT_TOLERANCE)

    @classmethod
    def of_crops(cls, crops: np.ndarray) -> DataRange:
        """The range of standardised training crops [N, C, S, S]: each is a model crop's width
        around one cell, the same pixels detection measures around a field's cells."""
        crops = np.asarray(crops)
        low, high, median = measure_range(np.moveaxis(crops, 1, 0).reshape(crops.shape[1], -1))
        return cls(low.tolist(), high.tolist(), median.tolist())

    @classmethod
    def of_normalisation(cls, stats) -> DataRange:
        """Fallback for models without a stored range: their normalisation's two intensities in order."""
        low = np.minimum(stats.low, stats.high)
        high = np.maximum(stats.low, stats.high)
        return cls(low.tolist(), high.tolist(), None, "normalisation")


def model_data_range(metadata: dict, stats) -> DataRange:
    """The data range stored in a model's metadata, or its normalisation range (older files)."""
    stored = metadata.get("data_range")
    if isinstance(stored, dict) and "low" in stored and "high" in stored:
        try:
            found = DataRange.from_dict(stored)
        except (TypeError, ValueError):
            found = None
        if found is not None and len(found.low) == len(stats.low) == len(found.high) \
                and all(np.isfinite(found.low)) and all(np.isfinite(found.high)) \
                and all(h > lo for lo, h in zip(found.low, found.high)):
            return found
    return DataRange.of_normalisation(stats)


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


def field_range(plane: np.ndarray, labels: np.ndarray, window_px: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel 1st / 99.8th percentiles over the pixels of ``plane`` [C, Y, X] within
    ``window_px / 2`` of a cell (``labels`` > 0)."""
    from scipy import ndimage as ndi

    near = ndi.maximum_filter(labels > 0, size=max(1, int(window_px))) if window_px > 1 else labels > 0
    if near.sum() < 64:
        near = np.ones(labels.shape, bool)
    low, high, _ = measure_range(plane[:, near])
    return low, high


def _reference(reference) -> DataRange:
    """A DataRange, or an IntensityStats-like object (``low``, ``high``) read as one."""
    if isinstance(reference, DataRange):
        return reference
    if hasattr(reference, "low") and hasattr(reference, "high"):
        return DataRange.of_normalisation(reference)
    raise TypeError(f"expected a DataRange or IntensityStats, got {type(reference).__name__}")


def plan_match(plane: np.ndarray, labels: np.ndarray, reference, window_px: float,
               mode: str = "auto") -> IntensityMatch:
    """How to map ``plane`` [C, Y, X] onto ``reference`` (a model's ``data_range``; ``labels``: its cells).

    ``auto`` maps only a field that does not fit the range; ``match`` always; ``off`` never.
    """
    check_mode(mode)
    ref = _reference(reference)
    low, high = field_range(plane, labels, window_px)
    flat = high - low <= 1e-6 * np.maximum(np.abs(high), 1.0)
    gain = np.where(flat, 1.0, ref.span / np.where(flat, 1.0, high - low))
    offset = np.asarray(ref.low, np.float64) - gain * low
    applied = mode == "match" or (mode == "auto" and not ref.fits(low, high))
    if not applied:
        gain, offset = np.ones_like(gain), np.zeros_like(offset)
    return IntensityMatch(applied, gain.tolist(), offset.tolist(), low.tolist(), high.tolist())


def apply_match(image: np.ndarray, match: IntensityMatch) -> np.ndarray:
    """``image`` [C, Y, X] (a field or one crop) mapped as planned; unchanged when nothing is applied."""
    if not match.applied:
        return image
    gain = np.asarray(match.gain, np.float32)[:, None, None]
    offset = np.asarray(match.offset, np.float32)[:, None, None]
    return image.astype(np.float32) * gain + offset
