"""Test sets for the harness: cells standardised to a model, with labels and, where it exists, pixel truth.

Every set comes with healthy cells kept apart from the test cells, for calibration (score
distributions, map normalisation, pixel thresholds) and for training the self-supervised
scorers. Nothing is ever calibrated on test cells.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..models import AnomalyModel
from ..cells import find_cell_mask, standardise_crops
from . import handmade
from .datasets import CellSet, load_fl_cells, load_giemsa_cells, load_remoscope_fields, read_image
from .perturbations import add_ellipses, transplant_parasites, with_clean_cells

DATASETS = ("fl", "giemsa", "remoscope")
IMAGE_SUFFIXES = (".png", ".tif", ".tiff", ".jpg", ".jpeg")


@dataclass
class EvalSet:
    name: str
    crops: np.ndarray            # [N, C, S, S] raw intensities at the model's scale
    masks: np.ndarray            # [N, S, S]
    labels: np.ndarray           # [N] 1 = infected / perturbed
    truth: np.ndarray | None = None  # [N, S, S] pixel truth where it exists
    handmade_name: str = ""
    handmade_scores: np.ndarray | None = None


@dataclass
class EvalData:
    dataset: str
    sets: list[EvalSet]
    calibration: tuple[np.ndarray, np.ndarray]  # healthy (crops, masks), not in any test set
    training: tuple[np.ndarray, np.ndarray]     # healthy (crops, masks) for the self-supervised scorers
    notes: list[str] = field(default_factory=list)


def training_crop_scale(model: AnomalyModel) -> float | None:
    return model.metadata.get("training", {}).get("crop_scale")


def standardise_for(model: AnomalyModel, cells: CellSet, scale: float | None = None):
    """(crops, masks) of a CellSet at the model's crop size and cell scale; empty cells dropped."""
    crops, masks, _ = standardise_crops(cells.images, cells.masks, model.geometry, scale=scale)
    if crops.shape[1] != model.channels:
        raise ValueError(f"the model {model.name!r} expects {model.channels} channel(s), the cells have {crops.shape[1]}")
    return crops, masks


def _split(n: int, sizes: tuple[int, ...], seed: int) -> list[np.ndarray]:
    order = np.random.default_rng(seed).permutation(n)
    out, start = [], 0
    for size in sizes:
        out.append(np.sort(order[start:start + size]))
        start += size
    return out


def perturbation_sets(model: AnomalyModel, healthy: tuple[np.ndarray, np.ndarray],
                      infected: tuple[np.ndarray, np.ndarray] | None, strength: float = 0.5, seed: int = 0) -> list[EvalSet]:
    """Paired sets: each healthy test cell once clean (label 0) and once perturbed (label 1)."""
    crops, masks = healthy
    lo, hi = model.intensity.low, model.intensity.high
    sets = []
    for kind in ("smooth", "noise"):
        p = add_ellipses(crops, masks, kind, strength, lo, hi, seed=seed)
        both = with_clean_cells(p, crops, masks)
        sets.append(EvalSet(f"ellipse-{kind}@{strength:g}", both.crops, both.masks, both.labels, both.truth))
    if infected is not None and len(infected[0]):
        p = transplant_parasites(crops, masks, infected[0], infected[1], model.modality, seed=seed)
        both = with_clean_cells(p, crops, masks)
        sets.append(EvalSet("parasite-transplant", both.crops, both.masks, both.labels, both.truth))
    return sets


def fl_eval_data(model: AnomalyModel, data_root: Path, n_calibration: int = 100, n_training: int = 400,
                 perturbations: bool = True, seed: int = 0) -> EvalData:
    """supn_fl_cells/validation (50 healthy, 50 infected); healthy_train cells for calibration/training."""
    val = load_fl_cells(data_root, "validation")
    train = load_fl_cells(data_root, "train")
    scale = training_crop_scale(model)
    crops, masks = standardise_for(model, val, scale)
    cal_idx, tr_idx = _split(len(train), (n_calibration, n_training), seed)
    cal = standardise_for(model, train.subset(cal_idx), scale)
    tr = standardise_for(model, train.subset(tr_idx), scale)
    hand = handmade.bright_spots(val.images, val.masks)
    sets = [EvalSet("supn_fl_cells/validation", crops, masks, val.labels, None, "bright spots (DoG 1-4)", hand)]
    if perturbations:
        h, i = val.labels == 0, val.labels == 1
        sets += perturbation_sets(model, (crops[h], masks[h]), (crops[i], masks[i]), seed=seed)
    return EvalData("fl", sets, cal, tr, ["calibration and self-supervised training on healthy_train cells "
                                          "(the model may have seen them in training)"])


def giemsa_eval_data(model: AnomalyModel, data_root: Path, test_fields: list[str], train_fields: list[str],
                     max_healthy_test: int = 300, n_calibration: int = 100, n_training: int = 400,
                     perturbations: bool = True, seed: int = 5) -> EvalData:
    """Infected and (a seeded subset of) healthy crops of held-back fields; healthy cells of training fields."""
    test = load_giemsa_cells(data_root, fields=test_fields, max_healthy=max_healthy_test, seed=seed)
    pool = load_giemsa_cells(data_root, fields=train_fields, infected=False, max_healthy=n_calibration + n_training,
                             seed=seed)
    scale = training_crop_scale(model)
    crops, masks = standardise_for(model, test, scale)
    pool_crops, pool_masks = standardise_for(model, pool, scale)
    cal_idx, tr_idx = _split(len(pool_crops), (n_calibration, n_training), seed)
    hand = handmade.stain_saturation(test.images)
    sets = [EvalSet(f"giemsa fields {','.join(f[-2:] for f in test_fields)}", crops, masks, test.labels, None,
                    "stain saturation (p99.5)", hand)]
    if perturbations:
        h, i = np.nonzero(test.labels == 0)[0][:100], test.labels == 1
        sets += perturbation_sets(model, (crops[h], masks[h]), (crops[i], masks[i]), seed=seed)
    return EvalData("giemsa", sets, (pool_crops[cal_idx], pool_masks[cal_idx]),
                    (pool_crops[tr_idx], pool_masks[tr_idx]))


def remoscope_box_cells(data_root: Path, fields: list[str] | None = None, margin: float = 0.3,
                        classes: tuple[str, ...] | None = None) -> tuple[CellSet, list[np.ndarray]]:
    """Labelled boxes as cells: (crops with a margin around the box, exact box crops for the hand-made detector).

    Healthy boxes are label 0, ring/trophozoite/schizont/gametocyte label 1; misc and wbc are left out.
    """
    images, masks, labels, names, groups, exact = [], [], [], [], [], []
    for f in load_remoscope_fields(data_root):
        if fields is not None and f.name not in fields:
            continue
        h, w = f.image.shape
        for k, b in enumerate(f.boxes):
            if b.cls not in ("healthy",) and not b.infected:
                continue
            if classes is not None and b.cls not in classes:
                continue
            my, mx = int(round(margin * (b.y1 - b.y0))), int(round(margin * (b.x1 - b.x0)))
            y0, x0, y1, x1 = max(0, b.y0 - my), max(0, b.x0 - mx), min(h, b.y1 + my), min(w, b.x1 + mx)
            crop = f.image[y0:y1, x0:x1][None].astype(np.float32)
            inner = np.zeros(crop.shape[1:], bool)
            inner[max(0, b.y0 - y0):b.y1 - y0, max(0, b.x0 - x0):b.x1 - x0] = True
            mask = find_cell_mask(crop, "brightfield") & inner
            images.append(crop)
            masks.append(mask if mask.sum() >= 16 else inner)
            labels.append(int(b.infected))
            names.append(f"{f.name}#{k}:{b.cls}")
            groups.append(f.name)
            exact.append(f.image[max(0, b.y0):b.y1, max(0, b.x0):b.x1][None].astype(np.float32))
    return CellSet(images, masks, np.asarray(labels), names, groups), exact


def remoscope_eval_data(model: AnomalyModel, data_root: Path, test_fields: list[str], train_fields: list[str],
                        perturbations: bool = True, seed: int = 0) -> EvalData:
    test, exact = remoscope_box_cells(data_root, test_fields)
    train, _ = remoscope_box_cells(data_root, train_fields, classes=("healthy",))
    scale = training_crop_scale(model)
    crops, masks = standardise_for(model, test, scale)
    tr_crops, tr_masks = standardise_for(model, train, scale)
    hand = handmade.bright_spots_in_box(exact)
    sets = [EvalSet(f"remoscope fields {','.join(f[4:8] for f in test_fields)}", crops, masks, test.labels, None,
                    "bright spots in box (DoG 1-3)", hand)]
    if perturbations:
        h, i = test.labels == 0, test.labels == 1
        sets += perturbation_sets(model, (crops[h], masks[h]), (crops[i], masks[i]), seed=seed)
    return EvalData("remoscope", sets, (tr_crops, tr_masks), (tr_crops, tr_masks),
                    ["calibration and self-supervised training on the same few healthy boxes of the training fields"])


def _read_any(path: Path, rgb: bool) -> np.ndarray:
    if path.suffix.lower() in (".tif", ".tiff"):
        import tifffile
        arr = np.asarray(tifffile.imread(path), np.float32)
        return arr[None] if arr.ndim == 2 else (arr.transpose(2, 0, 1) if arr.shape[-1] in (3, 4) else arr)
    return read_image(path, rgb=rgb)


def _folder_cells(folder: Path, label: int, rgb: bool) -> CellSet:
    files = sorted(p for p in folder.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    masks = []
    for f in files:
        m = folder / "masks" / f.name
        masks.append(_read_any(m, False)[0] > 0 if m.exists() else None)
    images = [_read_any(f, rgb) for f in files]
    return CellSet(images, masks, np.full(len(files), label), [f.name for f in files])


def folder_eval_data(model: AnomalyModel, folder: Path, seed: int = 0) -> EvalData:
    """A folder with ``healthy/`` and ``infected/`` single-cell images (optional ``masks/`` inside each, same
    names) and optionally ``healthy_train/``; without it, half the healthy cells calibrate and the rest are tested."""
    folder = Path(folder)
    for sub in ("healthy", "infected"):
        if not (folder / sub).is_dir():
            raise FileNotFoundError(f"{folder} needs a '{sub}' folder of single-cell images")
    rgb = model.channels == 3
    healthy, infected = _folder_cells(folder / "healthy", 0, rgb), _folder_cells(folder / "infected", 1, rgb)
    if len(healthy) == 0 or len(infected) == 0:
        raise ValueError(f"{folder}: 'healthy' and 'infected' must each hold at least one image")
    h_crops, h_masks = standardise_for(model, healthy, training_crop_scale(model))
    i_crops, i_masks = standardise_for(model, infected, training_crop_scale(model))
    if (folder / "healthy_train").is_dir():
        cal = standardise_for(model, _folder_cells(folder / "healthy_train", 0, rgb), training_crop_scale(model))
        test_h = np.arange(len(h_crops))
    else:
        if len(h_crops) < 4:
            raise ValueError(f"{folder}: at least 4 healthy cells are needed (half calibrate, half are tested)")
        cal_idx, test_h = _split(len(h_crops), (len(h_crops) // 2, len(h_crops) - len(h_crops) // 2), seed)
        cal = (h_crops[cal_idx], h_masks[cal_idx])
    crops = np.concatenate([h_crops[test_h], i_crops])
    masks = np.concatenate([h_masks[test_h], i_masks])
    labels = np.r_[np.zeros(len(test_h), int), np.ones(len(i_crops), int)]
    return EvalData(folder.name, [EvalSet(folder.name, crops, masks, labels)], cal, cal)
