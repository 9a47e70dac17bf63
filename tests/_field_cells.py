"""Every cell of a synthetic field, cut out as a crop with its mask: healthy cells to calibrate a scorer on."""
from __future__ import annotations

import numpy as np

from napari_supn_anomaly.cells import standardise_crops
from napari_supn_anomaly.synthetic import make_field

CELL_DIAMETER = 30


def field_cells(modality: str, seed: int, shape=(192, 192), infected_fraction: float = 0.0):
    """(images [C, h, w], masks [h, w]) of every cell of a synthetic field, 8 px of margin around each."""
    field = make_field(shape, modality, cell_diameter=CELL_DIAMETER, infected_fraction=infected_fraction, seed=seed)
    image = field.image[None] if field.image.ndim == 2 else np.moveaxis(field.image, -1, 0)
    images, masks = [], []
    for i in [i for i in np.unique(field.cells) if i]:
        ys, xs = np.nonzero(field.cells == i)
        y0, y1, x0, x1 = max(0, ys.min() - 8), ys.max() + 9, max(0, xs.min() - 8), xs.max() + 9
        images.append(image[:, y0:y1, x0:x1].astype(np.float32))
        masks.append(field.cells[y0:y1, x0:x1] == i)
    return images, masks


def field_cell_crops(model, seed: int, shape=(192, 192), infected_fraction: float = 0.0):
    """The cells of ``field_cells`` (the model's modality) at the model's scale, as detection makes them."""
    images, masks = field_cells(model.modality, seed, shape, infected_fraction)
    crops, crop_masks, _ = standardise_crops(images, masks, model.geometry, scale=model.cell_diameter_px / CELL_DIAMETER)
    return crops, crop_masks
