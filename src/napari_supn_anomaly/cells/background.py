"""How far each pixel stands from the field's own background, estimated locally.

A blood field's background is the most common thing in it, but not flat: stains tint it,
illumination falls off towards the corners and a crowded smear leaves little of it. The
background is therefore measured per block of the field (the median of the pixels on the
background side of a global Otsu split) and interpolated smoothly between blocks. The contrast
is then the pixel's departure from it in the modality's direction (grayscale), or its colour
distance from it (stained RGB, where a cell differs from the background in both darkness and
tint: pale Chula cells on a grey-green background, pink cells on white in MalariaNet).
"""
from __future__ import annotations

import numpy as np
from skimage import filters

from .modality import dark_cells

BLOCKS_PER_SIDE = 4       # background blocks along the longer side
MIN_BACKGROUND_SHARE = 0.05  # a block with less background than this borrows the field's
LEVEL_SAMPLE = 16384      # pixels a background level is measured on, at most


def _background_side(gray: np.ndarray, dark: bool) -> np.ndarray:
    try:
        level = filters.threshold_otsu(gray[::2, ::2])
    except ValueError:
        return np.ones(gray.shape, bool)
    return gray > level if dark else gray <= level


def robust_sigma(values: np.ndarray, centre: float) -> float:
    """The standard deviation of normal ``values`` around ``centre``, from their median absolute
    deviation (a minority of outliers does not move it)."""
    return 1.4826 * float(np.median(np.abs(values - centre)))


def main_peak(values: np.ndarray, rounds: int = 3, sigmas: float = 2.5) -> np.ndarray:
    """Which of ``values`` [N] belong to their main peak: values more than ``sigmas`` robust sigmas
    from the median are dropped, in turn. The background side of an Otsu split also holds the dim
    cells, and in fluorescence a field of dim cells shifts its median towards them."""
    keep = np.ones(values.shape, bool)
    for _ in range(rounds):
        centre = np.median(values[keep])
        spread = robust_sigma(values[keep], centre)
        if spread <= 0:
            break
        new = np.abs(values - centre) <= sigmas * spread
        if new.sum() < 0.5 * values.size or (new == keep).all():
            break
        keep = new
    return keep


def _background_level(values: np.ndarray) -> np.ndarray:
    """[C] the background's level from its pixels' values [C, N] (an even sample of
    ``LEVEL_SAMPLE`` of them at most: a median needs no more, and medians were a tenth of the
    cell finder's time)."""
    values = values[:, ::-(-values.shape[1] // LEVEL_SAMPLE)]
    return np.median(values[:, main_peak(values.mean(0))], axis=1)


def local_background(channels: np.ndarray, background: np.ndarray) -> np.ndarray:
    """[C, Y, X] smooth background estimate from the pixels marked ``background``."""
    c, h, w = channels.shape
    block = max(16, int(np.ceil(max(h, w) / BLOCKS_PER_SIDE)))
    ny, nx = int(np.ceil(h / block)), int(np.ceil(w / block))
    overall = _background_level(channels[:, background] if background.any() else channels.reshape(c, -1))
    grid = np.empty((c, ny, nx), np.float32)
    for i in range(ny):
        for j in range(nx):
            sl = (slice(i * block, (i + 1) * block), slice(j * block, (j + 1) * block))
            bg = background[sl]
            if bg.mean() < MIN_BACKGROUND_SHARE:
                grid[:, i, j] = overall
            else:
                grid[:, i, j] = _background_level(channels[(slice(None),) + sl][:, bg])
    # blocks centred on their own centres, bilinear in between, constant beyond: one
    # interpolation matrix per axis (``map_coordinates`` on every pixel took several times as long)
    wy, wx = _block_weights(h, block, ny), _block_weights(w, block, nx)
    return np.einsum("yi,cij,xj->cyx", wy, grid, wx, optimize=True).astype(np.float32)


def _block_weights(n: int, block: int, n_blocks: int) -> np.ndarray:
    """[n, n_blocks] linear interpolation weights of each pixel between the blocks' centres."""
    pos = np.clip((np.arange(n) + 0.5) / block - 0.5, 0, n_blocks - 1)
    low = np.minimum(np.floor(pos).astype(int), max(n_blocks - 2, 0))
    frac = pos - low
    weights = np.zeros((n, n_blocks), np.float32)
    weights[np.arange(n), low] = 1.0 - frac
    if n_blocks > 1:
        weights[np.arange(n), low + 1] += frac
    return weights


def foreground_contrast(plane: np.ndarray, modality: str) -> tuple[np.ndarray, np.ndarray]:
    """(contrast [Y, X], background [C, Y, X]): cells positive, background near 0."""
    plane = np.asarray(plane, np.float32)
    dark = dark_cells(modality)
    gray = plane.mean(0)
    colour = modality == "brightfield-stained" and plane.shape[0] >= 3
    channels = plane[:3] if colour else gray[None]
    background = local_background(channels, _background_side(gray, dark))
    if colour:
        contrast = np.sqrt(((channels - background) ** 2).sum(0))
        # a pixel brighter than the background is not cell however different its tint
        contrast[gray > background.mean(0)] *= 0.5
    else:
        contrast = (background[0] - gray) if dark else (gray - background[0])
    return contrast.astype(np.float32), background
