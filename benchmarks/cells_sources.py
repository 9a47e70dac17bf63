"""The labelled fields the cell benchmark reads from ../shared/data, one loader per source.

Each field carries its plane [C, Y, X] float32, the model modality it is read as, the centres of
its labelled red cells, where its infected cells or parasites are, and the centres of labelled
objects that are not red cells (Remoscope wbc / misc boxes).
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import imageio.v3 as iio
import numpy as np
from scipy import ndimage as ndi

from napari_supn_anomaly.evaluation.datasets import load_remoscope_fields

# the sources' red-cell diameters in pixels, for "inside the field" (a labelled centre at least
# half a cell from the edge) and for matching pieces to cells; measured on the labels (Remoscope
# boxes, supn_fl_cells masks) or by hand on a few fields (Chula). MalariaNet: the median
# equivalent diameter of the 439 isolated round cells (solidity >= 0.95, axes ratio < 1.2, not
# touching the edge) of a plain Otsu threshold of all 64 fields' grey levels, 116 px (quartiles
# 110 and 122; per slide 102 to 126); until 2026-11-29 evening 90 px, set by hand on a few fields,
# which made a single large cell (over 127 px) count as a clump of two
MALARIANET_EARLIER_DIAMETER = 90.0
SOURCE_DIAMETER = {"chula_rbc_fields": 42.0, "malarianet_giemsa_fields": 115.0,
                   "remoscope_pf_unstained": 40.0, "composed_fluorescence": 70.0}
MODALITY = {"chula_rbc_fields": "brightfield-stained", "malarianet_giemsa_fields": "brightfield-stained",
            "remoscope_pf_unstained": "brightfield", "composed_fluorescence": "fluorescence"}
SOURCES = tuple(MODALITY)
FRAGMENT_SHARE = 0.35  # composed fluorescence: crops whose cell is smaller than this share of the median are left out


@dataclass
class BenchField:
    source: str
    name: str
    plane: np.ndarray                  # [C, Y, X] float32
    cells: np.ndarray                  # [N, 2] (y, x) labelled red-cell centres (empty: not labelled)
    infected: np.ndarray | None = None  # [K, 2] infected-cell centres (Remoscope, composed fluorescence)
    parasites: np.ndarray | None = None  # [Y, X] int parasite components (MalariaNet)
    not_cells: np.ndarray = field(default_factory=lambda: np.zeros((0, 2)))  # wbc / misc centres

    @property
    def modality(self) -> str:
        return MODALITY[self.source]

    @property
    def megapixels(self) -> float:
        return self.plane.shape[1] * self.plane.shape[2] / 1e6


def _rgb(path: Path) -> np.ndarray:
    return np.moveaxis(iio.imread(path)[..., :3].astype(np.float32), -1, 0)


def chula(root: Path, every: int = 1) -> list[BenchField]:
    folder = root / "chula_rbc_fields"
    out = []
    for img in sorted((folder / "images").glob("*.jpg"), key=lambda p: int(p.stem))[::every]:
        with open(folder / "cells" / f"{img.stem}.csv") as f:
            rows = list(csv.DictReader(f))
        centres = np.array([[float(r["y"]), float(r["x"])] for r in rows]).reshape(-1, 2)
        out.append(BenchField("chula_rbc_fields", img.stem, _rgb(img), centres))
    return out


def malarianet(root: Path, every: int = 1) -> list[BenchField]:
    folder = root / "malarianet_giemsa_fields"
    out = []
    for img in sorted((folder / "images").glob("*.jpg"))[::every]:
        mask = iio.imread(folder / "masks" / f"{img.stem}.png") > 127
        if mask.ndim == 3:
            mask = mask[..., 0]
        parasites, _ = ndi.label(mask, structure=np.ones((3, 3)))
        out.append(BenchField("malarianet_giemsa_fields", img.stem, _rgb(img), np.zeros((0, 2)),
                              parasites=parasites))
    return out


def remoscope(root: Path, every: int = 1) -> list[BenchField]:
    out = []
    for f in load_remoscope_fields(root)[::every]:
        def centres(boxes):
            return np.array([[(b.y0 + b.y1) / 2, (b.x0 + b.x1) / 2] for b in boxes]).reshape(-1, 2)
        cells = [b for b in f.boxes if b.cls not in ("wbc", "misc")]
        out.append(BenchField("remoscope_pf_unstained", f.name, f.image[None].astype(np.float32), centres(cells),
                              infected=centres([b for b in cells if b.infected]),
                              not_cells=centres([b for b in f.boxes if b.cls in ("wbc", "misc")])))
    return out


def deepest_point(mask: np.ndarray) -> tuple[int, int]:
    """The (y, x) of a mask's pixel farthest from its outline (a crescent's centroid lies off it)."""
    depth = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
    return np.unravel_index(int(depth.argmax()), mask.shape)


def _fl_crops(root: Path, sub: str):
    folder = root / "supn_fl_cells" / sub
    for p in sorted((folder / "raw").glob("*.png")):
        yield iio.imread(p).astype(np.float32), iio.imread(folder / "mask" / p.name) > 0


def composed_fluorescence(root: Path, n_fields: int = 8, shape=(768, 768), seed: int = 0,
                          match_background: bool = True) -> list[BenchField]:
    """Fields composed from real supn_fl_cells cells: each cell's masked pixels (healthy training
    crops, and the 50 infected validation crops; fragments under ``FRAGMENT_SHARE`` of the median
    cell left out) pasted at random, touching and overlapping their neighbours (light adding up
    where they overlap) and cut by the field's edge, on a dark background with the crops' noise. Each cell
    is shifted by the difference between the field's background and its own crop's background, so
    it keeps the contrast it had in its own image (until 2026-11-29 evening cells were pasted
    unshifted, ``match_background=False``, and some were darker than the field's background)."""
    rng = np.random.default_rng(seed)
    healthy = list(_fl_crops(root, "healthy_train"))
    infected = list(_fl_crops(root, "validation/infected"))
    background = np.median([np.median(c[~m]) for c, m in healthy[:200]])
    noise = np.median([np.std(c[:12, :12]) for c, m in healthy[:200]])
    # a mask under a third of the typical cell's is a fragment (34 of the 1315 healthy crops), not
    # a red cell; until 2026-11-29 23:00 every mask of 300 px or more was pasted and counted
    min_area = FRAGMENT_SHARE * np.median([m.sum() for _, m in healthy])
    out = []
    for k in range(n_fields):
        field_img = rng.normal(background, noise, shape).astype(np.float32)
        owner = np.zeros(shape, np.int32)
        placed, labelled, flags = [], [], []
        for _ in range(400):
            is_infected = rng.random() < 0.15
            crop, mask = (infected if is_infected else healthy)[rng.integers(len(infected if is_infected else healthy))]
            if mask.sum() < min_area:
                continue
            turn = rng.integers(4)
            crop, mask = np.rot90(crop, turn), np.rot90(mask, turn)
            ys, xs = np.nonzero(mask)
            cy, cx = ys.mean(), xs.mean()
            radius = np.sqrt(mask.sum() / np.pi)
            y = rng.uniform(-0.3 * radius, shape[0] + 0.3 * radius)
            x = rng.uniform(-0.3 * radius, shape[1] + 0.3 * radius)
            if any(np.hypot(y - py, x - px) < 0.8 * (radius + pr) for py, px, pr in placed):
                continue
            oy, ox = round(y - cy), round(x - cx)
            yy, xx = ys + oy, xs + ox
            inside = (yy >= 0) & (yy < shape[0]) & (xx >= 0) & (xx < shape[1])
            if inside.sum() < 0.3 * len(ys):
                continue
            # each crop keeps its contrast over its own background: the crops come from images of
            # different exposure (backgrounds 12 to 63), and pasted as they were a dim cell of a
            # bright-background crop would be darker than this field's background
            own = np.median(crop[~mask])
            level = background - own if match_background else 0.0
            yi, xi = yy[inside], xx[inside]
            cell = crop[ys[inside], xs[inside]]
            # where it overlaps a cell pasted before, its light adds to that cell's (both cells
            # fluoresce); until 2026-11-29 23:00 it replaced it, cutting the lower cell with a seam
            under = owner[yi, xi] > 0
            field_img[yi, xi] = np.where(under, field_img[yi, xi] + cell - own, cell + level)
            placed.append((y, x, radius))
            # the labelled centre is the cell's point deepest inside its mask: the centroid of a
            # crescent-shaped cell lies off the cell (until 2026-11-29 23:30 the centroid was used)
            deep = deepest_point(mask)
            labelled.append((deep[0] + oy, deep[1] + ox))
            owner[yy[inside], xx[inside]] = len(placed)
            flags.append(is_infected)
        # a centre hidden under a later cell, or beyond the edge, is not a labelled centre
        keep = [i for i, (y, x) in enumerate(labelled)
                if 0 <= y < shape[0] and 0 <= x < shape[1] and owner[int(y), int(x)] == i + 1]
        centres = np.array([labelled[i] for i in keep], float).reshape(-1, 2)
        infected_centres = np.array([labelled[i] for i in keep if flags[i]], float).reshape(-1, 2)
        out.append(BenchField("composed_fluorescence", f"composed_{k}", np.clip(field_img, 0, 255)[None],
                              centres, infected=infected_centres))
    return out


def load_source(source: str, root: Path, every: int = 1) -> list[BenchField]:
    loaders = {"chula_rbc_fields": chula, "malarianet_giemsa_fields": malarianet,
               "remoscope_pf_unstained": remoscope}
    if source == "composed_fluorescence":
        return composed_fluorescence(root, n_fields=max(2, 8 // every))
    return loaders[source](root, every)
