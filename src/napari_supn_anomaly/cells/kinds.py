"""What each found object is: a red cell, a platelet, a white cell, debris, or a clump of cells
that could not be split. Only red cells are scored: white cells and platelets are the classic
false parasites (a stained nucleus looks like a huge parasite to a model of healthy red cells).

The rules use size against the field's red-cell area and, on stained fields, the share of the
object that is stained purple (bluer and darker than the field's typical cell), where nuclei and
platelets are and red cells are not:

* smaller than ``SMALL`` red-cell areas: a platelet when mostly bluer than the cells, else debris;
* at least ``WHITE_PURPLE`` of it purple and a purple part (the nucleus) of at least
  ``WHITE_NUCLEUS`` red-cell areas: a white cell. A white cell's nucleus alone is about a red
  cell's size or larger (Chula: 1.2 areas and more), while a schizont, however much of its cell it
  fills, stays inside a red cell (MalariaNet: at most 0.6 areas), so an infected red cell of
  red-cell size stays a red cell;
* larger than ``LARGE`` areas: a clump;
* the rest: a red cell.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi

KINDS = ("red_cell", "platelet", "white_cell", "debris", "clump")
SMALL = 0.25
LARGE = 3.0
WHITE_PURPLE = 0.35
WHITE_NUCLEUS = 0.85   # purple area, in red-cell areas, of a white cell's nucleus at least
PLATELET_PURPLE = 0.3
PURPLE_HUE = 0.06     # blue minus red above the typical cell's, as a share of the background's brightness
PURPLE_DARK = 0.15    # darker than the typical cell by this share of the background's brightness


def purple_mask(plane: np.ndarray, background: np.ndarray, objects: np.ndarray | None = None,
                dark: bool = True) -> np.ndarray:
    """Stained nuclei, platelets and parasite chromatin of an RGB plane [C, Y, X]: bluer and darker
    than the field's typical cell (the median of the ``objects`` pixels; without them, than the
    background), so a stain that tints every red cell is not a nucleus. ``dark=False``: bluer only
    (a platelet is too small and thin to be much darker)."""
    bright = float(np.median(background.mean(0)))
    if objects is not None and objects.any():
        reference = np.median(plane[:3][:, objects], axis=1)
        hue_ref, gray_ref = reference[2] - reference[0], reference.mean()
    else:
        hue_ref, gray_ref = background[2] - background[0], background.mean(0)
    bluer = (plane[2] - plane[0]) - hue_ref > PURPLE_HUE * bright
    if not dark:
        return bluer
    return bluer & (gray_ref - plane[:3].mean(0) > PURPLE_DARK * bright)


def object_kinds(labels: np.ndarray, plane: np.ndarray, background: np.ndarray, diameter: float,
                 stained: bool) -> np.ndarray:
    """Kind of each label 0..max (index 0, the background, is '')."""
    n = int(labels.max())
    area = np.bincount(labels.ravel(), minlength=n + 1).astype(float) / (np.pi * (diameter / 2.0) ** 2)
    if stained and plane.shape[0] >= 3:
        size = np.maximum(np.bincount(labels.ravel(), minlength=n + 1), 1)
        index = np.arange(n + 1)
        purple_share = np.asarray(ndi.sum_labels(purple_mask(plane, background, labels > 0), labels, index)) / size
        blue_share = np.asarray(ndi.sum_labels(purple_mask(plane, background, labels > 0, dark=False), labels,
                                               index)) / size
    else:
        purple_share = blue_share = np.zeros(n + 1)
    kinds = np.full(n + 1, "red_cell", dtype=object)
    kinds[area > LARGE] = "clump"
    kinds[(purple_share >= WHITE_PURPLE) & (purple_share * area >= WHITE_NUCLEUS)] = "white_cell"
    small = area < SMALL
    kinds[small] = np.where(blue_share[small] >= PLATELET_PURPLE, "platelet", "debris")
    kinds[0] = ""
    return kinds


def edge_objects(labels: np.ndarray) -> np.ndarray:
    """Whether each label 0..max touches the field's edge (cut by it)."""
    touching = np.zeros(int(labels.max()) + 1, bool)
    for side in (labels[0], labels[-1], labels[:, 0], labels[:, -1]):
        touching[side] = True
    touching[0] = False
    return touching
