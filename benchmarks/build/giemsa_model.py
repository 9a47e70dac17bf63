"""Build the built-in ``giemsa-rbc`` model from ../shared/data/plymouth_pf_giemsa_cells.

    python benchmarks/build/giemsa_model.py [--data-root ../shared/data] [--out PATH] [--grayscale]

Whole fields of view are held back for validation (a seeded draw of 6 of the 24 fields), so no
field gives cells to both training and validation. The model learns the healthy cells of the
other 18 fields except a seeded tenth of them, which calibrates the healthy-score distribution
(the candidate threshold). The split lives in napari_supn_anomaly.evaluation.builtin_splits.
``--grayscale`` builds the one-channel comparison model of the benchmark (benchmarks/giemsa.py)
on exactly the same cells with the same recipe; it is not shipped.
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from napari_supn_anomaly.evaluation.builtin_splits import (GIEMSA_MODALITY, GiemsaSplit, as_grayscale,
                                                           load_giemsa_split, model_crops, with_masks)
from napari_supn_anomaly.evaluation.datasets import CellSet
from napari_supn_anomaly.evaluation.metrics import auprc, auroc
from napari_supn_anomaly.models import AnomalyModel
from napari_supn_anomaly.models.builtin import builtin_model_path
from napari_supn_anomaly.progress import Progress
from napari_supn_anomaly.supn import ArchConfig
from napari_supn_anomaly.training.fit import calibrate, fit_anomaly_model
from napari_supn_anomaly.training.trainer import TrainConfig

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA_ROOT = REPO.parent / "shared" / "data"
MODEL_NAME = "giemsa-rbc"
MODALITY = GIEMSA_MODALITY
RGB_NAMES = ["red", "green", "blue"]
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


def validation_metrics(model: AnomalyModel, validation: CellSet) -> dict:
    """Falciparum vs healthy per cell on the held-back fields, for each scorer with its own rule."""
    crops, masks = model_crops(model, validation)
    out = {"data": "plymouth_pf_giemsa_cells, validation fields (see training.data)",
           "n_healthy": int((validation.labels == 0).sum()), "n_infected": int(validation.labels.sum())}
    for scorer in model.scorers:
        scores = model.score_crops(crops, masks, scorer=scorer).scores
        out[scorer] = {"auroc": round(auroc(validation.labels, scores), 4),
                       "ap": round(auprc(validation.labels, scores), 4)}
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
            if (event.done % 100 == 0 or event.stage == "done") and event.loss is not None:
                log(f"  {event.stage:9s} {event.done:5d}/{event.total} loss {event.loss:8.3f} "
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
    split = load_giemsa_split(args.data_root)
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
    model.metadata["training"]["command"] = "python benchmarks/build/giemsa_model.py" + (
        " --grayscale" if args.grayscale else "")
    path = model.save(out)
    print(f"saved {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - started:.0f} s; "
          f"training {model.metadata['training']['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
