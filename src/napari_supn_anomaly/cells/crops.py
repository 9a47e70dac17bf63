"""Single-cell crops: find the cell in a crop, and bring crops to the model's size and scale.

Scale is chosen per set of crops (one microscope, one magnification), never per cell, so a
cell's size stays informative and matches how whole fields are rescaled.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage import filters, measure, morphology, segmentation

from .hull import convex_image
from .measure import equivalent_diameter
from .modality import cell_contrast
from .resize import resize_linear, resize_mask, scaled_shape


@dataclass(frozen=True)
class CropGeometry:
    """What a model's crops look like: their size, the cell diameter inside them, the modality."""

    crop_size: int
    cell_diameter_px: float
    modality: str


def _region_nearest_centre(labels: np.ndarray) -> np.ndarray:
    """The labelled region covering the centre, else the one nearest to it."""
    h, w = labels.shape
    centre_label = labels[h // 2, w // 2]
    if centre_label == 0:
        yy, xx = np.nonzero(labels)
        k = np.argmin((yy - h / 2) ** 2 + (xx - w / 2) ** 2)
        centre_label = labels[yy[k], xx[k]]
    return labels == centre_label


def _stained_cell(fg: np.ndarray, cell: np.ndarray) -> np.ndarray:
    """Stained red cells on white are convex: fill the pale centre, split off touching neighbours.

    A pale central pallor often opens to the background and neighbours touch or overlap, so the
    thresholded cell can be a C shape or carry a neighbour. A nearly convex region is replaced by
    its hull; otherwise the foreground is split by a distance-transform watershed first.
    """
    hull = convex_image(cell)
    if cell.sum() >= 0.95 * hull.sum():
        return hull
    fg = ndi.binary_fill_holes(fg | ndi.binary_closing(fg, morphology.disk(4)))
    # edge padding: a cell cut by the crop border continues beyond it
    dist = ndi.distance_transform_edt(np.pad(fg, 1, mode="edge"))[1:-1, 1:-1]
    seeds = measure.label(morphology.h_maxima(filters.gaussian(dist, 2), 0.15 * dist.max()))
    return convex_image(_region_nearest_centre(segmentation.watershed(-dist, seeds, mask=fg)))


def find_cell_mask(image: np.ndarray, modality: str = "fluorescence") -> np.ndarray:
    """Mask [H, W] of the cell closest to the centre of a single-cell crop (Otsu + hole filling)."""
    contrast = filters.gaussian(cell_contrast(image, modality), 1.0)
    if not np.isfinite(contrast).all() or np.ptp(contrast) <= 0:
        return np.zeros(contrast.shape, bool)
    fg = contrast > filters.threshold_otsu(contrast)
    fg = ndi.binary_fill_holes(ndi.binary_opening(fg, morphology.disk(2)))
    labels = measure.label(fg)
    if labels.max() == 0:
        return fg
    cell = _region_nearest_centre(labels)
    if modality == "brightfield-stained":
        return _stained_cell(fg, cell)
    return cell


def crop_scale(masks: list[np.ndarray], target_diameter: float) -> float:
    """One scale factor for a set of crops: target diameter / median cell diameter."""
    diameters = [equivalent_diameter(m) for m in masks if m is not None and m.any()]
    if not diameters:
        raise ValueError("no cell was found in any crop, so the cell size cannot be measured")
    return float(target_diameter / np.median(diameters))


def background_value(image: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Per-channel median outside the cell (or of the whole crop if the cell fills it)."""
    outside = ~mask if (~mask).sum() >= 16 else np.ones_like(mask)
    return np.median(image[:, outside], axis=1)


def standardise_crop(image: np.ndarray, mask: np.ndarray, crop_size: int, scale: float):
    """Rescale [C, H, W] by ``scale`` and cut crop_size x crop_size centred on the cell.

    Pixels outside the source crop are filled with the background value. Returns
    (crop [C, S, S] float32, mask [S, S] bool).
    """
    image = np.asarray(image, np.float32)
    if image.ndim != 3:
        raise ValueError(f"a crop must be [C, H, W], got shape {image.shape}")
    mask = np.asarray(mask, bool)
    fill = background_value(image, mask)
    if abs(scale - 1.0) > 1e-3:
        # as skimage.transform.rescale / resize would (see .resize), several times faster on small crops
        shape = scaled_shape(image.shape[1:], scale)
        image = np.stack([resize_linear(ch, shape, anti_aliasing=scale < 1) for ch in image])
        mask = resize_mask(mask, shape)
    h, w = mask.shape
    if mask.any():
        cy, cx = (round(v) for v in ndi.center_of_mass(mask))
    else:
        cy, cx = h // 2, w // 2
    half = crop_size // 2
    y0, x0 = cy - half, cx - half
    out = np.empty((image.shape[0], crop_size, crop_size), np.float32)
    out[:] = fill[:, None, None]
    out_mask = np.zeros((crop_size, crop_size), bool)
    sy0, sx0 = max(0, y0), max(0, x0)
    sy1, sx1 = min(h, y0 + crop_size), min(w, x0 + crop_size)
    if sy1 > sy0 and sx1 > sx0:
        out[:, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[:, sy0:sy1, sx0:sx1]
        out_mask[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = mask[sy0:sy1, sx0:sx1]
    return out, out_mask


def standardise_crops(images: list[np.ndarray], masks: list[np.ndarray | None], geometry: CropGeometry,
                      scale: float | None = None):
    """Bring a set of single-cell crops to a model's crop size and cell size; the one way crops are cut.

    Missing masks are found in the crop. ``scale`` (source -> model pixels) is measured from the
    cells' median diameter unless given. Returns (crops [N, C, S, S], masks [N, S, S], scale used).
    """
    masks = [m if m is not None else find_cell_mask(img, geometry.modality) for img, m in zip(images, masks)]
    if scale is None:
        scale = crop_scale(masks, geometry.cell_diameter_px)
    if not np.isfinite(scale) or scale <= 0 or any(min(img.shape[-2:]) * scale < 2 for img in images):
        raise ValueError(f"the crops cannot be brought to the model's cell size (scale {scale:.3g}): is the cell "
                         "diameter right?")
    size = geometry.crop_size
    out = [standardise_crop(img, m, size, scale) for img, m in zip(images, masks)]
    if not out:
        return np.zeros((0, 1, size, size), np.float32), np.zeros((0, size, size), bool), scale
    return np.stack([o[0] for o in out]), np.stack([o[1] for o in out]), scale


def loss_weight(masks: np.ndarray, dilation: int = 3) -> np.ndarray:
    """Training weight [N, 1, S, S]: the cell plus a few pixels around it."""
    footprint = morphology.disk(dilation)
    return np.stack([ndi.binary_dilation(m, footprint) for m in masks]).astype(np.float32)[:, None]
