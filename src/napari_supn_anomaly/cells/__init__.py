"""Red cells: finding them, measuring them, and cutting them at a model's scale.

Knows nothing of models, napari, Qt or files; imports only ``supn``-free numerics and ``errors``.
"""
from ..lazy import exports_on_first_use

_EXPORTS = {
    "CropGeometry": "crops", "crop_scale": "crops", "find_cell_mask": "crops", "loss_weight": "crops",
    "standardise_crop": "crops", "standardise_crops": "crops", "background_fill": "field_crops",
    "cut_crops": "field_crops", "field_scale": "field_crops", "paste_maps": "field_crops",
    "rescale_plane": "field_crops", "cell_centres": "measure", "equivalent_diameter": "measure",
    "equivalent_diameters": "measure", "cell_ids": "measure", "label_centroids": "measure",
    "median_cell_diameter": "measure", "number_consecutively": "measure",
    "DARK_CELL_MODALITIES": "modality", "MODALITIES": "modality", "cell_contrast": "modality",
    "check_modality": "modality", "dark_cells": "modality", "guess_modality": "modality", "stained": "modality",
    "Segmentation": "segmentation", "check_plane": "segmentation", "segment_cells": "segmentation",
}
__all__ = list(_EXPORTS)
__getattr__ = exports_on_first_use(__name__, _EXPORTS)
