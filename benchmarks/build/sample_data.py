"""Regenerate the synthetic example images shipped in src/napari_supn_anomaly/sample_data/.

    python benchmarks/build/sample_data.py

Deterministic (fixed seeds); the files stay small (uint8, zlib-compressed, < 5 MB in all).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import tifffile

from napari_supn_anomaly.sample_data import SAMPLES, sample_folder
from napari_supn_anomaly.synthetic import make_field, make_stack

SETTINGS = {
    # key: (planes, shape, cell diameter px, seed, infected fraction)
    "fluorescence": (4, (512, 512), 40.0, 11, 0.2),
    "giemsa": (2, (512, 512), 48.0, 12, 0.3),  # 2 fields: enough cells (84) to calibrate on the slide
    "brightfield": (1, (512, 512), 36.0, 13, 0.3),
}


def write(key: str, out: Path) -> list[Path]:
    stem, axes, modality, _ = SAMPLES[key]
    planes, shape, diameter, seed, infected = SETTINGS[key]
    fields = make_stack(planes, shape, modality, seed=seed, cell_diameter=diameter, infected_fraction=infected) \
        if planes > 1 else [make_field(shape, modality, cell_diameter=diameter, infected_fraction=infected, seed=seed)]
    squeeze = (lambda a: a) if planes > 1 else (lambda a: a[0])
    image = squeeze(np.stack([f.image for f in fields]))
    cells = squeeze(np.stack([f.cells for f in fields])).astype(np.uint16)
    parasites = squeeze(np.stack([f.parasites for f in fields])).astype(np.uint16)
    description = f"napari-supn-anomaly synthetic sample; modality={modality} axes={axes} cell_diameter_px={diameter} seed={seed}"
    paths = [out / f"{stem}.tif", out / f"{stem}_cells.tif", out / f"{stem}_parasites.tif"]
    tifffile.imwrite(paths[0], image, compression="zlib", description=description,
                     photometric="rgb" if axes.endswith("S") else "minisblack")
    for path, labels in zip(paths[1:], (cells, parasites)):
        tifffile.imwrite(path, labels, compression="zlib", description=description)
    n_par = sum(int(f.parasites.max()) for f in fields)
    n_cells = sum(int(f.cells.max()) for f in fields)
    print(f"{key}: {image.shape} {n_cells} cells, {n_par} parasites -> {paths[0].name}")
    return paths


def main():
    out = sample_folder()
    total = 0
    for key in SETTINGS:
        total += sum(p.stat().st_size for p in write(key, out))
    print(f"total {total / 1e6:.2f} MB in {out}")


if __name__ == "__main__":
    main()
