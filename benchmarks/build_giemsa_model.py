"""Build the built-in ``giemsa-rbc`` model from ../shared/data/plymouth_pf_giemsa_cells.

    python benchmarks/build_giemsa_model.py [--data-root ../shared/data] [--out PATH] [--grayscale]

Whole fields of view are held back for validation (a seeded draw of 6 of the 24 fields), so no
field gives cells to both training and validation. The model learns the healthy cells of the
other 18 fields except a seeded tenth of them, which calibrates the healthy-score distribution
(the candidate threshold). ``--grayscale`` builds the one-channel comparison model of the
benchmark (benchmarks/giemsa.py) on exactly the same cells; it is not shipped.
"""
from __future__ import annotations

import argparse
import random
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from sklearn.metrics import average_precision_score, roc_auc_score

from napari_supn_anomaly.evaluation.datasets import CellSet, giemsa_fields, load_giemsa_cells
from napari_supn_anomaly.models import AnomalyModel
from napari_supn_anomaly.models.builtin import builtin_model_path
from napari_supn_anomaly.pipeline.cell_crops import find_cell_mask, standardise_crops
from napari_supn_anomaly.supn import ArchConfig
from napari_supn_anomaly.training.fit import calibrate, fit_anomaly_model
from napari_supn_anomaly.training.trainer import Progress, TrainConfig

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = REPO.parent / "shared" / "data"
DATASET = "plymouth_pf_giemsa_cells"
MODEL_NAME = "giemsa-rbc"
MODALITY = "brightfield-stained"
RGB_NAMES = ["red", "green", "blue"]

SPLIT_SEED = 6
N_VALIDATION_FIELDS = 6
CALIBRATION_FRACTION = 0.1
CALIBRATION_SEED = 0
# Parasites in Giemsa are dark purple: darker in green than in blue (rule "purple"); the
# grayscale comparison model can only use a dark excess ("dark-channel" = "dark" in 3x3 windows
# for one channel). Both were chosen on the training fields' cells (their infected cells and the
# calibration cells), never on the validation fields.
SCORE_RULE = {"rgb": "purple", "gray": "dark-channel"}

# 48x48 crops with the cell at 36 px (source cells are ~70 px at ~10 px/um): ring stages stay
# 4-5 px wide, and a 2-core CPU trains the model in minutes.
ARCH = dict(crop_size=48, latent_dim=32, widths=(16, 32, 48, 64), head_widths=(8, 16, 24, 32), radius=1)
CELL_DIAMETER_PX = 36.0
TRAIN = dict(seed=0, batch_size=32, stage1_iters=800, stage2_iters=350)


@dataclass
class GiemsaSplit:
    training_fields: list[str]
    validation_fields: list[str]
    train: CellSet          # healthy cells of the training fields the network learns
    calibration: CellSet    # held-back healthy cells of the training fields
    validation: CellSet     # every cell (healthy and infected) of the validation fields

    def describe(self) -> dict:
        return {"dataset": DATASET, "validation_fields": self.validation_fields,
                "training_fields": self.training_fields,
                "split": f"random.Random({SPLIT_SEED}).sample(fields, {N_VALIDATION_FIELDS}); calibration = "
                         f"{CALIBRATION_FRACTION:.0%} of the training fields' healthy cells "
                         f"(numpy default_rng({CALIBRATION_SEED}))",
                "n_train_cells": len(self.train), "n_calibration_cells": len(self.calibration),
                "n_validation_healthy": int((self.validation.labels == 0).sum()),
                "n_validation_infected": int((self.validation.labels == 1).sum())}


def validation_fields(data_root: Path) -> list[str]:
    return sorted(random.Random(SPLIT_SEED).sample(giemsa_fields(data_root), N_VALIDATION_FIELDS))


def load_split(data_root: Path) -> GiemsaSplit:
    val = validation_fields(data_root)
    train_fields = [f for f in giemsa_fields(data_root) if f not in val]
    healthy = load_giemsa_cells(data_root, fields=train_fields, infected=False)
    order = np.random.default_rng(CALIBRATION_SEED).permutation(len(healthy))
    n_cal = int(round(CALIBRATION_FRACTION * len(healthy)))
    return GiemsaSplit(train_fields, val, healthy.subset(np.sort(order[n_cal:])),
                       healthy.subset(np.sort(order[:n_cal])), load_giemsa_cells(data_root, fields=val))


def with_masks(cells: CellSet) -> CellSet:
    """Find each crop's cell once, on the colour image (the grayscale model uses the same masks)."""
    masks = [m if m is not None else find_cell_mask(img, MODALITY) for img, m in zip(cells.images, cells.masks)]
    return CellSet(cells.images, masks, cells.labels, cells.names, cells.groups)


def as_grayscale(cells: CellSet) -> CellSet:
    return CellSet([img.mean(0, keepdims=True) for img in cells.images], cells.masks, cells.labels,
                   cells.names, cells.groups)


def model_crops(model: AnomalyModel, cells: CellSet):
    """Crops and masks at the model's size and at the scale it was trained at (same slide, same optics)."""
    crops, masks, _ = standardise_crops(cells.images, cells.masks, model.crop_size, model.cell_diameter_px,
                                        model.modality, scale=model.metadata["training"]["crop_scale"])
    return crops, masks


def per_cell_metrics(labels: np.ndarray, scores: np.ndarray) -> dict:
    return {"auroc": float(roc_auc_score(labels, scores)), "ap": float(average_precision_score(labels, scores))}


def validation_metrics(model: AnomalyModel, validation: CellSet) -> dict:
    """Falciparum vs healthy per cell on the held-back fields, for each scorer with its own rule."""
    crops, masks = model_crops(model, validation)
    out = {"data": f"{DATASET}, validation fields (see training.data)", "n_healthy": int((validation.labels == 0).sum()),
           "n_infected": int(validation.labels.sum())}
    for scorer in model.scorers:
        scores = model.score_crops(crops, masks, scorer=scorer).scores
        out[scorer] = {k: round(v, 4) for k, v in per_cell_metrics(validation.labels, scores).items()}
        out[scorer]["score_rule"] = model.score_rule(scorer)
    return out


def train_model(split: GiemsaSplit, grayscale: bool = False, train_overrides: dict | None = None,
                log=print) -> AnomalyModel:
    """Train on the split's training cells and calibrate on its calibration cells."""
    train, calibration = split.train, split.calibration
    if grayscale:
        train, calibration = as_grayscale(train), as_grayscale(calibration)
    channels = train.images[0].shape[0]
    arch = ArchConfig(channels=channels, **ARCH)
    cfg = TrainConfig(**{**TRAIN, **(train_overrides or {})})
    name = MODEL_NAME + ("-gray" if grayscale else "")
    description = ("Giemsa-stained thin blood films, bright-field " + ("grayscale" if grayscale else "RGB")
                   + ": healthy red blood cells of P. falciparum slide 57546 (Plymouth); flags dark "
                   "purple stain excess (parasites)")
    model = None
    for event in fit_anomaly_model(train.images, train.masks, name=name, modality=MODALITY,
                                   channel_names=["gray"] if grayscale else RGB_NAMES, arch=arch, cfg=cfg,
                                   cell_diameter_px=CELL_DIAMETER_PX, holdout_fraction=0.0,
                                   score_rule=SCORE_RULE["gray" if grayscale else "rgb"], description=description,
                                   training_data=split.describe()):
        if isinstance(event, Progress):
            if event.iteration % 100 == 0 or event.stage == "done":
                log(f"  {event.stage:9s} {event.iteration:5d}/{event.total} loss {event.loss:8.3f} "
                    f"{event.elapsed_s:6.0f} s")
        else:
            model = event
    crops, masks = model_crops(model, calibration)
    model.metadata["calibration"] = calibrate(model, crops, masks)
    model.metadata["training"]["n_held_back"] = len(calibration)
    return model


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--out", type=Path, default=None,
                        help="model file (default: the package's giemsa-rbc.safetensors; for --grayscale "
                             "runs/giemsa-gray.safetensors)")
    parser.add_argument("--grayscale", action="store_true", help="build the grayscale comparison model")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    out = args.out or (REPO / "runs" / "giemsa-gray.safetensors" if args.grayscale else builtin_model_path(MODEL_NAME))
    started = time.perf_counter()
    split = load_split(args.data_root)
    split = GiemsaSplit(split.training_fields, split.validation_fields, with_masks(split.train),
                        with_masks(split.calibration), split.validation)
    print(f"validation fields {split.validation_fields}; {len(split.train)} training and "
          f"{len(split.calibration)} calibration cells ({time.perf_counter() - started:.0f} s to load)")
    model = train_model(split, grayscale=args.grayscale)
    validation = with_masks(split.validation)
    model.metadata["metrics"] = validation_metrics(model, as_grayscale(validation) if args.grayscale else validation)
    print("validation fields, per-cell AUROC: " + ", ".join(
        f"{k} {v['auroc']:.3f}" for k, v in model.metadata["metrics"].items() if isinstance(v, dict)))
    model.metadata["training"]["build_seconds"] = round(time.perf_counter() - started, 1)
    model.metadata["training"]["command"] = "python benchmarks/build_giemsa_model.py" + (
        " --grayscale" if args.grayscale else "")
    path = model.save(out)
    print(f"saved {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - started:.0f} s; "
          f"training {model.metadata['training']['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
