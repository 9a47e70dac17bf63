"""SUPN's score joined with the cell's brightest small spot, each on the scale of its healthy cells.

In unstained bright-field (Remoscope) and fluorescence a parasite is a small bright spot inside the
cell: TARGETS.md's one-line detector, a difference of Gaussians, finds it. A model fine-tuned on
a few dozen cells of a new microscope ranks cells of other fields of that microscope unevenly
(docs/benchmarks/finetune.md, Remoscope: AUROC 0.79-0.97 from run to run), while the spot
does not depend on the fine-tune; their sum keeps SUPN's view of the whole cell and the spot's
steadiness.

The spot term is the maximum, over the cell's mask shrunk by ``INSET`` of its radius (the
difference of Gaussians rings along the cell's own outline), of the crop's channel mean blurred
at the smaller of ``SIGMAS`` (in cell diameters) minus it blurred at the larger: TARGETS.md's 1
and 3 px on Remoscope's cells of about 40 px. Both terms are put on the scale of the model's
held-back healthy cells (SUPN on the log scale, the spot as it is: it can be below 0), and the
cell's score is c_supn + SPOT_WEIGHT * c_spot. The pixel map is SUPN's map on that scale plus the
cell's spot term.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

from .ensemble import MemberScale
from .stain_saturation import on_log_scale

SPOT_WEIGHT = 1.0            # the two terms count alike (not tuned: 0.25-4 ranked alike, finetune.md)
SIGMAS = (1 / 40, 3 / 40)    # the difference of Gaussians, in cell diameters
INSET = 0.25                 # the spot is looked for this share of the radius inside the cell's outline


def cell_spots(crops: np.ndarray, masks: np.ndarray, cell_diameter_px: float) -> np.ndarray:
    """[N] each cell's brightest small spot, from raw crops [N, C, S, S] and masks [N, S, S]."""
    small, large = (s * cell_diameter_px for s in SIGMAS)
    crops = np.asarray(crops, np.float64)
    masks = np.asarray(masks, bool)
    out = np.empty(len(crops))
    for i, (crop, mask) in enumerate(zip(crops, masks)):
        gray = crop.mean(0)
        dog = ndi.gaussian_filter(gray, small) - ndi.gaussian_filter(gray, large)
        if not mask.any():
            mask = np.ones_like(mask)
        radius = np.sqrt(mask.sum() / np.pi)
        inner = ndi.binary_erosion(mask, iterations=max(1, int(INSET * radius)))
        out[i] = dog[inner if inner.any() else mask].max()
    return out


def spot_scale(spots: np.ndarray) -> MemberScale:
    """The healthy centre and spread of the spot term."""
    return MemberScale.from_healthy_scores(spots)


def combine(supn_maps: np.ndarray, spots: np.ndarray, supn_scale: MemberScale, spots_scale: MemberScale) -> np.ndarray:
    """Maps [N, S, S]: SUPN's map on its healthy log scale plus each cell's weighted spot term."""
    term = SPOT_WEIGHT * spots_scale.apply(np.asarray(spots, np.float64))
    return (on_log_scale(supn_maps, supn_scale) + term[:, None, None]).astype(np.float32)
