"""Whole stained fields from other labs, with their cells found by the package's own segmenter.

* ``malarianet_giemsa_fields``: 9 slides of another lab, a mask of every parasite. A found cell
  is infected when it holds more of a parasite's mask than any other cell does, at least
  ``INFECTED_MIN_PX`` pixels (the parasite's cell); it is healthy when no parasite pixel lies within
  ``HEALTHY_MARGIN_PX`` of it. A neighbour that a mask only touches is neither: the masks are drawn
  generously, and until 2026-12-03 such a neighbour (a third of the "infected" cells on
  Trip_038/062/083) counted as infected, which rewarded a map that spilled from cell to cell.
* ``chula_rbc_fields``: uninfected smears of a third lab: every found cell is healthy.

Cells are found exactly as detection finds them by default (``cells.segment_cells`` with the
model's modality, the diameter measured, edge cells left out), so what is measured here is what
a user gets, cells missed included.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from ..cells import median_cell_diameter, segment_cells
from ..cells.hull import solidity
from ..errors import InputError
from ..supn.stain_saturation import saturation_map as hsv_saturation
from .datasets import read_image

MALARIANET = "malarianet_giemsa_fields"
CHULA = "chula_rbc_fields"
STAINED = "brightfield-stained"
INFECTED_MIN_PX = 10
HEALTHY_MARGIN_PX = 5


@dataclass
class StainedField:
    name: str
    slide: str
    image: np.ndarray               # [3, H, W] float32, 0-255
    parasites: np.ndarray | None    # [H, W] bool (MalariaNet), None where there are none (Chula)


@dataclass
class FoundCells:
    labels: np.ndarray       # [H, W] int32, 0 = background
    diameter_px: float
    ids: np.ndarray          # ids of the cells
    infected: np.ndarray     # [n] bool: the cell holds the most of some parasite's mask (>= INFECTED_MIN_PX)
    healthy: np.ndarray      # [n] bool: no parasite pixel within HEALTHY_MARGIN_PX of the cell


def malarianet_slide(name: str) -> str:
    """The slide of a MalariaNet field: the part of its name before ``_Image``."""
    return name.split("_Image")[0]


def malarianet_slides(data_root: Path) -> dict[str, list[str]]:
    """Slide -> its field names (sorted)."""
    out: dict[str, list[str]] = {}
    for p in sorted((Path(data_root) / MALARIANET / "images").glob("*.jpg")):
        out.setdefault(malarianet_slide(p.stem), []).append(p.stem)
    if not out:
        raise FileNotFoundError(f"no MalariaNet fields under {Path(data_root) / MALARIANET}")
    return out


def load_malarianet_fields(data_root: Path, slides: list[str]) -> list[StainedField]:
    root = Path(data_root) / MALARIANET
    fields = []
    for slide in slides:
        for name in malarianet_slides(data_root)[slide]:
            mask = read_image(root / "masks" / f"{name}.png")[0] > 127
            fields.append(StainedField(name, slide, read_image(root / "images" / f"{name}.jpg", rgb=True), mask))
    return fields


def chula_field_names(data_root: Path, n: int | None = None, seed: int = 0) -> list[str]:
    """Field names of ``chula_rbc_fields`` (a seeded draw of ``n`` of them, or all)."""
    names = sorted(p.stem for p in (Path(data_root) / CHULA / "images").glob("*.jpg"))
    if not names:
        raise FileNotFoundError(f"no Chula fields under {Path(data_root) / CHULA}")
    return sorted(random.Random(seed).sample(names, n)) if n is not None and n < len(names) else names


def load_chula_fields(data_root: Path, names: list[str]) -> list[StainedField]:
    root = Path(data_root) / CHULA / "images"
    return [StainedField(n, "chula", read_image(root / f"{n}.jpg", rgb=True), None) for n in names]


def find_cells(field: StainedField, modality: str = STAINED, cache: Path | None = None) -> FoundCells:
    """The package's default cell finding on one field, and which cells are infected / healthy.

    ``cache``: a folder keeping each field's labels (``<name>.npz``), since finding the cells of a
    large field takes seconds; empty it when the cell finder changes.
    """
    path = None if cache is None else Path(cache) / f"{field.slide}__{field.name}.npz"
    if path is not None and path.exists():
        labels = np.load(path)["labels"]
    else:
        try:
            labels = segment_cells(field.image, modality).labels
        except InputError:  # no cells found: every parasite of the field is missed
            labels = np.zeros(field.image.shape[1:], np.int32)
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            np.savez_compressed(path, labels=labels.astype(np.int32))
    ids = np.unique(labels)
    ids = ids[ids > 0]
    diameter = median_cell_diameter(labels) if len(ids) else float("nan")
    if field.parasites is None:
        return FoundCells(labels, diameter, ids, np.zeros(len(ids), bool), np.ones(len(ids), bool))
    n_max = int(labels.max()) + 1
    near = ndi.binary_dilation(field.parasites, iterations=HEALTHY_MARGIN_PX)
    touched = np.bincount(labels[near], minlength=n_max)
    return FoundCells(labels, diameter, ids, parasites_cells(field.parasites, labels)[ids], touched[ids] == 0)


def parasites_cells(parasites: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """[max label + 1] bool: the cell holding the most of each parasite's mask (a connected part),
    when that is at least ``INFECTED_MIN_PX`` pixels."""
    n_max = int(labels.max()) + 1
    comps, n = ndi.label(parasites)
    out = np.zeros(n_max, bool)
    inside = (comps > 0) & (labels > 0)
    if n == 0 or not inside.any():
        return out
    held = np.bincount(comps[inside].astype(np.int64) * n_max + labels[inside], minlength=(n + 1) * n_max)
    held = held.reshape(n + 1, n_max)[1:]
    best = held.argmax(1)
    out[best[held[np.arange(n), best] >= INFECTED_MIN_PX]] = True
    return out


def saturation_map(image: np.ndarray) -> np.ndarray:
    """HSV saturation of an RGB image [3, H, W] (the hand-made stain map)."""
    return hsv_saturation(np.asarray(image, np.float32))


def healthy_cell_crops(field: StainedField, cells: FoundCells, target_diameter: float,
                       size_range: tuple[float, float] = (0.75, 1.3), min_solidity: float = 0.9,
                       context: float = 1.6) -> list[tuple[np.ndarray, np.ndarray]]:
    """(crop [3, h, w], cell mask [h, w]) of the field's plausible healthy cells, rescaled so the
    cell is ``target_diameter`` px wide (a model's training scale): whole, convex-ish cells of
    about the field's typical size, no parasite pixel near them. Neighbours stay in the crop, as
    they do when detection cuts a field."""
    from skimage import measure, transform

    out = []
    h, w = cells.labels.shape
    for region in measure.regionprops(cells.labels):
        k = int(np.searchsorted(cells.ids, region.label))
        if k >= len(cells.ids) or cells.ids[k] != region.label or not cells.healthy[k]:
            continue
        d = region.equivalent_diameter_area
        if not size_range[0] <= d / cells.diameter_px <= size_range[1] or solidity(region.image) < min_solidity:
            continue
        cy, cx = region.centroid
        half = int(np.ceil(context * d / 2))
        y0, x0, y1, x1 = int(cy) - half, int(cx) - half, int(cy) + half, int(cx) + half
        if y0 < 0 or x0 < 0 or y1 > h or x1 > w:
            continue
        crop = field.image[:, y0:y1, x0:x1]
        mask = cells.labels[y0:y1, x0:x1] == region.label
        scale = target_diameter / d
        size = max(8, round(crop.shape[1] * scale))
        crop = transform.resize(crop.transpose(1, 2, 0), (size, size), order=1, preserve_range=True,
                                anti_aliasing=scale < 1).transpose(2, 0, 1).astype(np.float32)
        mask = transform.resize(mask.astype(np.float32), (size, size), order=1) > 0.5
        out.append((crop, mask))
    return out
