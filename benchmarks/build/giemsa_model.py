"""Build the built-in ``giemsa-rbc`` model from ../shared/data/plymouth_pf_giemsa_cells.

    python benchmarks/build/giemsa_model.py [--data-root ../shared/data] [--out PATH] [--grayscale]
        [--arch fast|full-resolution] [--seed N ...] [--malarianet] [--augment] [--init FILE] [--compare-augment]

Whole fields of view are held back for validation (a seeded draw of 6 of the 24 fields), so no
field gives cells to both training and validation. The model learns the healthy cells of the
other 18 fields except a seeded tenth of them, which calibrates the healthy-score distribution
(the candidate threshold). ``--arch``: the network (default ``fast``). The shipped file is seed 1
of ``--arch fast --seed 0 1 2``, chosen on the MalariaNet selection slides and made the built-in
model by benchmarks/build/ship_giemsa.py (docs/models-giemsa.md). ``--malarianet`` also
learns the healthy cells of three MalariaNet slides (another lab), found by the package's
segmenter away from every parasite; a seeded tenth of those calibrates too, and the other
MalariaNet slides are left out (selection and test slides). ``--augment`` adds colour and
intensity augmentation (napari_supn_anomaly.training.augment). The multi-lab candidates of
docs/benchmarks/generalisation.md were made with ``--malarianet --init <shipped file> --seed 0 1 2
--compare-augment`` and were not better on held-out slides, so they are not shipped. The splits
live in napari_supn_anomaly.evaluation.builtin_splits.
``--grayscale`` builds the one-channel comparison model of the benchmark (benchmarks/giemsa.py)
on exactly the same cells with the same recipe; it is not shipped.
"""
from __future__ import annotations

import argparse
import multiprocessing
import time
from pathlib import Path

import numpy as np
import torch

from napari_supn_anomaly.evaluation.builtin_splits import (
    GIEMSA_MODALITY,
    MALARIANET_REPEATS,
    MALARIANET_TRAIN_SLIDES,
    GiemsaSplit,
    as_grayscale,
    load_giemsa_split,
    malarianet_training_cells,
    model_crops,
    with_masks,
)
from napari_supn_anomaly.evaluation.datasets import CellSet
from napari_supn_anomaly.evaluation.metrics import auprc, auroc
from napari_supn_anomaly.models import AnomalyModel
from napari_supn_anomaly.models.builtin import builtin_model_path
from napari_supn_anomaly.models.data_range import stain_of_crops, stain_sample
from napari_supn_anomaly.progress import Progress
from napari_supn_anomaly.supn import ArchConfig
from napari_supn_anomaly.training.augment import ColourAugment
from napari_supn_anomaly.training.fit import calibrate, fit_anomaly_model
from napari_supn_anomaly.training.trainer import TrainConfig

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA_ROOT = REPO.parent / "shared" / "data"
MODEL_NAME = "giemsa-rbc"
MODALITY = GIEMSA_MODALITY
RGB_NAMES = ["red", "green", "blue"]
# Parasites in Giemsa are dark purple: darker in green than in blue (rule "purple", chosen on the
# training fields' cells; since 2026-12-02 "purple-scaled", the same contrast on each pixel's own
# residual, chosen on the MalariaNet selection slides, docs/benchmarks/generalisation.md); the
# grayscale comparison model can only use a dark excess ("dark-channel" = "dark" in 3x3 windows
# for one channel), chosen on the training fields' cells, never on the validation fields.
SCORE_RULE = {"rgb": "purple-scaled", "gray": "dark-channel"}

# 48x48 crops with the cell at 36 px (source cells are ~70 px at ~10 px/um): ring stages stay
# 4-5 px wide, and a 2-core CPU trains the model in minutes.
# "fast" (shipped since 2026-11-30, issue 14): the fluorescence model's narrower layers and decoders that
# stop at half resolution, about 1.5x more crops per CPU second and the same accuracy over 3 seeds on every
# source (docs/benchmarks/giemsa_arch.md). "full-resolution": the network shipped until then.
ARCHS = {
    "full-resolution": {"crop_size": 48, "latent_dim": 32, "widths": (16, 32, 48, 64),
                        "head_widths": (8, 16, 24, 32), "radius": 1},
    "fast": {"crop_size": 48, "latent_dim": 32, "widths": (8, 16, 32, 64), "head_widths": (4, 8, 16, 24),
             "radius": 1, "direct_output": True},
}
DEFAULT_ARCH = "fast"
CELL_DIAMETER_PX = 36.0
TRAIN = {"seed": 0, "batch_size": 32, "stage1_iters": 800, "stage2_iters": 350}
# --init: the earlier Plymouth-only network learns the new cells (both labs, augmented) briefly
FINETUNE = {"stage1_iters": 80, "stage2_iters": 60, "lr": 1e-3, "lr_stage2": 1e-3}
PLYMOUTH_CELL_DIAMETER_PX = 70.2  # the Plymouth cells' median diameter (crop_scale 0.513 of the first build)


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


def plymouth_stain(split: GiemsaSplit):
    """The stain of the Plymouth training cells (a seeded sample of their crops as they are, before a
    model's scale is known)."""
    cells = with_masks(split.train.subset(stain_sample(len(split.train))))
    return stain_of_crops(cells.images, cells.masks)


def add_malarianet(split: GiemsaSplit, data_root: Path, cache: Path | None = None,
                   log=print, match_stain: bool = False) -> tuple[GiemsaSplit, dict]:
    """The split with MalariaNet training-slide cells added (each ``MALARIANET_REPEATS`` times) to its
    training cells and their calibration tenth to its calibration cells; and what was added."""
    mn_train, mn_cal = malarianet_training_cells(data_root, PLYMOUTH_CELL_DIAMETER_PX, cache,
                                                 plymouth_stain(split) if match_stain else None)
    log(f"MalariaNet slides {', '.join(MALARIANET_TRAIN_SLIDES)}: {len(mn_train)} training and "
        f"{len(mn_cal)} calibration cells")
    repeated = mn_train.subset(np.tile(np.arange(len(mn_train)), MALARIANET_REPEATS))
    train = _join(split.train, repeated)
    calibration = _join(split.calibration, mn_cal)
    added = {"malarianet_train_slides": MALARIANET_TRAIN_SLIDES, "n_malarianet_train_cells": len(mn_train),
             "malarianet_repeats": MALARIANET_REPEATS, "n_malarianet_calibration_cells": len(mn_cal),
             "malarianet_cell_diameter_px": PLYMOUTH_CELL_DIAMETER_PX, "malarianet_stain_matched": match_stain}
    return GiemsaSplit(split.training_fields, split.validation_fields, train, calibration, split.validation), added


def _join(a: CellSet, b: CellSet) -> CellSet:
    return CellSet(a.images + b.images, a.masks + b.masks, np.r_[a.labels, b.labels], a.names + b.names,
                   (a.groups or [""] * len(a)) + (b.groups or [""] * len(b)))


def train_model(split: GiemsaSplit, grayscale: bool = False, train_overrides: dict | None = None,
                log=print, augment: ColourAugment | None = None, extra_data: dict | None = None,
                init: AnomalyModel | None = None, arch: str = DEFAULT_ARCH) -> AnomalyModel:
    """Train on the split's training cells and calibrate on its calibration cells."""
    train, calibration = split.train, split.calibration
    if grayscale:
        train, calibration = as_grayscale(train), as_grayscale(calibration)
    channels = train.images[0].shape[0]
    arch = ArchConfig(channels=channels, **ARCHS[arch])
    cfg = TrainConfig(**{**TRAIN, **(FINETUNE if init is not None else {}), **(train_overrides or {})})
    name = MODEL_NAME + ("-gray" if grayscale else "")
    labs = ("slide 57546 (Plymouth) and three MalariaNet slides (another lab)" if extra_data
            else "slide 57546 (Plymouth)")
    description = ("Giemsa-stained thin blood films, bright-field " + ("grayscale" if grayscale else "RGB")
                   + f": healthy red blood cells of P. falciparum {labs}; flags dark "
                   "purple stain excess (parasites)")
    model = None
    for event in fit_anomaly_model(train.images, train.masks, name=name, modality=MODALITY,
                                   channel_names=["gray"] if grayscale else RGB_NAMES, arch=arch, cfg=cfg,
                                   cell_diameter_px=CELL_DIAMETER_PX, holdout_fraction=0.0,
                                   score_rule=SCORE_RULE["gray" if grayscale else "rgb"], description=description,
                                   training_data=dict(split.describe(), **(extra_data or {})),
                                   colour_augment=augment, init=init):
        if isinstance(event, Progress):
            if (event.done % 100 == 0 or event.stage == "done") and event.loss is not None:
                log(f"  {event.stage:9s} {event.done:5d}/{event.total} loss {event.loss:8.3f} "
                    f"{event.elapsed_s:6.0f} s", flush=True)
        else:
            model = event
    crops, masks = model_crops(model, calibration)
    model.metadata["calibration"] = calibrate(model, crops, masks)
    model.metadata["training"]["n_held_back"] = len(calibration)
    return model


def _train_one(split: GiemsaSplit, added: dict | None, args, seed: int, aug: bool) -> Path:
    torch.set_num_threads(1)
    init = AnomalyModel.from_file(args.init) if args.init else None
    model = train_model(split, train_overrides={"seed": seed}, augment=ColourAugment() if aug else None,
                        extra_data=added, init=init, log=lambda *a, **k: None, arch=args.arch)
    model.metadata["training"]["command"] = _command(args, seed, aug)
    labs = ("-malarianet" + ("-stain" if args.match_stain else "")) if args.malarianet else ""
    return model.save(args.out_dir / f"giemsa-{args.arch}{labs}-{'aug' if aug else 'noaug'}-s{seed}.safetensors")


def _command(args, seed: int, augment: bool) -> str:
    return "python benchmarks/build/giemsa_model.py" + "".join(
        f" {flag}" for flag, on in (("--grayscale", args.grayscale), ("--augment", augment),
                                    ("--malarianet", args.malarianet), ("--match-stain", args.match_stain),
                                    (f"--seed {seed}", seed != 0),
                                    (f"--init {args.init}", args.init is not None),
                                    (f"--arch {args.arch}", args.arch != DEFAULT_ARCH)) if on)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--out", type=Path, default=None,
                        help="model file (default: the package's giemsa-rbc.safetensors; for --grayscale "
                             "runs/giemsa-gray.safetensors)")
    parser.add_argument("--grayscale", action="store_true", help="build the grayscale comparison model")
    parser.add_argument("--arch", choices=sorted(ARCHS), default=DEFAULT_ARCH,
                        help=f"network architecture (default: {DEFAULT_ARCH}; with --init the base file's is kept)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, nargs="+", default=[TRAIN["seed"]],
                        help="one seed, or several: one model per seed (and per --compare-augment arm) in --out-dir")
    parser.add_argument("--init", type=Path, default=None,
                        help="start from this earlier giemsa-rbc file (the Plymouth-only model) and fine-tune")
    parser.add_argument("--compare-augment", action="store_true",
                        help="with and without augmentation, each seed: models <out-dir>/giemsa-{aug,noaug}-s<seed>")
    parser.add_argument("--out-dir", type=Path, default=REPO / "runs" / "h4" / "models")
    parser.add_argument("--jobs", type=int, default=6, help="models trained at once (several seeds or arms)")
    parser.add_argument("--augment", action="store_true", help="colour/intensity augmentation of the training cells")
    parser.add_argument("--malarianet", action="store_true",
                        help="also learn the healthy cells of three MalariaNet slides (another lab)")
    parser.add_argument("--match-stain", action="store_true",
                        help="with --malarianet: match each MalariaNet field to the Plymouth cells' stain first, "
                             "as detection matches a field to the model's stain")
    parser.add_argument("--cell-cache", type=Path, default=REPO / "runs" / "h4" / "cells",
                        help="folder keeping the MalariaNet fields' found cells between runs")
    args = parser.parse_args(argv)
    if not (len(args.seed) > 1 or args.compare_augment):
        torch.set_num_threads(args.threads)
    out = args.out or (REPO / "runs" / "giemsa-gray.safetensors" if args.grayscale else builtin_model_path(MODEL_NAME))
    started = time.perf_counter()
    split = load_giemsa_split(args.data_root)
    split = GiemsaSplit(split.training_fields, split.validation_fields, with_masks(split.train),
                        with_masks(split.calibration), split.validation)
    added = None
    if args.malarianet and not args.grayscale:
        split, added = add_malarianet(split, args.data_root, args.cell_cache, match_stain=args.match_stain)
    print(f"validation fields {split.validation_fields}; {len(split.train)} training and "
          f"{len(split.calibration)} calibration cells ({time.perf_counter() - started:.0f} s to load)", flush=True)
    if len(args.seed) > 1 or args.compare_augment:
        jobs = [(seed, aug) for seed in args.seed
                for aug in ((True, False) if args.compare_augment else (args.augment,))]
        # the cells are read once; each model trains in a forked process of one thread (the parent
        # has run no torch operation yet, so forking is safe)
        with multiprocessing.get_context("fork").Pool(min(len(jobs), args.jobs)) as pool:
            for path in pool.starmap(_train_one, [(split, added, args, seed, aug) for seed, aug in jobs]):
                print(f"saved {path} after {time.perf_counter() - started:.0f} s", flush=True)
        return 0
    init = AnomalyModel.from_file(args.init) if args.init else None
    args.seed = args.seed[0]
    augment = ColourAugment() if args.augment else None
    model = train_model(split, grayscale=args.grayscale, train_overrides={"seed": args.seed}, augment=augment,
                        extra_data=added, init=init, arch=args.arch)
    validation = with_masks(split.validation)
    model.metadata["metrics"] = validation_metrics(model, as_grayscale(validation) if args.grayscale else validation)
    print("validation fields, per-cell AUROC: " + ", ".join(
        f"{k} {v['auroc']:.3f}" for k, v in model.metadata["metrics"].items() if isinstance(v, dict)))
    model.metadata["training"]["build_seconds"] = round(time.perf_counter() - started, 1)
    model.metadata["training"]["command"] = _command(args, args.seed, args.augment)
    path = model.save(out)
    print(f"saved {path} ({path.stat().st_size / 1e6:.1f} MB) in {time.perf_counter() - started:.0f} s; "
          f"training {model.metadata['training']['seconds']} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
