"""From single-cell crops to a calibrated, saveable AnomalyModel.

Crops are brought to the model's scale, a seeded slice of cells is held back, the SUPN-VAE is
trained (from scratch or from a base model), and the held-back healthy cells calibrate each
scorer's healthy-score distribution (the candidate threshold is a quantile of it).
"""
from __future__ import annotations

import copy
import time
from typing import Callable, Iterator

import numpy as np

from .. import __version__
from ..models import AnomalyModel
from ..models.data_range import DataRange, stain_of_crops, stain_sample
from ..cells import CropGeometry, loss_weight, standardise_crops, stained
from ..progress import Progress
from ..scoring import DEFAULT_SCORE_RULES, REGISTRY, calibrate as calibrate_scorer, resolve
from ..scoring.cell_terms import CELL_TERMS
from ..supn import ArchConfig, IntensityStats, check_rotations
from .augment import ColourAugment, normalised_augmenter
from .trainer import TrainConfig, train_supn_vae

MIN_CELLS = 8


def split_holdout(n: int, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, held back); at least 2 cells on each side when possible."""
    order = np.random.default_rng(seed).permutation(n)
    n_hold = int(round(n * fraction)) if fraction > 0 else 0
    n_hold = min(max(n_hold, 2 if fraction > 0 else 0), max(0, n - 2))
    return np.sort(order[n_hold:]), np.sort(order[:n_hold])


def calibrate(model: AnomalyModel, crops: np.ndarray, masks: np.ndarray, batch_size: int = 64,
              cell_values: np.ndarray | None = None) -> dict:
    """Healthy-score distribution of each of the model's own scorers on held-back healthy cells, and
    of its default scorer when that combines them (e.g. ``supn+saturation``), so that a fine-tuned
    model keeps its base's default. ``cell_values``: that default's cell term measured as detection
    measures it (``held_back_cell_values``).

    Replaces the model's calibration table; returns it.
    """
    model.metadata["calibration"] = {}
    default = model.metadata.get("default_scorer")
    combined = [default] if default in REGISTRY and REGISTRY[default].needs_calibration else []
    for name in list(model.scorers) + combined:
        calibrate_scorer(resolve(model, name, require_calibration=False), crops, masks, batch_size=batch_size,
                         cell_values=cell_values if name in combined else None)
    return model.metadata["calibration"]


def held_back_cell_values(scorer_name: str | None, images: list[np.ndarray], masks: list[np.ndarray | None]
                          ) -> np.ndarray | None:
    """The cell term of ``scorer_name`` (``scoring.cell_terms``) of each held-back cell, measured on its
    raw crop [C, h, w] at its own resolution, as detection measures it on a field; NaN where a cell has
    no mask. None when the scorer adds no term measured on fields."""
    term = CELL_TERMS.get(scorer_name)  # a new calibration's settings: the one these values are for
    if term is None or term.measure_field is None:
        return None
    one = np.array([1])
    return np.array([term.field_values(np.asarray(img), np.asarray(m, np.int32), one)[0] if m is not None
                     else np.nan for img, m in zip(images, masks)])


def fit_anomaly_model(images: list[np.ndarray], masks: list[np.ndarray | None], *, name: str,
                      modality: str, channel_names: list[str] | None = None, arch: ArchConfig | None = None,
                      cfg: TrainConfig | None = None, cell_diameter_px: float | None = None,
                      init: AnomalyModel | None = None, holdout_fraction: float = 0.1,
                      score_rule: str | None = None, description: str = "", training_data: dict | None = None,
                      device="cpu", should_stop: Callable[[], bool] | None = None,
                      early_stopping: bool = False, early_stop_images: list[np.ndarray] | None = None,
                      early_stop_masks: list[np.ndarray | None] | None = None,
                      colour_augment: ColourAugment | None = None,
                      intensity: IntensityStats | None = None, rotations: int = 1,
                      ) -> Iterator[Progress | AnomalyModel]:
    """Generator: yields training Progress, then the calibrated AnomalyModel (on the CPU).

    ``images`` are raw crops [C, H, W] (any size); ``masks`` the cell masks or None to find them.
    With ``init`` the base model's architecture, cell size and score rules are kept and its weights
    are the starting point; the base model itself is never changed. With ``early_stopping`` the
    held-back cells (or ``early_stop_images`` when given) stop each training stage when their loss
    stops improving. ``rotations``: turns of each crop whose maps scoring averages
    (``supn.scoring.anomaly_maps``); with ``init``, the base's.
    """
    cfg = cfg or TrainConfig()
    check_rotations(rotations)
    if len(images) < MIN_CELLS:
        raise ValueError(f"at least {MIN_CELLS} healthy cells are needed to train, got {len(images)}")
    channels = images[0].shape[0]
    if any(img.ndim != 3 or img.shape[0] != channels for img in images):
        raise ValueError("all training crops must have the same number of channels")
    if init is not None:
        if init.channels != channels:
            raise ValueError(f"the base model {init.name!r} expects {init.channels} channel(s), "
                             f"but the training cells have {channels}")
        arch, geometry = init.net.cfg, init.geometry
        score_rules = dict(init.metadata.get("score_rules", {}))
        channel_names = channel_names or init.channel_names
        rotations = init.rotations
    else:
        arch = arch or ArchConfig(channels=channels)
        geometry = CropGeometry(arch.crop_size, cell_diameter_px or 0.47 * arch.crop_size, modality)
        rule = score_rule or DEFAULT_SCORE_RULES.get(modality, "paper")
        score_rules = {"supn": rule, "diag": rule, "l2": rule}
    if arch.channels != channels:
        raise ValueError(f"the architecture expects {arch.channels} channel(s), the cells have {channels}")

    crops, cell_masks, scale = standardise_crops(images, masks, geometry)
    empty = ~cell_masks.reshape(len(cell_masks), -1).any(1)
    if empty.all():
        raise ValueError("no cell could be found in any of the training crops")
    crops, cell_masks = crops[~empty], cell_masks[~empty]
    train_idx, hold_idx = split_holdout(len(crops), holdout_fraction, cfg.seed)
    # fine-tuning passes the normalisation the base model used on these images (training.finetune)
    stats = intensity or IntensityStats.from_images(crops[train_idx])
    x = stats.apply(crops[train_idx])
    weight = loss_weight(cell_masks[train_idx])

    started, cpu_started = time.perf_counter(), time.process_time()
    net, iterations = None, 0
    held_back = {}
    if early_stopping:
        if early_stop_images:
            stop_crops, stop_masks, _ = standardise_crops(
                early_stop_images, early_stop_masks or [None] * len(early_stop_images), geometry, scale=scale)
        else:
            stop_crops, stop_masks = crops[hold_idx], cell_masks[hold_idx]
        if len(stop_crops):
            held_back = {"x_held_back": stats.apply(stop_crops), "weight_held_back": loss_weight(stop_masks)}
    for event in train_supn_vae(x, weight, arch, cfg, init=None if init is None else init.net,
                                device=device, should_stop=should_stop, **held_back,
                                augmenter=None if colour_augment is None else
                                normalised_augmenter(colour_augment, stats.low, stats.high)):
        if isinstance(event, Progress):
            iterations = event.done if event.stage == "done" else iterations
            yield event
        else:
            net = event
    training = {"settings": cfg.to_dict(), "n_cells": int(len(train_idx)), "n_held_back": int(len(hold_idx)),
                "crop_scale": float(scale), "seconds": round(time.perf_counter() - started, 1),
                "cpu_seconds": round(time.process_time() - cpu_started, 1), "iterations": int(iterations),
                "data": training_data or {}}
    if colour_augment is not None:
        training["colour_augment"] = colour_augment.to_dict()
    metadata = _metadata(name, description, geometry, channel_names or [f"channel {i}" for i in range(channels)],
                         stats, score_rules, training, init)
    if rotations != 1:
        metadata["rotations"] = int(rotations)
    # the raw intensities of the training cells, measured as detection measures a field's: fields
    # that fit them are never remapped (models.data_range)
    data_range = DataRange.of_crops(crops[train_idx])
    if stained(geometry.modality):
        sample = np.asarray(train_idx)[stain_sample(len(train_idx))]
        data_range.stain = stain_of_crops(crops[sample], cell_masks[sample])
    metadata["data_range"] = data_range.to_dict()
    model = AnomalyModel(net.to("cpu"), metadata)
    if len(hold_idx):
        calibrate(model, crops[hold_idx], cell_masks[hold_idx])
    yield model


def _metadata(name: str, description: str, geometry: CropGeometry, channel_names: list[str], stats: IntensityStats,
              score_rules: dict, training: dict, init: AnomalyModel | None) -> dict:
    """A new model's JSON header (see DESIGN.md, 'Models on disk')."""
    metadata = {
        "name": name,
        "description": description,
        "modality": geometry.modality,
        "channel_names": channel_names,
        "cell_diameter_px": float(geometry.cell_diameter_px),
        "intensity": stats.to_dict(),
        "score_rules": score_rules,
        # a fine-tuned model keeps its base's default (calibrate() calibrates it when it combines scorers)
        "default_scorer": (init.metadata.get("default_scorer") if init is not None else None) or "supn",
        "training": training,
        "package_version": __version__,
    }
    if init is not None:
        metadata["base_model"] = {"name": init.name, "training": copy.deepcopy(init.metadata.get("training", {}))}
    return metadata
