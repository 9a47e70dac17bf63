"""Fine-tuning a model on healthy cells of a new microscope, as a cancellable generator.

The base model is copied, never changed. A seeded slice of the marked cells is held back: the
new model's healthy-score threshold is calibrated on it, so "1% false candidates" means the
same on the new instrument. When the new images have the opposite contrast to the base model's
(dark cells on light against bright cells on dark), intensities are inverted inside the
model's normalisation, so the base network sees cells that look like the ones it learnt; the
saved model takes raw images of the new microscope and nothing else changes for its users.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import numpy as np

from ..cells import check_modality, dark_cells, guess_modality, standardise_crops
from ..models import AnomalyModel
from ..progress import Progress
from ..supn import IntensityStats
from ..supn.devices import release_memory, resolve_device
from .fit import calibrate, fit_anomaly_model, split_holdout
from .regions import TrainingCells, check_training_cells
from .trainer import TrainConfig, check_minutes

# Inverting intensities turns a bright spot into a dark one: signed rules swap, symmetric ones
# (e.g. "paper", summed z^2) stay.
MIRRORED_RULES = {"bright": "dark", "dark": "bright", "spot": "dark-spot", "dark-spot": "spot"}


def mirrored_rule(rule: str) -> str:
    return MIRRORED_RULES.get(rule, rule)


@dataclass
class FinetuneSettings:
    """How to fine-tune. ``minutes`` bounds the wall-clock time of training (not of preparation)."""

    minutes: float = 2.0
    seed: int = 0
    holdout_fraction: float = 0.2
    modality: str = "auto"            # of the new images: auto, fluorescence, brightfield, brightfield-stained
    device: str = "auto"
    batch_size: int = 32
    mean_iters: int = 400             # iteration caps; the time budget usually ends each stage first
    precision_iters: int = 400
    lr_mean: float = 2e-3             # few iterations fit in minutes: the base is a start, not a prior to protect
    lr_precision: float = 2e-3
    num_threads: int | None = None

    def to_dict(self) -> dict:
        return asdict(self)

    def train_config(self) -> TrainConfig:
        return TrainConfig(seed=self.seed, batch_size=self.batch_size, stage1_iters=self.mean_iters,
                           stage2_iters=self.precision_iters, joint_iters=0, lr=self.lr_mean,
                           lr_stage2=self.lr_precision, max_minutes=self.minutes, num_threads=self.num_threads)


def target_modality(cells: TrainingCells, setting: str, base: AnomalyModel) -> str:
    if setting in ("auto", "", None):
        if not len(cells):
            return base.modality
        # each crop is mostly background, so the crops together say which way the contrast goes
        sample = np.concatenate([c.reshape(c.shape[0], -1) for c in cells.images[:64]], axis=1)
        return guess_modality(sample[:, None, :])
    return check_modality(setting)


def finetuned_name(base_name: str, taken: set[str] | list[str] = ()) -> str:
    """'<base>-finetuned-<n>' with the first n not already taken."""
    n = 1
    while f"{base_name}-finetuned-{n}" in set(taken):
        n += 1
    return f"{base_name}-finetuned-{n}"


def finetune(base: AnomalyModel, cells: TrainingCells, settings: FinetuneSettings | None = None, *,
             name: str | None = None, base_source: str = "", should_stop: Callable[[], bool] | None = None,
             ) -> Iterator[Progress | AnomalyModel]:
    """Generator: Progress events, then the calibrated fine-tuned AnomalyModel (on the CPU).

    Raises ValueError before any training if the cells cannot make a model (too few, wrong
    channels); ``errors.Cancelled`` when ``should_stop`` says so or the generator is
    closed (nothing is produced and the base model is untouched).
    """
    settings = settings or FinetuneSettings()
    check_minutes(settings.minutes, "the time budget")
    check_training_cells(cells, base.channels, f"the base model {base.name!r}", settings.holdout_fraction)
    device = resolve_device(settings.device)
    modality = target_modality(cells, settings.modality, base)
    invert = dark_cells(modality) != dark_cells(base.modality)
    train_idx, hold_idx = split_holdout(len(cells), settings.holdout_fraction, settings.seed)
    train, hold = cells.subset(train_idx), cells.subset(hold_idx)
    images = [-img for img in train.images] if invert else train.images
    yield Progress("preparing", message=f"{len(train)} cells to train on, {len(hold)} held back"
                   + (f"; {modality} images, intensities inverted for the {base.modality} base model" if invert else ""))

    started = time.perf_counter()
    model = None
    try:
        for event in fit_anomaly_model(images, train.masks, name=name or finetuned_name(base.name),
                                       modality=base.modality, init=base, cfg=settings.train_config(),
                                       holdout_fraction=0.0, device=device, should_stop=should_stop,
                                       early_stopping=True, early_stop_masks=hold.masks,
                                       early_stop_images=[-img for img in hold.images] if invert else hold.images):
            if isinstance(event, Progress):
                yield event
            else:
                model = event
    finally:
        release_memory(device)

    if invert:
        stats = model.intensity  # fitted on negated intensities: negate back so raw images go in
        model.intensity = IntensityStats([-v for v in stats.low], [-v for v in stats.high])
        model.metadata["intensity"] = model.intensity.to_dict()
        model.metadata["score_rules"] = {k: mirrored_rule(v) for k, v in model.metadata["score_rules"].items()}
    model.metadata["modality"] = modality
    few = (" (few: thresholds for small false-positive rates are rough; mark more cells for a "
           "sharper threshold)" if len(hold) < 20 else "")
    yield Progress("calibrating", elapsed_s=time.perf_counter() - started,
                   message=f"calibrating the healthy-score threshold on {len(hold)} held-back cells{few}")
    scale = model.metadata["training"]["crop_scale"]
    crops, masks, _ = standardise_crops(hold.images, hold.masks, model.geometry, scale=scale)
    model.metadata["calibration"] = calibrate(model, crops, masks)
    model.metadata["description"] = (f"{base.name} fine-tuned on {len(cells)} healthy cells of "
                                     f"{len(cells.describe()['images'])} image(s)")
    model.metadata["base_model"] = {"name": base.name, "source": base_source or base.name,
                                    "modality": base.modality,
                                    "training": copy.deepcopy(base.metadata.get("training", {}))}
    training = model.metadata["training"]
    training["n_held_back"] = int(len(hold))
    training["finetune"] = dict(settings.to_dict(), intensity_inverted=bool(invert), target_modality=modality,
                                device=str(device))
    training["data"] = {"train": train.describe(), "held_back": hold.describe()}
    yield model
