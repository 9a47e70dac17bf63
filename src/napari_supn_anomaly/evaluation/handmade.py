"""The one-line, hand-made detectors of TARGETS.md, run on the same cells as the models.

They work on the original crops (before the model's rescaling), as TARGETS.md defines them.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from ..supn.stain_saturation import saturation_map


def bright_spot_map(image: np.ndarray, small: float = 1.0, large: float = 4.0) -> np.ndarray:
    """gaussian(x, small) - gaussian(x, large) of a [Y, X] image: bright spots stand out."""
    g = np.asarray(image, np.float64)
    return ndi.gaussian_filter(g, small) - ndi.gaussian_filter(g, large)


def bright_spots(images: list[np.ndarray], masks: list[np.ndarray], small: float = 1.0, large: float = 4.0) -> np.ndarray:
    """Max inside the cell mask of gaussian(x, small) - gaussian(x, large) (fluorescence parasites)."""
    out = []
    for img, mask in zip(images, masks):
        g = np.asarray(img, np.float64).mean(0)
        dog = bright_spot_map(g, small, large)
        m = np.asarray(mask, bool) if mask is not None and np.any(mask) else np.ones(g.shape, bool)
        out.append(dog[m].max())
    return np.asarray(out)


def inner_half(shape) -> np.ndarray:
    h, w = shape
    m = np.zeros(shape, bool)
    m[h // 4:h - h // 4, w // 4:w - w // 4] = True
    return m


def bright_spots_in_box(images: list[np.ndarray], small: float = 1.0, large: float = 3.0) -> np.ndarray:
    """Max of gaussian(x, 1) - gaussian(x, 3) in the inner half of each box crop (Remoscope)."""
    out = []
    for img in images:
        g = np.asarray(img, np.float64).mean(0)
        dog = ndi.gaussian_filter(g, small) - ndi.gaussian_filter(g, large)
        out.append(dog[inner_half(g.shape)].max())
    return np.asarray(out)


def stain_saturation(images: list[np.ndarray], percentile: float = 99.5) -> np.ndarray:
    """99.5th percentile of HSV saturation in the central 2/3 of an RGB crop (Giemsa stain)."""
    out = []
    for img in images:
        sat = saturation_map(np.asarray(img, np.float64))
        h, w = sat.shape
        centre = sat[h // 6:h - h // 6, w // 6:w - w // 6]
        out.append(np.percentile(centre, percentile))
    return np.asarray(out)
