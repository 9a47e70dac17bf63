"""Fine-tuning a model on healthy cells of a new microscope, as a cancellable generator.

The base model is copied, never changed. A seeded slice of the marked cells is held back: the
new model's healthy-score threshold is calibrated on it, so "1% false candidates" means the
same on the new instrument.

A base model that matches stains (stained bright-field, ``models.data_range``) sees each new
field matched to its stain, in training as in detection, and the new model keeps that stain.
Otherwise the new model normalises the new microscope's images exactly as the base model saw them in
detection: their intensity range (measured around the cells of the fields, as detection does)
mapped onto the base's data range, then the base's normalisation, folded into one linear map.
Re-measuring the range on the marked cells alone instead changed what the network saw and cost
more AUROC on MalariaNet than any amount of training (docs/benchmarks/finetune.md). When the new
images have the opposite contrast to the base model's (dark cells on light against bright cells
on dark), the map is reversed, so the base network sees cells that look like the ones it
learnt; the saved model takes raw images of the new microscope, carries their range
(``data_range``) so detection never remaps them, and nothing else changes for its users.
"""
from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import numpy as np

from ..cells import check_modality, dark_cells, guess_modality, standardise_crops
from ..cells.field_crops import field_scale
from ..cells.measure import median_cell_diameter
from ..models import AnomalyModel
from ..models.data_range import FIELD_TOLERANCE, DataRange, apply_match, field_range, plan_match
from ..errors import Cancelled
from ..progress import Progress
from ..scoring import DEFAULT_SCORE_RULES, FINETUNED_DEFAULT_SCORERS
from ..supn import IntensityStats
from ..supn.devices import release_memory, resolve_device
from .augment import ColourAugment
from .fit import calibrate, fit_anomaly_model, held_back_cell_values, split_holdout
from .guard import compare_with_base
from .regions import TrainingCells, check_training_cells
from .trainer import TrainConfig, check_minutes

# Inverting intensities turns a bright spot into a dark one: signed rules swap, symmetric ones
# (e.g. "paper", summed z^2) stay.
MIRRORED_RULES = {"bright": "dark", "dark": "bright", "spot": "dark-spot", "dark-spot": "spot"}


def mirrored_rule(rule: str) -> str:
    return MIRRORED_RULES.get(rule, rule)


def finetuned_score_rules(base: AnomalyModel, modality: str, invert: bool) -> dict[str, str]:
    """The per-cell rules of a model fine-tuned from ``base`` on ``modality`` images: the base's own on
    its own modality; on another modality that modality's default rule (what its parasites look like),
    mirrored when the intensities are inverted. Remoscope (a fluorescence base on unstained bright-field,
    9 runs, docs/benchmarks/finetune.md): the bright-field rule 0.933 +- 0.045 against the base's
    mirrored spot rule 0.918 +- 0.042."""
    rules = dict(base.metadata.get("score_rules", {}))
    if modality != base.modality:
        rules = {k: DEFAULT_SCORE_RULES.get(modality, "paper") for k in rules}
    return {k: mirrored_rule(v) for k, v in rules.items()} if invert else rules


def finetuned_default_scorer(base: AnomalyModel, tuned: AnomalyModel, modality: str) -> str | None:
    """The default scorer of ``tuned``, fine-tuned from ``base`` on ``modality`` images: the one training
    gave it (the base's) on the base's own modality; on another, that modality's
    (``FINETUNED_DEFAULT_SCORERS``) where it names one."""
    own = tuned.metadata.get("default_scorer")
    return own if modality == base.modality else FINETUNED_DEFAULT_SCORERS.get(modality, own)


def finetuned_rotations(base: AnomalyModel, modality: str) -> int:
    """The orientations a model fine-tuned from ``base`` on ``modality`` images is scored in: the
    base's on its own modality, one on another (they were chosen on the base's cells, like its rules)."""
    return base.rotations if modality == base.modality else 1


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
    colour_augment: bool = False      # stain, lamp, focus jitter of the marked cells (training.augment)
    early_stopping: bool = True       # stop a stage when the held-back cells' loss stops improving

    def to_dict(self) -> dict:
        return asdict(self)

    def train_config(self) -> TrainConfig:
        return TrainConfig(seed=self.seed, batch_size=self.batch_size, stage1_iters=self.mean_iters,
                           stage2_iters=self.precision_iters, joint_iters=0, lr=self.lr_mean,
                           lr_stage2=self.lr_precision, max_minutes=self.minutes, num_threads=self.num_threads)


def cells_are_dark(cells: TrainingCells, fields: dict | None = None, field_labels: dict | None = None) -> bool | None:
    """Whether cells are darker than the background: inside against outside the cells of the fields
    (or of the crops); None when there is nothing to compare. A dense smear is mostly cell, so the
    median of a whole image cannot say which way the contrast goes; the cells' own outlines can."""
    inside, outside = [], []
    if fields and field_labels:
        pairs = [(fields[n], field_labels[n] > 0) for n in fields if n in field_labels]
    else:
        pairs = list(zip(cells.images[:200], cells.masks[:200]))
    for image, mask in pairs:
        if mask is not None and mask.any() and (~mask).any():
            grey = np.asarray(image, np.float32).mean(0)
            inside.append(np.median(grey[mask]))
            outside.append(np.median(grey[~mask]))
    return None if not inside else bool(np.median(inside) < np.median(outside))


def target_modality(cells: TrainingCells, setting: str, base: AnomalyModel, fields: dict | None = None,
                    field_labels: dict | None = None) -> str:
    """The new images' modality: as set, else the base's when the cells have the base's contrast
    (dark or bright against the background), else guessed with the other contrast."""
    if setting in ("auto", "", None):
        dark = cells_are_dark(cells, fields, field_labels)
        if dark is not None:
            if dark == dark_cells(base.modality):
                return base.modality
            guess = guess_modality(next(iter(fields.values()))) if fields else "brightfield"
            return guess if dark_cells(guess) == dark else ("brightfield" if dark else "fluorescence")
        if not len(cells):
            return base.modality
        # each crop is mostly background, so the crops together say which way the contrast goes
        sample = np.concatenate([c.reshape(c.shape[0], -1) for c in cells.images[:64]], axis=1)
        return guess_modality(sample[:, None, :])
    return check_modality(setting)


def new_data_range(base: AnomalyModel, cells: TrainingCells, fields: dict | None = None,
                   field_labels: dict | None = None) -> DataRange:
    """The new microscope's intensities, measured as detection measures a field for ``base``: over the
    pixels around the cells of each whole field (the median over fields), or, with crops only, over
    the crops brought to the base model's crop size."""
    if fields and field_labels:
        lows, highs = [], []
        for name, plane in fields.items():
            labels = field_labels[name]
            window = base.crop_size / field_scale(base.geometry, median_cell_diameter(labels))
            low, high = field_range(plane, labels, window)
            lows.append(low)
            highs.append(high)
        return DataRange(np.median(lows, 0).tolist(), np.median(highs, 0).tolist(), tolerance=FIELD_TOLERANCE)
    crops, _, _ = standardise_crops(cells.images, cells.masks, base.geometry)
    return DataRange.of_crops(crops)


def mapped_as_detection(base: AnomalyModel, cells: TrainingCells, seen: DataRange, fields: dict | None,
                        field_labels: dict | None) -> TrainingCells:
    """The cells with each field's intensity matching applied, exactly as detection with the fine-tuned
    model (same geometry, same ``seen`` range) will apply it to that field (``models.data_range``)."""
    if not fields or not field_labels:
        return cells
    plans = {}
    for name, plane in fields.items():
        labels = field_labels[name]
        window = base.crop_size / field_scale(base.geometry, median_cell_diameter(labels))
        plans[name.replace("\\", "/").rsplit("/", 1)[-1]] = plan_match(plane, labels, seen, window, "auto")
    images = [apply_match(img, plans[s["image"]]) if s["image"] in plans else img
              for img, s in zip(cells.images, cells.sources)]
    return TrainingCells(images, cells.masks, cells.sources, cells.regions, cells.skipped)


def keeps_base_stain(base: AnomalyModel, invert: bool, fields: dict | None, field_labels: dict | None) -> bool:
    """Whether the new microscope's fields are matched to the base's stain (a stained base, the same
    contrast, whole fields to measure each one's stain on) rather than mapped onto a new range."""
    return base.data_range.stain is not None and not invert and bool(fields) and bool(field_labels)


def normalisation_as_base_sees(base: AnomalyModel, seen: DataRange, invert: bool) -> IntensityStats:
    """The fine-tuned model's normalisation: the new images mapped onto the base's data range, as
    detection with the base maps them (reversed when the contrast is opposite), then normalised as
    the base normalises. Both steps are linear, so the raw images of the new microscope go in as
    they are, and training starts from inputs exactly like those the base model scored."""
    lo_r, hi_r = np.asarray(seen.low), np.asarray(seen.high)
    ref = base.data_range
    gain = ref.span / np.maximum(hi_r - lo_r, 1e-6)
    offset = np.asarray(ref.low) - gain * lo_r
    if invert:  # the darkest raw value goes to the top of the base's range
        gain, offset = -gain, np.asarray(ref.high) + gain * lo_r
    b_lo, b_hi = np.asarray(base.intensity.low), np.asarray(base.intensity.high)
    a = 2.0 * gain / (b_hi - b_lo)                  # normalised = a * raw + c
    c = 2.0 * (offset - b_lo) / (b_hi - b_lo) - 1.0
    return IntensityStats(((-1.0 - c) / a).tolist(), ((1.0 - c) / a).tolist())


def finetuned_name(base_name: str, taken: set[str] | list[str] = ()) -> str:
    """'<base>-finetuned-<n>' with the first n not already taken."""
    n = 1
    while f"{base_name}-finetuned-{n}" in set(taken):
        n += 1
    return f"{base_name}-finetuned-{n}"


def finetune(base: AnomalyModel, cells: TrainingCells, settings: FinetuneSettings | None = None, *,
             name: str | None = None, base_source: str = "", should_stop: Callable[[], bool] | None = None,
             fields: dict[str, np.ndarray] | None = None, field_labels: dict[str, np.ndarray] | None = None,
             compare: bool = True) -> Iterator[Progress | AnomalyModel]:
    """Generator: Progress events, then the calibrated fine-tuned AnomalyModel (on the CPU).

    With the whole ``fields`` ({name: [C, Y, X]}) the cells were marked on and their cell
    ``field_labels``, the fine-tuned model is compared with the base on the held-back cells and
    the fields' other cells (``training.guard``); when fine-tuning made things worse the base
    model is returned instead, under the new name, unchanged but for its metadata
    (``finetune_check`` says why). Without fields nothing is compared; ``compare=False`` skips the
    comparison (benchmarks that measure the fine-tuned model itself run it separately).

    Raises ValueError before any training if the cells cannot make a model (too few, wrong
    channels); ``errors.Cancelled`` when ``should_stop`` says so or the generator is
    closed (nothing is produced and the base model is untouched).
    """
    settings = settings or FinetuneSettings()
    check_minutes(settings.minutes, "the time budget")
    check_training_cells(cells, base.channels, f"the base model {base.name!r}", settings.holdout_fraction)
    device = resolve_device(settings.device)
    modality = target_modality(cells, settings.modality, base, fields, field_labels)
    invert = dark_cells(modality) != dark_cells(base.modality)
    train_idx, hold_idx = split_holdout(len(cells), settings.holdout_fraction, settings.seed)
    train, hold = cells.subset(train_idx), cells.subset(hold_idx)
    if keeps_base_stain(base, invert, fields, field_labels):
        # each field goes in matched to the base's stain as the base's detection matches it, and the
        # new model keeps the base's range and stain, so its detection matches each field the same way
        seen, stats = base.data_range, base.intensity
    else:
        seen = new_data_range(base, cells, fields, field_labels)
        stats = normalisation_as_base_sees(base, seen, invert)
    train, hold = mapped_as_detection(base, train, seen, fields, field_labels), \
        mapped_as_detection(base, hold, seen, fields, field_labels)
    yield Progress("preparing", message=f"{len(train)} cells to train on, {len(hold)} held back"
                   + (f"; {modality} images, intensities inverted for the {base.modality} base model" if invert else ""))

    started = time.perf_counter()
    model = None
    try:
        for event in fit_anomaly_model(train.images, train.masks, name=name or finetuned_name(base.name),
                                       modality=base.modality, init=base, cfg=settings.train_config(),
                                       holdout_fraction=0.0, device=device, should_stop=should_stop,
                                       early_stopping=settings.early_stopping, early_stop_masks=hold.masks,
                                       early_stop_images=hold.images, intensity=stats,
                                       colour_augment=ColourAugment() if settings.colour_augment else None):
            if isinstance(event, Progress):
                yield event
            else:
                model = event
    finally:
        release_memory(device)

    model.metadata["data_range"] = seen.to_dict()
    model.metadata["score_rules"] = finetuned_score_rules(base, modality, invert)
    model.metadata["rotations"] = finetuned_rotations(base, modality)
    model.metadata["default_scorer"] = finetuned_default_scorer(base, model, modality)
    model.metadata["modality"] = modality
    few = (" (few: thresholds for small false-positive rates are rough; mark more cells for a "
           "sharper threshold)" if len(hold) < 20 else "")
    yield Progress("calibrating", elapsed_s=time.perf_counter() - started,
                   message=f"calibrating the healthy-score threshold on {len(hold)} held-back cells{few}")
    scale = model.metadata["training"]["crop_scale"]
    crops, masks, _ = standardise_crops(hold.images, hold.masks, model.geometry, scale=scale)
    raw_hold = cells.subset(hold_idx)  # as recorded: detection reads a cell term on the field as recorded
    model.metadata["calibration"] = calibrate(model, crops, masks, cell_values=held_back_cell_values(
        model.metadata["default_scorer"], raw_hold.images, raw_hold.masks))
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
    if not compare:
        yield model
        return
    if fields:
        yield Progress("checking", elapsed_s=time.perf_counter() - started,
                       message="comparing the fine-tuned model with the base on the fields' other cells")
    stopped = should_stop or (lambda: False)
    if stopped():
        raise Cancelled("fine-tuning was cancelled")
    # the raw held-back cells: the check maps each model's cells as its detection would
    comparison = compare_with_base(base, model, cells.subset(hold_idx), cells, fields, field_labels, settings.seed,
                                   base_usable=not invert)
    if stopped():
        raise Cancelled("fine-tuning was cancelled")
    model.metadata["finetune_check"] = comparison.to_dict()
    yield Progress("checked", message=comparison.summary())
    yield kept_base(base, model, name or model.name) if comparison.kept_base else model


def kept_base(base: AnomalyModel, tuned: AnomalyModel, name: str) -> AnomalyModel:
    """The base model, unchanged (weights, intensities, calibration), under the new name, with the
    record of the fine-tuning that was not kept."""
    kept = base.copy()
    check = tuned.metadata["finetune_check"]
    kept.metadata.update(name=name, finetune_check=check,
                         description=f"{base.name}, kept unchanged: fine-tuning on "
                                     f"{tuned.metadata['training']['data']['train']['n_cells']} cells did not help "
                                     f"({check['reason']})",
                         base_model=tuned.metadata["base_model"])
    kept.metadata["training"] = dict(copy.deepcopy(base.metadata.get("training", {})),
                                     finetune_not_kept=copy.deepcopy(tuned.metadata["training"]))
    return kept
