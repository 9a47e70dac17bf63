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

Stained bright-field models also carry the *stain* of their training cells: per channel, the light
around the cells (``background``) and the median colour inside them (``cell``). Another lab's
smear differs in lamp and in stain, which moves the colour of every healthy cell (MalariaNet cells
are tan where Plymouth's are blue-grey) and a linear range match does not undo that. For such a
model a field whose stain does not fit is mapped in optical density instead: per channel its
background goes to the model's, and its absorbance is scaled so its cells' median colour becomes
the model's (Beer-Lambert, ``OD = -log(I / background)``; ``I' = bg_ref * (I / bg) ** k``).
docs/benchmarks/stain.md measures it on slides and labs the model never saw.
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
# A field's stain fits a model's when each channel's absorbance is within this share of the model's
# and its background within BACKGROUND_TOLERANCE. Giemsa's blue absorbance is small (0.15 in optical
# density), so 0.1 (until 2026-12-02) fired on 3 units of blue: on fields of real cells of the model's
# own slide it matched, and flagged 10 of 86 healthy cells at 5% against 6 unmatched. Every field of the
# two other labs here is 0.41 or more off (docs/benchmarks/stain.md), so 0.25 matches all of them still.
STAIN_TOLERANCE = 0.25
BACKGROUND_TOLERANCE = 0.05
MIN_STAIN_PIXELS = 500       # of cell interior and of background, to measure a field's stain at all
MIN_CROP_STAIN_PIXELS = 16   # and one training crop's
STAIN_SAMPLE = 500           # training crops a model's stain is measured on
INTERIOR_MARGIN_PX = 3       # pixels measured as a cell's colour lie this far inside it
BACKGROUND_MARGIN_PX = 5     # and as background, this far from any cell
# Absorbance ratios seen between MalariaNet fields and giemsa-rbc: 0.24-3.4. Far beyond that the
# field is no stained smear like the model's (unstained cells, another modality): only its range is matched.
MAX_STAIN_POWER = 8.0


@dataclass
class Stain:
    """Per channel: the median colour inside cells and the light around them (raw intensities)."""

    cell: list[float]
    background: list[float]

    @classmethod
    def from_lists(cls, cell, background, channels: int) -> Stain | None:
        """A valid stain (cells darker than the background in every channel), else None."""
        try:
            c = np.asarray(cell, np.float64).reshape(-1)
            b = np.asarray(background, np.float64).reshape(-1)
        except (TypeError, ValueError):
            return None
        if len(c) != channels or len(b) != channels or not (np.isfinite(c).all() and np.isfinite(b).all()):
            return None
        if not ((c > 0).all() and (c < b).all()):
            return None
        return cls(c.tolist(), b.tolist())

    @property
    def absorbance(self) -> np.ndarray:
        """Per channel: the cells' optical density over the background."""
        return -np.log(np.asarray(self.cell) / np.asarray(self.background))


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
    stain: Stain | None = None           # stained bright-field: the training cells' stain

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
        if self.stain is not None:
            out["background"] = [float(v) for v in self.stain.background]
            out["cell"] = [float(v) for v in self.stain.cell]
        return out

    @classmethod
    def from_dict(cls, data: dict) -> DataRange:
        median = data.get("median")
        tolerance = float(data.get("tolerance", FIT_TOLERANCE))
        low = [float(v) for v in data["low"]]
        return cls(low, [float(v) for v in data["high"]],
                   None if median is None else [float(v) for v in median],
                   tolerance=tolerance if np.isfinite(tolerance) and tolerance >= 0 else FIT_TOLERANCE,
                   stain=Stain.from_lists(data.get("cell"), data.get("background"), len(low)))

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


def measure_stain(image: np.ndarray, cells: np.ndarray, min_pixels: int = MIN_STAIN_PIXELS) -> Stain | None:
    """The stain of ``image`` [C, Y, X] whose red cells are ``cells`` (a mask or labels) - the one
    measurement of fields and of training crops. None when too few pixels of either kind exist or
    the cells are not darker than their background."""
    from scipy import ndimage as ndi

    cells = np.asarray(cells) > 0
    inside = ndi.binary_erosion(cells, iterations=INTERIOR_MARGIN_PX)
    outside = ~ndi.binary_dilation(cells, iterations=BACKGROUND_MARGIN_PX)
    if inside.sum() < min_pixels or outside.sum() < min_pixels:
        return None
    image = np.asarray(image, np.float32)
    light = image[:, outside]
    # the lighter half of what lies outside the cells: platelets, white cells and stain left in
    # the gaps are darker than the glass
    gray = light.mean(0)
    light = light[:, gray >= np.median(gray)]
    return Stain.from_lists(np.median(image[:, inside], axis=1), np.median(light, axis=1), len(image))


def stain_sample(n: int) -> np.ndarray:
    """Which of ``n`` training crops a model's stain is measured on: a seeded sample, in order."""
    return np.sort(np.random.default_rng(0).permutation(n)[:STAIN_SAMPLE])


def stain_of_crops(images, masks) -> Stain | None:
    """A model's stain from its training crops ([C, h, w] each, with the mask of its cell): the
    per-channel median over crops of each crop's stain."""
    stains = [measure_stain(img, m, MIN_CROP_STAIN_PIXELS) for img, m in zip(images, masks) if m is not None]
    stains = [s for s in stains if s is not None]
    if not stains:
        return None
    return Stain.from_lists(np.median([s.cell for s in stains], 0), np.median([s.background for s in stains], 0),
                            len(stains[0].cell))


@dataclass
class IntensityMatch:
    applied: bool
    gain: list[float]      # per channel: matched = gain * raw + offset (raw ** power, for a stain)
    offset: list[float]
    field_low: list[float]
    field_high: list[float]
    power: list[float] | None = None       # a stain match: matched = gain * max(raw, floor) ** power,
    field_stain: Stain | None = None       # floor a thousandth of the field's glass

    def to_dict(self) -> dict:
        out = {"applied": self.applied, "gain": self.gain, "offset": self.offset,
               "field_low": self.field_low, "field_high": self.field_high}
        if self.power is not None:
            out |= {"kind": "stain", "power": self.power}
        if self.field_stain is not None:
            out |= {"field_cell": self.field_stain.cell, "field_background": self.field_stain.background}
        return out


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


def stain_fits(field: Stain, reference: Stain) -> bool:
    absorbance = field.absorbance / reference.absorbance
    light = np.asarray(field.background) / np.asarray(reference.background)
    return bool((np.abs(absorbance - 1) <= STAIN_TOLERANCE).all() and (np.abs(light - 1) <= BACKGROUND_TOLERANCE).all())


def stain_matchable(field: Stain, reference: Stain) -> bool:
    power = reference.absorbance / field.absorbance
    return bool((power <= MAX_STAIN_POWER).all() and (power >= 1 / MAX_STAIN_POWER).all())


def plan_match(plane: np.ndarray, labels: np.ndarray, reference, window_px: float,
               mode: str = "auto") -> IntensityMatch:
    """How to map ``plane`` [C, Y, X] onto ``reference`` (a model's ``data_range``; ``labels``: its cells).

    ``auto`` maps only a field that does not fit; ``match`` always; ``off`` never. A reference
    with a stain is matched in optical density when the field's stain can be measured, else (and
    for every other model) the field's intensity range is mapped linearly onto the reference's.
    """
    check_mode(mode)
    ref = _reference(reference)
    if ref.stain is not None and mode != "off":
        stain_match = plan_stain_match(plane, labels, ref.stain, window_px, mode)
        if stain_match is not None:
            return stain_match
    low, high = field_range(plane, labels, window_px)
    flat = high - low <= 1e-6 * np.maximum(np.abs(high), 1.0)
    gain = np.where(flat, 1.0, ref.span / np.where(flat, 1.0, high - low))
    offset = np.asarray(ref.low, np.float64) - gain * low
    applied = mode == "match" or (mode == "auto" and not ref.fits(low, high))
    if not applied:
        gain, offset = np.ones_like(gain), np.zeros_like(offset)
    return IntensityMatch(applied, gain.tolist(), offset.tolist(), low.tolist(), high.tolist())


def plan_stain_match(plane: np.ndarray, labels: np.ndarray, reference: Stain, window_px: float,
                     mode: str = "auto") -> IntensityMatch | None:
    """How to map the stain of ``plane`` [C, Y, X] (``labels``: its cells) onto ``reference``; ``auto``
    maps only a field whose stain does not fit. None when the field's stain cannot be measured or is
    no stained smear like the reference (``stain_matchable``)."""
    field = measure_stain(plane, labels)
    if field is None or not stain_matchable(field, reference):
        return None
    low, high = field_range(plane, labels, window_px)
    return _stain_plan(field, reference, low, high, mode == "match" or not stain_fits(field, reference))


def _stain_plan(field: Stain, reference: Stain, low, high, applied: bool) -> IntensityMatch:
    """Per channel ``I' = bg_ref * (I / bg) ** k``, k the ratio of the cells' absorbances: the
    field's background becomes the model's, and its cells' median colour the model's."""
    ones = np.ones(len(low))
    if not applied:
        return IntensityMatch(False, ones.tolist(), (0 * ones).tolist(), list(low), list(high), field_stain=field)
    power = reference.absorbance / field.absorbance
    bg = np.asarray(field.background)
    gain = np.asarray(reference.background) / bg ** power
    return IntensityMatch(True, gain.tolist(), (0 * ones).tolist(), list(low), list(high), power.tolist(), field)


def apply_match(image: np.ndarray, match: IntensityMatch) -> np.ndarray:
    """``image`` [C, Y, X] (a field or one crop) mapped as planned; unchanged when nothing is applied."""
    if not match.applied:
        return image
    gain = np.asarray(match.gain, np.float32)[:, None, None]
    offset = np.asarray(match.offset, np.float32)[:, None, None]
    image = image.astype(np.float32)
    if match.power is not None:
        floor = 1e-3 * np.asarray(match.field_stain.background, np.float32)[:, None, None]
        image = np.power(np.maximum(image, floor), np.asarray(match.power, np.float32)[:, None, None])
    return image * gain + offset
