"""Red cells: finding them, measuring them, and cutting them at a model's scale.

Knows nothing of models, napari, Qt or files; imports only ``supn``-free numerics and ``errors``.
"""
from .crops import CropGeometry, crop_scale, find_cell_mask, loss_weight, standardise_crop, standardise_crops
from .field_crops import background_fill, cut_crops, field_scale, paste_maps, rescale_plane
from .measure import (cell_centres, equivalent_diameter, equivalent_diameters, label_centroids,
                      median_cell_diameter)
from .modality import DARK_CELL_MODALITIES, MODALITIES, cell_contrast, check_modality, dark_cells, guess_modality
from .segmentation import Segmentation, check_plane, segment_cells

__all__ = [
    "CropGeometry", "crop_scale", "find_cell_mask", "loss_weight", "standardise_crop", "standardise_crops",
    "background_fill", "cut_crops", "field_scale", "paste_maps", "rescale_plane",
    "cell_centres", "equivalent_diameter", "equivalent_diameters", "label_centroids", "median_cell_diameter",
    "DARK_CELL_MODALITIES", "MODALITIES", "cell_contrast", "check_modality", "dark_cells", "guess_modality",
    "Segmentation", "check_plane", "segment_cells",
]
