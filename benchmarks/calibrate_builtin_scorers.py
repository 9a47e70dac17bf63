"""Store healthy calibrations of the seed papers' scorers in the built-in models.

The cells are the same held-back healthy training cells that calibrate each model's own scorers:
for ``fluorescence-rbc`` the seeded split of training.fit (10% of supn_fl_cells/healthy_train),
for ``giemsa-rbc`` the seeded tenth of its training fields' healthy cells that
benchmarks/build_giemsa_model.py held back. So the Detect widget and `supn-anomaly detect
--scorer NAME` can offer reconstruction error, the VAE gradients, combi, the ensemble (and, for
fluorescence, the energy projection) with a calibrated threshold. The weights are not touched.

    python benchmarks/calibrate_builtin_scorers.py [--data-root ../shared/data] [--models fluorescence-rbc,giemsa-rbc]
        [--no-projection]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_supn_anomaly.evaluation.datasets import load_fl_cells
from napari_supn_anomaly.models import AnomalyModel, builtin_model_path, load_model
from napari_supn_anomaly.pipeline.cell_crops import standardise_crops
from napari_supn_anomaly.scorers import calibrate_scorer
from napari_supn_anomaly.training.fit import split_holdout

INSTANT_SCORERS = ("recon", "grad-kl", "grad-rec", "grad-elbo", "combi", "combi-add", "ensemble")
DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data"


def fluorescence_split(model: AnomalyModel, data_root: Path):
    """((train crops, masks), (held-back crops, masks)) of fluorescence-rbc, exactly as it was built."""
    cells = load_fl_cells(data_root, "train")
    crops, masks, _ = standardise_crops(cells.images, cells.masks, model.crop_size, model.cell_diameter_px,
                                        model.modality, scale=model.metadata["training"]["crop_scale"])
    keep = masks.reshape(len(masks), -1).any(1)
    crops, masks = crops[keep], masks[keep]
    train, hold = split_holdout(len(crops), 0.1, model.metadata["training"]["settings"]["seed"])
    assert len(hold) == model.metadata["training"]["n_held_back"], "the held-back split does not match the build"
    return (crops[train], masks[train]), (crops[hold], masks[hold])


def giemsa_split(model: AnomalyModel, data_root: Path):
    """((train crops, masks), (held-back crops, masks)) of giemsa-rbc, from its build script's own split."""
    build, split = _checked_giemsa_split(model, data_root)
    return build.model_crops(model, build.with_masks(split.train)), giemsa_held_back(model, data_root, (build, split))


def giemsa_held_back(model: AnomalyModel, data_root: Path, checked=None):
    """The healthy calibration cells of giemsa-rbc, from its build script's own split."""
    build, split = checked or _checked_giemsa_split(model, data_root)
    crops, masks = build.model_crops(model, build.with_masks(split.calibration))
    assert len(crops) == model.metadata["training"]["n_held_back"], "the held-back split does not match the build"
    return crops, masks


def _checked_giemsa_split(model: AnomalyModel, data_root: Path):
    build = _giemsa_build()
    split = build.load_split(data_root)
    assert split.validation_fields == model.metadata["training"]["data"]["validation_fields"], \
        "the Giemsa field split does not match the build"
    return build, split


def _giemsa_build():
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    import build_giemsa_model

    return build_giemsa_model


def calibrate(model: AnomalyModel, crops, masks, names, log=print) -> dict:
    seconds = {}
    for name in names:
        started = time.perf_counter()
        entry = calibrate_scorer(name, model, crops, masks)
        seconds[name] = time.perf_counter() - started
        log(f"{model.name} {name}: median healthy score {np.median(entry['healthy_scores']):.4g} on "
            f"{entry['n_cells']} cells ({seconds[name]:.1f} s, load {os.getloadavg()[0]:.2f})")
    return seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    p.add_argument("--models", default="fluorescence-rbc,giemsa-rbc")
    p.add_argument("--no-projection", action="store_true", help="skip the slow energy projection (fluorescence)")
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    print(f"load average at the start: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for name in [m.strip() for m in args.models.split(",") if m.strip()]:
        model = load_model(name)
        if name == "fluorescence-rbc":
            _, (crops, masks) = fluorescence_split(model, args.data_root)
            names = INSTANT_SCORERS + (() if args.no_projection else ("projection",))
        elif name == "giemsa-rbc":
            crops, masks = giemsa_held_back(model, args.data_root)
            names = INSTANT_SCORERS
        else:
            raise SystemExit(f"no held-back split known for {name!r}")
        calibrate(model, crops, masks, names)
        model.save(builtin_model_path(name))
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
