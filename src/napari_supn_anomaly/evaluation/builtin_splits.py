"""The seeded data splits the built-in models were built on, reproduced cell for cell.

``giemsa-rbc`` (``plymouth_pf_giemsa_cells``): a seeded draw of 6 of the 24 fields of view is
held back for validation, so no field gives cells to both training and validation; a seeded
tenth of the other 18 fields' healthy cells is held back to calibrate the scorers, and the
network learns the rest.

``fluorescence-rbc`` (``supn_fl_cells/healthy_train``): the seeded tenth of the training crops
that :func:`napari_supn_anomaly.training.fit.fit_anomaly_model` held back for calibration.

The build scripts in ``benchmarks/build/`` make the models from these splits; the benchmarks and
the scorer calibrations use them to reach exactly the cells a model never trained on. The
functions that take a model check the split against the model's metadata.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..cells import find_cell_mask
from ..models import AnomalyModel
from ..training.fit import split_holdout
from .datasets import CellSet, giemsa_fields, load_fl_cells, load_giemsa_cells
from .eval_sets import standardise_for, training_crop_scale

GIEMSA_DATASET = "plymouth_pf_giemsa_cells"
GIEMSA_MODALITY = "brightfield-stained"
SPLIT_SEED = 6
N_VALIDATION_FIELDS = 6
CALIBRATION_FRACTION = 0.1
CALIBRATION_SEED = 0


# giemsa-rbc also learns healthy cells of some MalariaNet slides (another lab, stain and camera).
# The slides are split three ways, each slide wholly on one side: the network learns the healthy
# cells of MALARIANET_TRAIN_SLIDES (the three with most healthy cells found, for stain variety at
# a useful count); MALARIANET_SELECTION_SLIDES choose the settings (augmentation, score rule,
# default scorer); MALARIANET_TEST_SLIDES are only measured on, never used to choose anything.
MALARIANET_TRAIN_SLIDES = ["Trip_038_Day_1_01-12-05", "Trip_062_Day_1_02-11-05", "Trip_083_Day_2_07-12-05"]
MALARIANET_SELECTION_SLIDES = ["Trip_064_Day_2_25-11-05", "Trip_065_Day_2_01-12-05"]
MALARIANET_TEST_SLIDES = ["Trip_022_Day_1_08-11-05", "Trip_053_Day_2_19-11-05", "Trip_073_Day_2_01-12-05",
                          "Trip_804_Day_1_02-12-05"]
MALARIANET_CALIBRATION_FRACTION = 0.1
MALARIANET_REPEATS = 3  # the lab's cells are fewer than Plymouth's: each is drawn 3 times as often


def malarianet_training_cells(data_root: Path, target_diameter: float, cache: Path | None = None,
                              stain=None) -> tuple[CellSet, CellSet]:
    """(train, calibration) healthy cells of MALARIANET_TRAIN_SLIDES, found by the package's
    segmenter away from any parasite and rescaled to ``target_diameter``; a seeded tenth calibrates.
    With a ``stain`` (``models.data_range.Stain``) each field is first matched to it, as detection
    matches a field to a stained model's stain (a field with no such stain is left as it is)."""
    from dataclasses import replace

    from ..models.data_range import apply_match, plan_stain_match
    from .field_sets import find_cells, healthy_cell_crops, load_malarianet_fields

    images, masks, names = [], [], []
    for field in load_malarianet_fields(data_root, MALARIANET_TRAIN_SLIDES):
        found = find_cells(field, cache=cache)
        match = None if stain is None else plan_stain_match(field.image, found.labels, stain, 1.0)
        if match is not None:
            field = replace(field, image=apply_match(field.image, match))
        for k, (crop, mask) in enumerate(healthy_cell_crops(field, found, target_diameter)):
            images.append(crop)
            masks.append(mask)
            names.append(f"{field.name}#{k}")
    cells = CellSet(images, masks, np.zeros(len(images), int), names, [n.split("_Image")[0] for n in names])
    order = np.random.default_rng(CALIBRATION_SEED).permutation(len(cells))
    n_cal = round(MALARIANET_CALIBRATION_FRACTION * len(cells))
    return cells.subset(np.sort(order[n_cal:])), cells.subset(np.sort(order[:n_cal]))


@dataclass
class GiemsaSplit:
    training_fields: list[str]
    validation_fields: list[str]
    train: CellSet          # healthy cells of the training fields the network learns
    calibration: CellSet    # held-back healthy cells of the training fields
    validation: CellSet     # every cell (healthy and infected) of the validation fields

    def describe(self) -> dict:
        """The split as stored in a model's ``training.data`` metadata."""
        return {"dataset": GIEMSA_DATASET, "validation_fields": self.validation_fields,
                "training_fields": self.training_fields,
                "split": f"random.Random({SPLIT_SEED}).sample(fields, {N_VALIDATION_FIELDS}); calibration = "
                         f"{CALIBRATION_FRACTION:.0%} of the training fields' healthy cells "
                         f"(numpy default_rng({CALIBRATION_SEED}))",
                "n_train_cells": len(self.train), "n_calibration_cells": len(self.calibration),
                "n_validation_healthy": int((self.validation.labels == 0).sum()),
                "n_validation_infected": int((self.validation.labels == 1).sum())}


def giemsa_validation_fields(data_root: Path) -> list[str]:
    """The fields of view held back for validation (a seeded draw)."""
    return sorted(random.Random(SPLIT_SEED).sample(giemsa_fields(data_root), N_VALIDATION_FIELDS))


def load_giemsa_split(data_root: Path) -> GiemsaSplit:
    """Training, calibration and validation cells of giemsa-rbc (masks not found yet: see :func:`with_masks`)."""
    val = giemsa_validation_fields(data_root)
    train_fields = [f for f in giemsa_fields(data_root) if f not in val]
    healthy = load_giemsa_cells(data_root, fields=train_fields, infected=False)
    order = np.random.default_rng(CALIBRATION_SEED).permutation(len(healthy))
    n_cal = round(CALIBRATION_FRACTION * len(healthy))
    return GiemsaSplit(train_fields, val, healthy.subset(np.sort(order[n_cal:])),
                       healthy.subset(np.sort(order[:n_cal])), load_giemsa_cells(data_root, fields=val))


def with_masks(cells: CellSet, modality: str = GIEMSA_MODALITY) -> CellSet:
    """Find each crop's cell where the dataset gives no mask (once, on the colour image: the
    grayscale comparison model uses the same masks)."""
    masks = [m if m is not None else find_cell_mask(img, modality) for img, m in zip(cells.images, cells.masks)]
    return CellSet(cells.images, masks, cells.labels, cells.names, cells.groups)


def as_grayscale(cells: CellSet) -> CellSet:
    """The mean of the channels, one channel per crop."""
    return CellSet([img.mean(0, keepdims=True) for img in cells.images], cells.masks, cells.labels,
                   cells.names, cells.groups)


def model_crops(model: AnomalyModel, cells: CellSet) -> tuple[np.ndarray, np.ndarray]:
    """Crops and masks at the model's size and at the scale it was trained at (same slide, same optics)."""
    return standardise_for(model, cells, training_crop_scale(model))


def checked_giemsa_split(model: AnomalyModel, data_root: Path) -> GiemsaSplit:
    """:func:`load_giemsa_split`, asserted against the validation fields stored in ``model``."""
    split = load_giemsa_split(data_root)
    if split.validation_fields != model.metadata["training"]["data"]["validation_fields"]:
        raise AssertionError("the Giemsa field split does not match the build")
    return split


def giemsa_held_back(model: AnomalyModel, data_root: Path, split: GiemsaSplit | None = None,
                     cache: Path | None = None):
    """(crops, masks) of the healthy calibration cells of giemsa-rbc: the Plymouth tenth and, for a
    model that also learned MalariaNet slides, their calibration tenth (``cache``: see field_sets.find_cells)."""
    split = split or checked_giemsa_split(model, data_root)
    crops, masks = model_crops(model, with_masks(split.calibration))
    data = model.metadata["training"]["data"]
    if data.get("malarianet_train_slides"):
        if data["malarianet_train_slides"] != MALARIANET_TRAIN_SLIDES:
            raise AssertionError("the MalariaNet training slides do not match the build")
        _, mn_cal = malarianet_training_cells(data_root, data["malarianet_cell_diameter_px"], cache)
        mn_crops, mn_masks = model_crops(model, mn_cal)
        crops, masks = np.concatenate([crops, mn_crops]), np.concatenate([masks, mn_masks])
    if len(crops) != model.metadata["training"]["n_held_back"]:
        raise AssertionError("the held-back split does not match the build")
    return crops, masks


def giemsa_split(model: AnomalyModel, data_root: Path):
    """((train crops, masks), (held-back crops, masks)) of giemsa-rbc, exactly as it was built."""
    split = checked_giemsa_split(model, data_root)
    return model_crops(model, with_masks(split.train)), giemsa_held_back(model, data_root, split)


def fluorescence_split(model: AnomalyModel, data_root: Path):
    """((train crops, masks), (held-back crops, masks)) of fluorescence-rbc, exactly as it was built."""
    crops, masks = model_crops(model, load_fl_cells(data_root, "train"))
    keep = masks.reshape(len(masks), -1).any(1)
    crops, masks = crops[keep], masks[keep]
    train, hold = split_holdout(len(crops), 0.1, model.metadata["training"]["settings"]["seed"])
    if len(hold) != model.metadata["training"]["n_held_back"]:
        raise AssertionError("the held-back split does not match the build")
    return (crops[train], masks[train]), (crops[hold], masks[hold])


def validation_cells(model: AnomalyModel, data_root: Path) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(crops, masks, labels) of a built-in model's validation cells at its scale:
    ``supn_fl_cells/validation`` for fluorescence-rbc, every cell of giemsa-rbc's held-out fields."""
    if model.name == "giemsa-rbc":
        cells = with_masks(checked_giemsa_split(model, data_root).validation)
    else:
        cells = load_fl_cells(data_root, "validation")
    crops, masks = model_crops(model, cells)
    return crops, masks, np.asarray(cells.labels)
