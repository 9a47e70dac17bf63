"""Compare the synthetic fluorescence cells with the real ones in supn_fl_cells/validation.

    python benchmarks/match_synthetic_fluorescence.py [--data ../shared/data] [--fields 8]

The statistic is the one of the hand-made spot detector in ../shared/TARGETS.md: per cell, the
maximum of ``gaussian(x, 1) - gaussian(x, 4)`` (8-bit grey levels) inside the cell mask, with
every cell rescaled to a 40 px diameter. It prints the 10/25/50/75/90% quantiles of healthy and
infected cells, real and synthetic, and the share of real infected cells whose statistic lies
below the healthy cells' 90% quantile (infected cells without a visible spot).
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np
from skimage import transform
from skimage.filters import gaussian

from napari_supn_anomaly.evaluation.datasets import load_fl_cells
from napari_supn_anomaly.synthetic import make_field

QUANTILES = (10, 25, 50, 75, 90)
DIAMETER = 40.0


def spot_statistic(image: np.ndarray, mask: np.ndarray) -> float:
    image = image.astype(np.float64)
    dog = gaussian(image, 1, preserve_range=True) - gaussian(image, 4, preserve_range=True)
    return float(dog[mask].max())


def real_statistics(data: Path) -> tuple[np.ndarray, np.ndarray]:
    val = load_fl_cells(data, "validation")
    values = []
    for image, mask in zip(val.images, val.masks):
        image = image if image.ndim == 2 else image[0]
        diameter = 2 * np.sqrt(mask.sum() / np.pi)
        scale = DIAMETER / diameter
        shape = tuple(max(8, int(round(s * scale))) for s in image.shape)
        small = transform.resize(image.astype(np.float64), shape, order=1, preserve_range=True, anti_aliasing=True)
        small_mask = transform.resize(mask.astype(float), shape, order=0) > 0.5
        values.append(spot_statistic(small, small_mask))
    values = np.asarray(values)
    return values[val.labels == 0], values[val.labels == 1]


def synthetic_statistics(n_fields: int, seed: int = 100) -> tuple[np.ndarray, np.ndarray]:
    healthy, infected = [], []
    for k in range(n_fields):
        f = make_field((512, 512), "fluorescence", DIAMETER, infected_fraction=0.3, seed=seed + k)
        image = f.image.astype(np.float64)
        dog = gaussian(image, 1, preserve_range=True) - gaussian(image, 4, preserve_range=True)
        edge = np.unique(np.concatenate([f.cells[0], f.cells[-1], f.cells[:, 0], f.cells[:, -1]]))
        for cid in range(1, int(f.cells.max()) + 1):
            if cid in edge:
                continue
            value = float(dog[f.cells == cid].max())
            (infected if cid in f.infected else healthy).append(value)
    return np.asarray(healthy), np.asarray(infected)


def row(name: str, values: np.ndarray) -> str:
    q = np.percentile(values, QUANTILES)
    return f"| {name} | {len(values)} | " + " | ".join(f"{v:.0f}" for v in q) + " |"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default=str(Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    p.add_argument("--fields", type=int, default=8, help="synthetic 512x512 fields to draw")
    args = p.parse_args(argv)
    real_h, real_i = real_statistics(Path(args.data))
    syn_h, syn_i = synthetic_statistics(args.fields)
    print("| cells | n | " + " | ".join(f"{q}%" for q in QUANTILES) + " |")
    print("| --- | ---: | " + " | ".join("---:" for _ in QUANTILES) + " |")
    for name, values in (("real healthy", real_h), ("synthetic healthy", syn_h),
                         ("real infected", real_i), ("synthetic infected", syn_i)):
        print(row(name, values))
    cut = np.percentile(real_h, 90)
    visible = real_i[real_i > cut]
    print(f"\nreal infected cells above the healthy 90% quantile ({cut:.0f}): {len(visible)}/{len(real_i)}; "
          f"their quantiles: " + ", ".join(f"{v:.0f}" for v in np.percentile(visible, QUANTILES)))
    syn_visible = syn_i[syn_i > np.percentile(syn_h, 90)]
    print(f"synthetic infected cells above the synthetic healthy 90% quantile: {len(syn_visible)}/{len(syn_i)}; "
          f"their quantiles: " + ", ".join(f"{v:.0f}" for v in np.percentile(syn_visible, QUANTILES)))


if __name__ == "__main__":
    main()
