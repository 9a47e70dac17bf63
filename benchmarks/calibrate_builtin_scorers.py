"""Store healthy calibrations of the seed papers' instant scorers in the built-in fluorescence model.

The cells are the same held-back healthy training cells that calibrate the model's own scorers
(the seeded split of training.fit), so the Detect widget and `supn-anomaly detect --scorer NAME`
can offer reconstruction error, the VAE gradients, combi and the ensemble with a calibrated
threshold. The weights are not touched.

    python benchmarks/calibrate_builtin_scorers.py [--data-root ../shared/data]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
import torch

from napari_supn_anomaly.evaluation.datasets import load_fl_cells
from napari_supn_anomaly.models import builtin_model_path, load_model
from napari_supn_anomaly.pipeline.cell_crops import standardise_crops
from napari_supn_anomaly.scorers import calibrate_scorer
from napari_supn_anomaly.training.fit import split_holdout

SCORERS = ("recon", "grad-kl", "grad-rec", "grad-elbo", "combi", "combi-add", "ensemble")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    args = p.parse_args(argv)
    torch.manual_seed(0)
    model = load_model("fluorescence-rbc")
    cells = load_fl_cells(args.data_root, "train")
    crops, masks, _ = standardise_crops(cells.images, cells.masks, model.crop_size, model.cell_diameter_px,
                                        model.modality, scale=model.metadata["training"]["crop_scale"])
    keep = masks.reshape(len(masks), -1).any(1)
    crops, masks = crops[keep], masks[keep]
    _, hold = split_holdout(len(crops), 0.1, model.metadata["training"]["settings"]["seed"])
    assert len(hold) == model.metadata["training"]["n_held_back"], "the held-back split does not match the build"
    for name in SCORERS:
        entry = calibrate_scorer(name, model, crops[hold], masks[hold])
        print(f"{name}: median healthy score {np.median(entry['healthy_scores']):.4g} on {entry['n_cells']} cells")
    model.save(builtin_model_path("fluorescence-rbc"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
