"""Annotation marks burned into a bright-field image by the microscope's software: arrows, scale
bars and their text, coloured markers (Chula fields: a yellow arrow, a green "20.00 um" bar, an
orange marker, cyan text). They are no part of the smear, so they are never part of a red cell.

What makes them identifiable is physics, not a list of colours. In transmitted light a stain
only absorbs, so relative to the lamp (the field's background) no pixel is brighter in any
channel, and blood stains (eosin, azure, methylene blue, haemoglobin) absorb green most or red
most: their tints run from red through pink and purple to blue. A mark is drawn in a saturated
colour on top of the image, so it is

* saturated (relative to the background's own tint, so a yellowish lamp is not a mark), and
* either of a hue no blood stain has (yellow, green, cyan: ``MARK_HUES``) while not darker than
  the cells (hemozoin and the colour fringes of dark specks are yellow-brown but dark),
* or brighter than the lamp in its brightest channel (an orange or red marker),
* or, drawn in grey or black (Chula: a 2 px "0.00 um" bracket under its label) or in sky blue (a
  "50.00" bracket, a pale blue stain's hue), a straight horizontal or vertical stroke: thin,
  darker than the pixels on both sides of it and straight for ``BAR_LENGTH_PX`` (the ticks that
  cross it included), which no cell's outline is; the strokes of its ticks and label next to it
  are part of it (``scale_bars``).

Fluorescence and single-channel images have no marks of this kind: nothing is found there.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

MARK_SATURATION = 0.4      # (max - min) / max of the background-balanced colour, at least
MARK_HUES = (45.0, 200.0)  # hue band (degrees) of yellow, green and cyan: no blood stain's tint
MARK_BRIGHT = 0.75         # a mark of such a hue: its brightest channel this share of the background at least
LAMP_EXCESS = 1.15         # any hue: brighter than the background by this factor in some channel
MARK_HALO_PX = 3           # JPEG chroma bleed, anti-aliasing and the dark rim of drawn text around a stroke
MIN_MARK_PX = 6            # fewer connected pixels are noise, not a mark
STROKE_SIDE = 2            # a drawn stroke is darker than the pixels this far to either side (so at most 3 px wide)
STROKE_DEPTH = 0.1         # by this share of the background's brightness at least
STROKE_GREY = 0.25         # (max - min) / max of its background-balanced colour at most: grey, not a stain
BAR_LENGTH_PX = 31         # a stroke straight along a row or column for this long is a drawn line
BAR_LABEL_PX = 10          # strokes this close to such a line are its ticks and label
BAR_HUES_TO = 215.0        # such a line may also be sky blue, past MARK_HUES: a pale blue stain's hue, so
                           # only the straight line tells it from the smear (Chula: a "50.00" bar at 202 degrees)


def _background_colour(rgb: np.ndarray) -> np.ndarray:
    """Per-channel median of the brightest tenth of the field: the lamp, in bright-field (a field
    mostly covered by a purple white cell has its median tinted by it)."""
    step = max(1, int(np.sqrt(rgb[0].size / 250_000)))  # a strided sample is plenty for a median
    sample = rgb[:, ::step, ::step].reshape(3, -1)
    g = sample.mean(0)
    bright = g >= np.percentile(g, 90)
    return np.maximum(np.median(sample[:, bright], axis=1), 1e-3)


def _hue(rgb: np.ndarray, top: np.ndarray, spread: np.ndarray) -> np.ndarray:
    r, g, b = rgb
    d = np.maximum(spread, 1e-6)
    hue = np.where(top == r, ((g - b) / d) % 6, np.where(top == g, (b - r) / d + 2, (r - g) / d + 4))
    return 60.0 * hue


def _darker_than_both_sides(grey: np.ndarray, axis: int) -> np.ndarray:
    """Pixels darker by ``STROKE_DEPTH`` than both pixels ``STROKE_SIDE`` away along ``axis``
    (none within ``STROKE_SIDE`` of the field's edge)."""
    k = STROKE_SIDE
    g = np.moveaxis(grey, axis, 0)
    out = np.zeros(g.shape, bool)
    out[k:-k] = np.minimum(g[:-2 * k], g[2 * k:]) - g[k:-k] >= STROKE_DEPTH
    return np.moveaxis(out, 0, axis)


def _straight_runs(mask: np.ndarray, length: int) -> np.ndarray:
    """Pixels of ``mask`` in runs of at least ``length`` along its rows; only rows holding that many
    pixels are looked at (a linear-time opening)."""
    runs = np.zeros_like(mask)
    rows = np.flatnonzero(mask.sum(1) >= length)
    if len(rows):
        part = mask[rows]
        full = ndi.uniform_filter1d(part.astype(np.float32), length, axis=1, mode="constant") > 1.0 - 0.5 / length
        runs[rows] = ndi.maximum_filter1d(full, length, axis=1) & part
    return runs


def scale_bars(balanced: np.ndarray, line_colour: np.ndarray) -> np.ndarray:
    """Pixels [Y, X] of scale bars, their ticks and labels, in a background-balanced RGB plane
    [3, Y, X] (1 = the lamp); ``line_colour``: [Y, X] where the colour may be a drawn line's (grey,
    ``STROKE_GREY``, or sky blue, ``BAR_HUES_TO``)."""
    grey = balanced.mean(0)
    across = [line_colour & _darker_than_both_sides(grey, axis) for axis in (0, 1)]
    # a line's run counts the ticks that cross it (darker than their sides the other way)
    strokes = across[0] | across[1]
    lines = ((_straight_runs(strokes, BAR_LENGTH_PX) & across[0])
             | (_straight_runs(strokes.T, BAR_LENGTH_PX).T & across[1]))
    if not lines.any():
        return lines
    # the label's strokes near the lines, looked for around the lines only (a block can be huge)
    ys, xs = np.nonzero(lines)
    box = (slice(max(0, ys.min() - BAR_LABEL_PX), ys.max() + BAR_LABEL_PX + 1),
           slice(max(0, xs.min() - BAR_LABEL_PX), xs.max() + BAR_LABEL_PX + 1))
    near = ndi.distance_transform_edt(~lines[box]) <= BAR_LABEL_PX
    marks = lines.copy()
    marks[box] |= (across[0][box] | across[1][box]) & near
    return marks


def mark_mask(plane: np.ndarray, modality: str) -> np.ndarray:
    """Pixels [Y, X] of annotation marks in a bright-field RGB plane [C, Y, X] (with a halo of
    ``MARK_HALO_PX``); all False for fluorescence and for fewer than 3 channels."""
    plane = np.asarray(plane)
    shape = plane.shape[-2:]
    if modality == "fluorescence" or plane.ndim != 3 or plane.shape[0] < 3:
        return np.zeros(shape, bool)
    rgb = plane[:3].astype(np.float32)
    balanced = rgb / _background_colour(rgb)[:, None, None]
    # channel by channel: numpy's reductions over the first axis of [3, Y, X] are several times slower
    top = np.maximum(np.maximum(balanced[0], balanced[1]), balanced[2])
    low = np.minimum(np.minimum(balanced[0], balanced[1]), balanced[2])
    spread = top - low
    saturated = spread >= MARK_SATURATION * np.maximum(top, 1e-6)
    bar_colour = spread <= STROKE_GREY * np.maximum(top, 1e-6)
    odd = np.zeros(0, np.intp)
    if saturated.any():
        # the hue only where it matters: saturated pixels are few on a smear
        where = np.flatnonzero(saturated)
        top_s = top.ravel()[where]
        hue = _hue(balanced.reshape(3, -1)[:, where], top_s, spread.ravel()[where])
        bright_from = (top_s >= MARK_BRIGHT) & (hue >= MARK_HUES[0])
        odd = where[(bright_from & (hue <= MARK_HUES[1])) | (top_s >= LAMP_EXCESS)]
        bar_colour.ravel()[where[bright_from & (hue <= BAR_HUES_TO)]] = True
    marks = scale_bars(balanced, bar_colour)
    marks.ravel()[odd] = True
    if not marks.any():
        return marks
    parts, n = ndi.label(marks, np.ones((3, 3), bool))
    size = np.bincount(parts.ravel(), minlength=n + 1)
    keep = size >= MIN_MARK_PX
    keep[0] = False
    marks = keep[parts]
    if MARK_HALO_PX and marks.any():
        marks = ndi.binary_dilation(marks, iterations=MARK_HALO_PX)
    return marks


def fill_marks(plane: np.ndarray, marks: np.ndarray) -> np.ndarray:
    """``plane`` [C, Y, X] with each mark pixel given the value of the nearest pixel outside the
    marks, so a mark crossing a cell reads as the cell around it (what the mark hides is unknown;
    the scoring masks leave these pixels out, as they leave out what lies beyond the field's edge)."""
    if not marks.any() or marks.all():
        return plane
    _, (iy, ix) = ndi.distance_transform_edt(marks, return_indices=True)
    return plane[:, iy, ix]
