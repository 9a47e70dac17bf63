"""Does a field look like red cells at all? A warning, not a refusal, for a field that does not.

The cell finder refuses pure noise (nothing stands out of its own noise estimate), but cells
drowned in noise, or noise with some texture, still give "cells", and the model then reports
candidates that mean nothing. Cell counts, sizes and shapes cannot tell
such a field from a real one: on real fields whose segmentation struggles (ghost cells on a
stained smear, a faint field) they overlap with noise (docs/benchmarks/bad_input.md). What every
microscope image has and noise has not is structure larger than a pixel: the optics blur each
point over a few pixels, so neighbouring pixels are strongly alike. The rule is the correlation
of each pixel with its right and lower neighbours (the smaller of the two), over the mean of
the channels of the field (its central 2048 x 2048 pixels at most):

* every real field in ../shared/data measured 0.91 or more (lowest: Chula 0.91, MalariaNet 0.99,
  Remoscope 0.99), every single-cell crop 0.60 or more (fluorescence 0.60, Giemsa 0.82);
  independent noise (uniform, Gaussian, salt and pepper, JPEG-compressed) measures 0.00 +- 0.01;
* a field below NOISE_CORRELATION = 0.3 is flagged. Noise blurred over a pixel or more (0.78) is
  structure, and is not.
"""
from __future__ import annotations

import numpy as np

NOISE_CORRELATION = 0.3
WINDOW_PX = 2048  # the statistic settles long before this; huge planes are not read twice over


def neighbour_correlation(plane: np.ndarray) -> float:
    """The smaller of the horizontal and vertical lag-1 correlations of a plane [C, Y, X] or [Y, X]
    (1.0 for a plane too small or too flat to measure)."""
    gray = np.asarray(plane, np.float32)
    if gray.ndim == 3:
        gray = gray.mean(0)
    h, w = gray.shape
    y0, x0 = max(0, (h - WINDOW_PX) // 2), max(0, (w - WINDOW_PX) // 2)
    g = gray[y0:y0 + WINDOW_PX, x0:x0 + WINDOW_PX].astype(np.float64)
    if min(g.shape) < 3:
        return 1.0
    g -= g.mean()
    variance = float((g * g).mean())
    if variance <= 0:
        return 1.0
    across = float((g[:, :-1] * g[:, 1:]).mean()) / variance
    down = float((g[:-1] * g[1:]).mean()) / variance
    return min(across, down)


def field_warning(plane: np.ndarray) -> str | None:
    """A sentence for the person when the field [C, Y, X] does not look like red cells; else None."""
    r = neighbour_correlation(plane)
    if r >= NOISE_CORRELATION:
        return None
    shown = f"{r:.2f}".replace("-0.00", "0.00")
    return (f"this field does not look like red cells: neighbouring pixels are unrelated (correlation {shown}; "
            "microscope fields measure 0.9 or more), as in pure noise, so its cells and candidates mean nothing")
