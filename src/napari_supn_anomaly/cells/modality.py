"""How cells look in each kind of image, decided once: the modality list, which way the contrast
goes, and the transform that makes cells bright in all of them."""
from __future__ import annotations

import numpy as np

MODALITIES = ("fluorescence", "brightfield", "brightfield-stained")
DARK_CELL_MODALITIES = ("brightfield", "brightfield-stained")
# A crop of a cell cut by the field's edge shows the field mirrored beyond the edge (else plain
# background) in these modalities. Unstained bright-field: a Remoscope fine-tune's AUROC 0.860 ->
# 0.907 over 9 runs, healthy half-cells against plain background scoring like parasites. Giemsa
# (3 seeds of giemsa-rbc) was a little worse with it: MalariaNet test slides AUROC 0.886 -> 0.882,
# Chula 7.7 -> 8.3 false per 100; fluorescence about even (docs/benchmarks/finetune.md, 2026-12-01).
MIRRORED_BEYOND_EDGE = ("brightfield",)


def check_modality(modality: str) -> str:
    if modality not in MODALITIES:
        raise ValueError(f"unknown modality {modality!r}; choose one of {', '.join(MODALITIES)}")
    return modality


def dark_cells(modality: str) -> bool:
    return modality in DARK_CELL_MODALITIES


def stained(modality: str) -> bool:
    """Whether a stain colours the cells, so a model of it matches other labs' stains (models.data_range)."""
    return modality == "brightfield-stained"


def cell_contrast(image: np.ndarray, modality: str) -> np.ndarray:
    """[C, H, W] -> [H, W] where cells are bright: fluorescence as is; bright-field inverted."""
    gray = image.astype(np.float32).mean(0)
    if modality == "brightfield-stained" and image.shape[0] >= 3:
        # stained cells on white: darkness plus saturation both mark the cell
        rgb = image[:3].astype(np.float32)
        sat = rgb.max(0) - rgb.min(0)
        return (gray.max() - gray) + sat
    return gray.max() - gray if dark_cells(modality) else gray


def guess_modality(image: np.ndarray) -> str:
    """'fluorescence' when cells are brighter than the background, else bright-field.

    The background covers most of a blood field, so it sets the median: a median in the upper
    half of the range means dark cells on a light background. Colour with real saturation
    means a stained smear.
    """
    image = np.asarray(image, np.float32)
    gray = image.mean(0)
    lo, hi = np.percentile(gray, (0.5, 99.5))
    if np.median(gray) <= (lo + hi) / 2:
        return "fluorescence"
    if image.shape[0] >= 3:
        sat = image[:3].max(0) - image[:3].min(0)
        if np.percentile(sat, 99) > 0.1 * max(hi - lo, 1e-6):
            return "brightfield-stained"
    return "brightfield"
