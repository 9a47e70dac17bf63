"""What each found object is: a red cell, a platelet, a white cell, debris, or a clump of cells
that could not be split. Only red cells are scored: white cells and platelets are the classic
false parasites (a stained nucleus looks like a huge parasite to a model of healthy red cells).

The rules use size against the field's red-cell area and, on stained fields, the share of the
object that is stained purple (bluer and darker than the field's typical cell), where nuclei and
platelets are and red cells are not:

* smaller than ``SMALL`` red-cell areas: a platelet when mostly bluer than the cells, else debris;
  but a piece that the field's edge cuts along at least ``EDGE_CHORD`` cell diameters is what the
  edge left of a red cell, however small: a platelet (2-3 um against a red cell's 7-8) is never
  half a red cell wide. Scored with the outside masked, a parasite in it is not lost;
* holding a nucleus (``white_nuclei``: one purple region, its lobes joined, of at least
  ``WHITE_NUCLEUS`` red-cell areas): a white cell. A white cell's nucleus alone is about a red
  cell's size or larger (Chula: 1.0 areas and more), while a schizont, however much of its cell it
  fills, stays inside a red cell (MalariaNet: at most 0.6 areas), so an infected red cell of
  red-cell size stays a red cell. The finder grows each white cell from its nucleus, so the
  cell is one object however its outline runs (``finder.split_objects``);
* larger than ``LARGE`` areas: a clump;
* narrower than ``THIN`` cell diameters (its widest inscribed disc), and not cut by the field's
  edge: debris. A strip that the splitting cut off a cell in a crowd (MalariaNet), a sliver of
  background between cells or a scratch is no red cell however long, and scored as one it would
  look anomalous; a red cell, a schistocyte or a cell half hidden by its neighbour is wider;
* the rest: a red cell.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage import segmentation

from .disc_morphology import disc_closing, fill_holes
from .measure import edge_contact

KINDS = ("red_cell", "platelet", "white_cell", "debris", "clump")
SMALL = 0.25
LARGE = 3.0
WHITE_NUCLEUS = 0.85   # purple area, in red-cell areas, of a white cell's nucleus at least
NUCLEUS_JOIN = 1 / 15  # purple parts closer than twice this many cell diameters are one nucleus (or parasite)
PLATELET_PURPLE = 0.3
THIN = 0.3  # 0 of 1,624 labelled cells and parasites' cells on four sources are narrower (2026-11-30)
EDGE_CHORD = 0.5  # a small object cut along this many cell diameters by the field's edge is a red cell's piece
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


def join_close_parts(mask: np.ndarray, diameter: float) -> np.ndarray:
    """``mask`` with parts closer than ``2 * NUCLEUS_JOIN`` cell diameters joined (a closing): a
    neutrophil's lobes, a schizont's dots. Padded, so a part cut by the field's edge is not eaten
    from the edge."""
    r = max(1, round(NUCLEUS_JOIN * diameter))
    return disc_closing(np.pad(mask, r + 1), r)[r + 1:-(r + 1), r + 1:-(r + 1)] | mask


def white_nuclei(plane: np.ndarray, background: np.ndarray, objects: np.ndarray, diameter: float) -> np.ndarray:
    """Labels [Y, X] of the white cells' nuclei in a stained RGB plane [C, Y, X] (0 elsewhere): the
    purple regions (``purple_mask`` against the ``objects``' typical cell), lobes closer than
    ``2 * NUCLEUS_JOIN`` cell diameters joined and holes filled, holding at least ``WHITE_NUCLEUS``
    red-cell areas of purple pixels. A neutrophil's lobes are one nucleus; a schizont stays below."""
    purple = purple_mask(plane, background, objects)
    regions, n = ndi.label(fill_holes(join_close_parts(purple, diameter)))
    if n == 0:
        return regions.astype(np.int32)
    held = np.bincount(regions[purple], minlength=n + 1)
    keep = held >= WHITE_NUCLEUS * np.pi * (diameter / 2.0) ** 2
    keep[0] = False
    mapping = np.zeros(n + 1, np.int32)
    mapping[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return mapping[regions]


def object_kinds(labels: np.ndarray, plane: np.ndarray, background: np.ndarray, diameter: float,
                 stained: bool, nuclei: np.ndarray | None = None) -> np.ndarray:
    """Kind of each label 0..max (index 0, the background, is ''). ``nuclei``: the
    ``white_nuclei`` the objects were grown from (measured here when not given)."""
    n = int(labels.max())
    area = np.bincount(labels.ravel(), minlength=n + 1).astype(float) / (np.pi * (diameter / 2.0) ** 2)
    holds_nucleus = np.zeros(n + 1, bool)
    if stained and plane.shape[0] >= 3:
        size = np.maximum(np.bincount(labels.ravel(), minlength=n + 1), 1)
        blue_share = np.asarray(ndi.sum_labels(purple_mask(plane, background, labels > 0, dark=False), labels,
                                               np.arange(n + 1))) / size
        if nuclei is None:
            nuclei = white_nuclei(plane, background, labels > 0, diameter)
        inside = (nuclei > 0) & (labels > 0)
        for nucleus in np.unique(nuclei[inside]):
            # the object holding most of the nucleus is the white cell
            holds_nucleus[np.bincount(labels[inside & (nuclei == nucleus)]).argmax()] = True
    else:
        blue_share = np.zeros(n + 1)
    contact = edge_contact(labels, n + 1)
    kinds = np.full(n + 1, "red_cell", dtype=object)
    kinds[(object_widths(labels, n) < THIN * diameter) & (contact == 0)] = "debris"
    kinds[area > LARGE] = "clump"
    kinds[holds_nucleus] = "white_cell"
    small = area < SMALL
    kinds[small] = np.where(blue_share[small] >= PLATELET_PURPLE, "platelet", "debris")
    kinds[small & (contact >= EDGE_CHORD * diameter) & ~holds_nucleus] = "red_cell"
    kinds[0] = ""
    return kinds


def object_widths(labels: np.ndarray, n: int) -> np.ndarray:
    """[n + 1] the diameter of each object's widest inscribed disc, in pixels (twice the largest
    distance from its pixels to its outline, where it meets the background or another object)."""
    inner = (labels > 0) & ~segmentation.find_boundaries(labels, mode="inner")
    depth = ndi.distance_transform_edt(np.pad(inner, 1))[1:-1, 1:-1]
    widest = np.zeros(n + 1)
    np.maximum.at(widest, labels.ravel(), depth.ravel())  # ndi.maximum sorts the field: 10x slower
    return 2.0 * widest


def edge_objects(labels: np.ndarray, n: int | None = None) -> np.ndarray:
    """Whether each label 0..max (0..n-1 if given) touches the field's edge (cut by it)."""
    return edge_contact(labels, int(labels.max()) + 1 if n is None else n) > 0


ENCLOSED = 0.9  # a small object whose outline lies this much against one red cell lies inside it


def join_enclosed(labels: np.ndarray, kinds: np.ndarray) -> np.ndarray:
    """Platelets and debris that lie inside one red cell join it (their kind becomes '').

    A dark parasite ringed by a pale halo can come out of the finder as an object of its own,
    inside the cell it infects (MalariaNet Trip_038 Image_10); kept apart, it would never be
    scored. Labels are changed in place and returned."""
    small = np.nonzero((kinds == "platelet") | (kinds == "debris"))[0]
    if not len(small):
        return labels
    boxes = ndi.find_objects(labels)
    for i in small:
        box = boxes[i - 1] if i - 1 < len(boxes) else None
        if box is None:
            continue
        box = tuple(slice(max(0, s.start - 1), s.stop + 1) for s in box)
        window = labels[box]
        inside = window == i
        around = window[ndi.binary_dilation(inside) & ~inside]
        if not around.size:
            continue
        host = int(np.bincount(around).argmax())
        if host and kinds[host] == "red_cell" and np.mean(around == host) >= ENCLOSED:
            window[inside] = host
            kinds[i] = ""
    return labels
