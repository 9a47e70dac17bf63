"""Regenerate the example images shipped in src/napari_supn_anomaly/sample_data/.

    python benchmarks/build/sample_data.py [--data-root ../shared/data]

The fluorescence and unstained bright-field samples are synthetic
(:mod:`napari_supn_anomaly.synthetic`). The Giemsa sample is composed of real cells: crops of
``plymouth_pf_giemsa_cells`` from the fields ``giemsa-rbc`` never trained on (its validation
fields), healthy and infected, each cell cut out along its mask with its halo and laid on glass of
the colour a model's stain measures on these crops. A synthetic Giemsa field did not do: `giemsa-rbc` found its drawn healthy cells unusual
(docs/benchmarks/sensitivity.md). Deterministic (fixed seeds); the files stay small (uint8,
zlib-compressed, < 5 MB in all).
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from scipy import ndimage as ndi

from napari_supn_anomaly.cells.crops import find_cell_mask
from napari_supn_anomaly.cells.measure import equivalent_diameter
from napari_supn_anomaly.evaluation.builtin_splits import giemsa_validation_fields
from napari_supn_anomaly.evaluation.datasets import load_giemsa_cells
from napari_supn_anomaly.models.data_range import MIN_CROP_STAIN_PIXELS, measure_stain
from napari_supn_anomaly.sample_data import SAMPLES, sample_folder, truth_path
from napari_supn_anomaly.synthetic import make_field, make_stack

REPO = Path(__file__).resolve().parents[2]
SETTINGS = {
    # key: (planes, shape, cell diameter px, seed, infected fraction); the Giemsa sample's diameter is
    # measured on its cells
    "fluorescence": (4, (512, 512), 40.0, 11, 0.2),
    "giemsa": (2, (640, 640), None, 12, 0.1),  # 2 fields of one slide: about 100 cells, enough to calibrate on
    "brightfield": (1, (512, 512), 36.0, 13, 0.3),
}
CROP_SIDE = 80      # the dataset's whole crops (cells cut by their field's edge are smaller and left out)
FEATHER = 4         # pixels beyond a crop's cell mask pasted with falling weight: the cell keeps its own rim
                    # and halo (with them cut off, 10 of 76 healthy cells were flagged at 5% instead of 5)
PLACING_TRIES = 4000


@dataclass
class ComposedField:
    image: np.ndarray     # [Y, X, 3] uint8
    cells: np.ndarray     # [Y, X] a label per cell
    infected: np.ndarray  # [Y, X] the infected cells' labels (the dataset marks cells, not parasites)
    diameter: float       # the cells' median equivalent diameter, px


def _glass(crop: np.ndarray, mask: np.ndarray) -> np.ndarray | None:
    """The crop's glass colour [3], measured as a model's stain is measured on its training crops
    (so the composed field's glass is the model's own), or None when it cannot be."""
    stain = measure_stain(crop, mask, MIN_CROP_STAIN_PIXELS)
    return None if stain is None else np.asarray(stain.background, np.float32)


def compose_giemsa(data_root: Path, planes: int = 2, shape=(640, 640), seed: int = 12,
                   infected_share: float = 0.1) -> list[ComposedField]:
    """Fields of real Giemsa-stained cells of slide 57546's validation fields, each crop used once,
    turned and flipped at random, laid without overlap (touching at most) on glass with the crops'
    own noise; about ``infected_share`` of them infected."""
    data = load_giemsa_cells(data_root, fields=giemsa_validation_fields(data_root))
    whole = np.array([im.shape[1:] == (CROP_SIDE, CROP_SIDE) for im in data.images])
    rng = np.random.default_rng(seed)
    pools = {flag: list(rng.permutation(np.flatnonzero(whole & (data.labels == flag)))) for flag in (0, 1)}
    masks: dict[int, np.ndarray] = {}

    def mask_of(i: int) -> np.ndarray:
        if i not in masks:
            masks[i] = find_cell_mask(data.images[i], "brightfield-stained")
        return masks[i]

    sample = [int(i) for i in pools[0][:200]]
    glass = np.median([g for i in sample if (g := _glass(data.images[i], mask_of(i))) is not None], axis=0)
    noise = np.median([data.images[i][:, :8, :8].reshape(3, -1).std(1) for i in sample], axis=0)
    planes_made, diameters = [], []
    for _ in range(planes):
        image = rng.normal(glass, noise, (*shape, 3)).astype(np.float32)
        cells = np.zeros(shape, np.int32)
        infected = np.zeros(shape, np.int32)
        taken = np.zeros(shape, bool)
        for _ in range(PLACING_TRIES):
            flag = int(rng.random() < infected_share)
            if not pools[flag]:
                continue
            i = int(pools[flag][-1])
            crop, mask = data.images[i], mask_of(i)
            own_glass = _glass(crop, mask) if mask.any() else None
            if own_glass is None or mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any():
                pools[flag].pop()  # no cell found, or the cell runs off its crop: not a whole cell
                continue
            turn, flip = int(rng.integers(4)), bool(rng.integers(2))
            crop, mask = np.rot90(crop, turn, axes=(1, 2)), np.rot90(mask, turn)
            if flip:
                crop, mask = crop[:, :, ::-1], mask[:, ::-1]
            reach = ndi.binary_dilation(mask, iterations=FEATHER)
            y0 = int(rng.integers(0, shape[0] - CROP_SIDE + 1))
            x0 = int(rng.integers(0, shape[1] - CROP_SIDE + 1))
            window = (slice(y0, y0 + CROP_SIDE), slice(x0, x0 + CROP_SIDE))
            if (taken[window] & reach).any():
                continue
            pools[flag].pop()
            alpha = np.clip(1.0 - ndi.distance_transform_edt(~mask) / (FEATHER + 1), 0.0, 1.0)[..., None]
            cell = np.moveaxis(crop, 0, -1) + (glass - own_glass)
            image[window] = alpha * cell + (1.0 - alpha) * image[window]
            taken[window] |= reach
            cells[window][mask] = int(cells.max()) + 1
            if flag:  # the truth labels infected cells 1..n, as parasites are in the synthetic samples
                infected[window][mask] = int(infected.max()) + 1
            diameters.append(equivalent_diameter(mask))
        planes_made.append((np.clip(np.round(image), 0, 255).astype(np.uint8), cells, infected))
    diameter = float(np.median(diameters))
    return [ComposedField(image, cells, infected, diameter) for image, cells, infected in planes_made]


def _layers_of(key: str, data_root: Path):
    """(images, cell labels, truth labels, cell diameter, what kind of sample, where its cells come from)."""
    _, _, modality, _, _ = SAMPLES[key]
    planes, shape, diameter, seed, infected = SETTINGS[key]
    if key == "giemsa":
        composed = compose_giemsa(data_root, planes, shape, seed, infected)
        return ([f.image for f in composed], [f.cells for f in composed], [f.infected for f in composed],
                round(composed[0].diameter, 1), "real-cell", "; cells of plymouth_pf_giemsa_cells (slide 57546, "
                f"fields {' '.join(giemsa_validation_fields(data_root))}; MIT licence, Samuel Westlake 2017)")
    fields = make_stack(planes, shape, modality, seed=seed, cell_diameter=diameter, infected_fraction=infected) \
        if planes > 1 else [make_field(shape, modality, cell_diameter=diameter, infected_fraction=infected, seed=seed)]
    return [f.image for f in fields], [f.cells for f in fields], [f.parasites for f in fields], diameter, "synthetic", ""


def write(key: str, out: Path, data_root: Path) -> list[Path]:
    stem, axes, modality, _, truth_kind = SAMPLES[key]
    planes, *_, seed, _ = SETTINGS[key]
    images, cells, truth, diameter, kind, origin = _layers_of(key, data_root)
    squeeze = (lambda a: a) if planes > 1 else (lambda a: a[0])
    image = squeeze(np.stack(images))
    description = (f"napari-supn-anomaly {kind} sample; modality={modality} axes={axes} cell_diameter_px={diameter} "
                   f"seed={seed}{origin}")
    paths = [out / f"{stem}.tif", out / f"{stem}_cells.tif", truth_path(out, key)]
    tifffile.imwrite(paths[0], image, compression="zlib", description=description,
                     photometric="rgb" if axes.endswith("S") else "minisblack")
    for path, labels in zip(paths[1:], (cells, truth)):
        tifffile.imwrite(path, squeeze(np.stack(labels)).astype(np.uint16), compression="zlib", description=description)
    n_truth = sum(len(np.unique(t)) - 1 for t in truth)
    n_cells = sum(int(c.max()) for c in cells)
    print(f"{key}: {image.shape} {n_cells} cells, {n_truth} {truth_kind} -> {paths[0].name}")
    return paths


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    args = parser.parse_args(argv)
    if not (args.data_root / "plymouth_pf_giemsa_cells").exists():
        print(f"the Giemsa sample is made of cells of {args.data_root / 'plymouth_pf_giemsa_cells'}, "
              "which is missing", flush=True)
        return 2
    out = sample_folder()
    total = 0
    for key in SETTINGS:
        total += sum(p.stat().st_size for p in write(key, out, args.data_root))
    print(f"total {total / 1e6:.2f} MB in {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
