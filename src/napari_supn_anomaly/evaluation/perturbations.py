"""Pixel truth from synthetic perturbations of real healthy cells.

* Ellipses as in the MIDL 2022 paper's perturbation figure: an ellipse with axes 10 and 4 px at
  128 x 128 (scaled to the crop), either filled with Gaussian noise of standard deviation 0.5
  ("noise") or with its distance transform rescaled to [0, 1] ("smooth"), multiplied by a
  strength in [0, 1] and added to the cell. Amplitudes are in the model's normalised units
  (the healthy intensity range maps to [-1, 1]) and converted back to raw intensities.
* Real parasites: the parasite is cut from an infected cell (the strongest spot of the
  modality's contrast inside the cell, minus the cell's local background) and added to a healthy
  cell at a random place inside it. The truth is where the transplanted change is visible.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

ELLIPSE_KINDS = ("noise", "smooth")


@dataclass
class PerturbedCells:
    crops: np.ndarray   # [N, C, S, S] raw intensities
    masks: np.ndarray   # [N, S, S] cell masks
    truth: np.ndarray   # [N, S, S] bool, where the cell was changed
    labels: np.ndarray  # [N] 1 = perturbed


def ellipse_mask(shape, centre, a: float, b: float, angle: float) -> np.ndarray:
    yy, xx = np.mgrid[0:shape[0], 0:shape[1]].astype(np.float64)
    dy, dx = yy - centre[0], xx - centre[1]
    c, s = np.cos(angle), np.sin(angle)
    u, v = dx * c + dy * s, -dx * s + dy * c
    return (u / a) ** 2 + (v / b) ** 2 <= 1.0


def ellipse_pattern(kind: str, inside: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The paper's unit-strength perturbation inside an ellipse, in normalised units, [S, S]."""
    if kind == "noise":
        return np.where(inside, rng.normal(0.0, 0.5, inside.shape), 0.0)
    if kind == "smooth":
        dist = ndi.distance_transform_edt(inside)
        return dist / dist.max() if dist.max() > 0 else dist
    raise ValueError(f"unknown ellipse kind {kind!r}; choose from {ELLIPSE_KINDS}")


def _raw_scale(intensity_low, intensity_high) -> np.ndarray:
    """Raw intensity per normalised unit, per channel [C, 1, 1]."""
    lo, hi = np.asarray(intensity_low, np.float64), np.asarray(intensity_high, np.float64)
    return ((hi - lo) / 2.0)[:, None, None]


def _centre_inside(mask: np.ndarray, margin: float, rng: np.random.Generator) -> tuple[int, int]:
    inner = ndi.binary_erosion(mask, iterations=max(1, int(round(margin))))
    ys, xs = np.nonzero(inner if inner.any() else mask)
    if len(ys) == 0:
        return mask.shape[0] // 2, mask.shape[1] // 2
    k = rng.integers(len(ys))
    return int(ys[k]), int(xs[k])


def add_ellipses(crops: np.ndarray, masks: np.ndarray, kind: str, strength: float, intensity_low, intensity_high,
                 seed: int = 0, random_place: bool = True) -> PerturbedCells:
    """Every crop with one ellipse of ``kind`` at ``strength`` (0 = unchanged).

    ``random_place``: a random position and angle inside the cell; otherwise the paper's setup
    (centre (60, 60) of 128 scaled to the crop, angle -0.7 rad).
    """
    rng = np.random.default_rng(seed)
    n, c, s, _ = crops.shape
    a, b = 10.0 * s / 128.0, 4.0 * s / 128.0
    scale = _raw_scale(intensity_low, intensity_high)
    out = np.asarray(crops, np.float64).copy()
    truth = np.zeros((n, s, s), bool)
    for i in range(n):
        if random_place:
            centre, angle = _centre_inside(masks[i], a, rng), rng.uniform(0, np.pi)
        else:
            centre, angle = (60.0 * s / 128.0, 60.0 * s / 128.0), -0.7
        inside = ellipse_mask((s, s), centre, a, b, angle)
        delta = strength * ellipse_pattern(kind, inside, rng)
        out[i] += delta[None] * scale
        truth[i] = inside & (np.abs(delta) > 0)
    return PerturbedCells(out.astype(np.float32), np.asarray(masks, bool), truth, np.ones(n, int) if strength > 0
                          else np.zeros(n, int))


def contrast_image(crop: np.ndarray, modality: str) -> np.ndarray:
    """[C, S, S] -> [S, S] where parasites are bright: stained bright-field as saturation (the purple
    stain); otherwise the intensity itself (fluorescent spots; in unstained bright-field the
    parasites are bright spots inside the dark cell, as the Remoscope detector in TARGETS.md uses)."""
    crop = np.asarray(crop, np.float64)
    if modality == "brightfield-stained" and crop.shape[0] >= 3:
        return crop[:3].max(0) - crop[:3].min(0)
    return crop.mean(0)


def cut_parasite(crop: np.ndarray, mask: np.ndarray, modality: str, max_radius: float) -> tuple[np.ndarray, np.ndarray]:
    """(change [C, S, S], region [S, S]) of the strongest spot inside the cell.

    The change is the crop minus its local background (a median over a window a few spot sizes
    wide), restricted to the region: the connected part of the spot above half its peak.
    """
    contrast = contrast_image(crop, modality)
    dog = ndi.gaussian_filter(contrast, 1.0) - ndi.gaussian_filter(contrast, 4.0)
    # look for the spot well inside the cell, away from its rim
    depth = max(2, int(round(0.1 * 2.0 * np.sqrt(mask.sum() / np.pi))))
    inner = ndi.binary_erosion(mask, iterations=depth)
    inner = inner if inner.any() else mask
    dog_in = np.where(inner, dog, -np.inf)
    peak = np.unravel_index(int(np.argmax(dog_in)), dog.shape)
    above = (dog >= 0.5 * dog[peak]) & mask
    lab, _ = ndi.label(above)
    region = lab == lab[peak]
    yy, xx = np.mgrid[0:mask.shape[0], 0:mask.shape[1]]
    region &= (yy - peak[0]) ** 2 + (xx - peak[1]) ** 2 <= max_radius ** 2
    # the change fades out over a one-pixel rim so the transplant has no hard edge
    weight = np.where(region, 1.0, 0.5 * ndi.binary_dilation(region))
    size = int(max(5, 4 * max_radius)) | 1
    background = np.stack([ndi.median_filter(ch, size=size) for ch in np.asarray(crop, np.float64)])
    change = (np.asarray(crop, np.float64) - background) * weight[None]
    return change, region


def transplant_parasites(healthy: np.ndarray, healthy_masks: np.ndarray, infected: np.ndarray,
                         infected_masks: np.ndarray, modality: str, seed: int = 0,
                         min_change: float | None = None) -> PerturbedCells:
    """Each healthy crop with the parasite of a (cycled) infected crop added inside the cell."""
    rng = np.random.default_rng(seed)
    n, c, s, _ = healthy.shape
    max_radius = 0.12 * s
    out = np.asarray(healthy, np.float64).copy()
    truth = np.zeros((n, s, s), bool)
    for i in range(n):
        j = i % len(infected)
        change, region = cut_parasite(infected[j], infected_masks[j], modality, max_radius)
        ys, xs = np.nonzero(region)
        if len(ys) == 0:
            continue
        cy, cx = int(round(ys.mean())), int(round(xs.mean()))
        ty, tx = _centre_inside(healthy_masks[i], max_radius, rng)
        shifted = np.stack([ndi.shift(ch, (ty - cy, tx - cx), order=0, mode="constant") for ch in change])
        shifted_region = ndi.shift(region.astype(np.uint8), (ty - cy, tx - cx), order=0, mode="constant") > 0
        out[i] += shifted
        visible = np.abs(shifted).max(0)
        thr = min_change if min_change is not None else 0.1 * visible.max()
        truth[i] = shifted_region & (visible > thr) & healthy_masks[i]
    return PerturbedCells(out.astype(np.float32), np.asarray(healthy_masks, bool), truth, np.ones(n, int))


def with_clean_cells(perturbed: PerturbedCells, clean: np.ndarray, clean_masks: np.ndarray) -> PerturbedCells:
    """Perturbed cells (label 1) followed by untouched healthy cells (label 0, no truth pixels)."""
    s = clean.shape[-1]
    return PerturbedCells(np.concatenate([perturbed.crops, np.asarray(clean, np.float32)]),
                          np.concatenate([perturbed.masks, np.asarray(clean_masks, bool)]),
                          np.concatenate([perturbed.truth, np.zeros((len(clean), s, s), bool)]),
                          np.concatenate([perturbed.labels, np.zeros(len(clean), int)]))
