"""Store healthy calibrations of the seed papers' scorers in the built-in models.

The cells are the same held-back healthy training cells that calibrate each model's own scorers:
for ``fluorescence-rbc`` the seeded split of training.fit (10% of supn_fl_cells/healthy_train),
for ``giemsa-rbc`` the seeded tenth of its training fields' healthy cells that
benchmarks/build/giemsa_model.py held back (both splits are reproduced by
napari_supn_anomaly.evaluation.builtin_splits). So the Detect widget and `supn-anomaly detect
--scorer NAME` can offer reconstruction error, the VAE gradients, combi, the ensemble (and, for
fluorescence, the energy projection; for giemsa-rbc, supn+saturation) with a calibrated threshold.
The weights are not touched.

    python benchmarks/build/scorer_calibrations.py [--data-root ../shared/data] [--models fluorescence-rbc,giemsa-rbc]
        [--no-projection] [--scorers supn+saturation]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from napari_supn_anomaly.evaluation.builtin_splits import (
    fluorescence_split,
    giemsa_held_back,
)
from napari_supn_anomaly.models import AnomalyModel, builtin_model_path, load_model
from napari_supn_anomaly.scoring import calibrate as calibrate_scorer
from napari_supn_anomaly.scoring import resolve
from napari_supn_anomaly.scoring.networks import shipped_network_path
from napari_supn_anomaly.scoring.registry import SUPN_SATURATION

INSTANT_SCORERS = ("recon", "grad-kl", "grad-rec", "grad-elbo", "combi", "combi-add", "ensemble")
DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data"


def calibrate(model: AnomalyModel, crops, masks, names, log=print) -> dict:
    seconds = {}
    for name in names:
        started = time.perf_counter()
        entry = calibrate_scorer(resolve(model, name, require_calibration=False), crops, masks)
        seconds[name] = time.perf_counter() - started
        log(f"{model.name} {name}: median healthy score {np.median(entry.healthy_scores):.4g} on "
            f"{entry.n_cells} cells ({seconds[name]:.1f} s, load {os.getloadavg()[0]:.2f})")
    return seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    p.add_argument("--models", default="fluorescence-rbc,giemsa-rbc")
    p.add_argument("--no-projection", action="store_true", help="skip the slow energy projection (fluorescence)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--scorers", default="", help="only these scorers (comma-separated), e.g. after one's settings changed")
    p.add_argument("--cell-cache", type=Path, default=Path(__file__).resolve().parents[2] / "runs" / "h4" / "cells",
                   help="found cells of the MalariaNet fields (giemsa-rbc learns some MalariaNet slides)")
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
            crops, masks = giemsa_held_back(model, args.data_root, cache=args.cell_cache)
            names = INSTANT_SCORERS + (SUPN_SATURATION,) + tuple(
                n for n in ("ssl-ppii",) if shipped_network_path(model, n) is not None)
        else:
            raise SystemExit(f"no held-back split known for {name!r}")
        only = [n.strip() for n in args.scorers.split(",") if n.strip()]
        calibrate(model, crops, masks, [n for n in names if n in only] if only else names)
        model.save(builtin_model_path(name))
    print(f"load average at the end: {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
