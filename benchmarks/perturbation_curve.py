"""The MIDL 2022 perturbation figure, remade: summed anomaly score against perturbation strength.

An ellipse (axes 10 and 4 px at 128 x 128, scaled to the crop; centre (60, 60); angle -0.7 rad)
filled with N(0, 0.5^2) noise ("noise-filled") or its distance transform rescaled to [0, 1]
("smooth") is added with strength 0, 1/9, ..., 1 to real healthy validation cells. For each
likelihood (L2, diagonal, SUPN) we plot the mean over cells of log sum_pixels z^2 inside the
cell (z: whitened residual at the encoder mean).

    python benchmarks/perturbation_curve.py --model fluorescence-rbc --out docs/images/perturbation_curve.png
"""
from __future__ import annotations

import argparse
import os
from pathlib import Path

import numpy as np
import torch

from napari_supn_anomaly.evaluation.datasets import load_fl_cells
from napari_supn_anomaly.evaluation.eval_sets import standardise_for, training_crop_scale
from napari_supn_anomaly.evaluation.perturbations import add_ellipses
from napari_supn_anomaly.models import load_model
from napari_supn_anomaly.supn import whitened_residual

LIKELIHOODS = (("l2", "L2 (fixed variance)"), ("diag", "diagonal"), ("supn", "SUPN"))


def summed_scores(model, crops, masks, likelihood):
    x = torch.from_numpy(model.normalise(crops))
    z, _ = whitened_residual(model.net, x, likelihood)
    chi2 = z[0].square().sum(1).numpy()
    return np.array([chi2[i][masks[i]].sum() for i in range(len(crops))])


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default="fluorescence-rbc")
    p.add_argument("--data-root", default=os.environ.get("SUPN_SHARED_DATA", "../shared/data"))
    p.add_argument("--out", default="docs/images/perturbation_curve.png")
    args = p.parse_args()
    torch.set_num_threads(1)
    model = load_model(args.model)
    val = load_fl_cells(Path(args.data_root), "validation")
    healthy = val.subset(np.nonzero(val.labels == 0)[0])
    crops, masks = standardise_for(model, healthy, training_crop_scale(model))
    strengths = np.linspace(0, 1, 10)
    curves = {}
    for kind in ("noise", "smooth"):
        for lik, _ in LIKELIHOODS:
            means, sems = [], []
            for a in strengths:
                pert = add_ellipses(crops, masks, kind, float(a), model.intensity.low, model.intensity.high,
                                    seed=0, random_place=False)
                logs = np.log(summed_scores(model, pert.crops, masks, lik))
                means.append(logs.mean())
                sems.append(logs.std(ddof=1) / np.sqrt(len(logs)))
            curves[(kind, lik)] = (np.array(means), np.array(sems))
            print(f"{kind:>6} {lik:>4}: " + " ".join(f"{m:.3f}" for m in means))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), dpi=120)
    for ax, kind, title in zip(axes, ("noise", "smooth"), ("noise-filled ellipse", "smooth ellipse")):
        for lik, label in LIKELIHOODS:
            m, s = curves[(kind, lik)]
            ax.plot(strengths, m - m[0], marker="o", ms=3, label=label)
            ax.fill_between(strengths, m - m[0] - s, m - m[0] + s, alpha=0.2)
        ax.set_title(f"{title} ({len(crops)} healthy cells)", fontsize=10)
        ax.set_xlabel("perturbation strength")
        ax.set_ylabel("log summed z$^2$ in the cell, minus strength 0")
        ax.legend(fontsize=8)
    fig.suptitle(f"Anomaly score against perturbation strength, model {model.name}", fontsize=10)
    fig.tight_layout()
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
