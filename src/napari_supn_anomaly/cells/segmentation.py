"""Red cells of one field: the pipeline's entry point to the cell finder (``finder.py``).

``segment_cells`` finds every object, sorts them by kind (``kinds.py``) and returns the red cells
as the labels that get scored; platelets, white cells, debris and unsplit clumps are kept apart
in ``others``, never scored. Cells cut by the field's edge are found and flagged (``edge``); a
caller that wants them left out passes ``exclude_edges=True``.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..errors import InputError, NoCellsFound
from .finder import DEFAULT_SETTINGS, FinderSettings, Foreground, find_objects
from .kinds import SMALL, edge_objects, join_enclosed, object_kinds
from .set_apart import set_apart
from .working_scale import grow_labels, working_scale


@dataclass
class Segmentation:
    labels: np.ndarray   # (Y, X) int32 red cells 1..N, 0 = background
    diameter_px: float   # the field's red-cell diameter (measured unless given)
    edge: np.ndarray = field(default=None)         # (N + 1,) bool: cell i is cut by the field's edge
    others: np.ndarray = field(default=None)       # (Y, X) int32 objects that are not red cells
    other_kinds: np.ndarray = field(default=None)  # (M + 1,) kind of each object in ``others``
    measured: bool = True                          # diameter_px was measured on the field
    marks: np.ndarray = field(default=None)        # (Y, X) bool annotation marks of the plane (``set_apart``)

    @property
    def n_cells(self) -> int:
        return int(self.labels.max())

    def kind_counts(self) -> dict[str, int]:
        counts = {"red_cell": self.n_cells}
        if self.other_kinds is not None:
            for kind in self.other_kinds[1:]:
                counts[kind] = counts.get(kind, 0) + 1
        return counts


def check_plane(plane: np.ndarray) -> None:
    """Reject what cannot be segmented or scored, with a message a person can act on."""
    if plane.size == 0:
        raise InputError("the image is empty")
    if not np.isfinite(plane).all():
        raise InputError("the image contains NaN or infinite values; fill or remove them first")
    if np.ptp(plane) == 0:
        raise InputError("the image is constant (every pixel has the same value): there is nothing to find")


def _renumber(labels: np.ndarray, keep: np.ndarray) -> np.ndarray:
    mapping = np.zeros(len(keep), np.int32)
    mapping[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return mapping[labels]


def _sorted_objects(plane: np.ndarray, modality: str, cell_diameter: float | None, settings: FinderSettings,
                    min_size: float | None, max_size: float | None, foreground: Foreground | None = None):
    """The objects of a plane and the kind of each; small ones inside a red cell joined to it."""
    found = find_objects(plane, modality, cell_diameter, settings, foreground)
    stained = modality == "brightfield-stained"
    kinds = object_kinds(found.labels, plane, found.background, found.diameter_px, stained, found.nuclei)
    n = len(kinds)
    area = np.bincount(found.labels.ravel(), minlength=n) / (np.pi * (found.diameter_px / 2.0) ** 2)
    if min_size is not None:
        kinds[(kinds == "red_cell") & (area < min_size)] = "debris"
        kinds[(area >= min_size) & (area < SMALL)] = "red_cell"
    if max_size is not None:
        kinds[(kinds == "red_cell") & (area > max_size)] = "clump"
    join_enclosed(found.labels, kinds)
    return found, kinds


def segment_cells(plane: np.ndarray, modality: str = "fluorescence", cell_diameter: float | None = None,
                  min_size: float | None = None, max_size: float | None = None, exclude_edges: bool = False,
                  settings: FinderSettings = DEFAULT_SETTINGS) -> Segmentation:
    """Red cells in one plane ``[C, Y, X]`` (or ``[Y, X]``).

    ``cell_diameter`` (pixels in this plane) is the red cells' diameter; without it the field's
    own is measured. ``min_size`` / ``max_size`` override the smallest and largest red cell, in
    red-cell areas (``kinds.SMALL`` / ``kinds.LARGE``). With ``exclude_edges`` cells cut by the
    field's edge are left out instead of flagged.
    """
    plane = np.asarray(plane, np.float32)
    if plane.ndim == 2:
        plane = plane[None]
    check_plane(plane)
    scale, work, diameter, foreground = working_scale(plane, modality, cell_diameter, settings)
    found, kinds = _sorted_objects(work, modality, None if diameter is None else diameter * scale, settings,
                                   min_size, max_size, foreground)
    red = kinds == "red_cell"
    edge = edge_objects(found.labels, len(kinds))
    if exclude_edges:
        red &= ~edge
    if not red.any():
        raise NoCellsFound(f"no red cells of about {found.diameter_px:.0f} px were found; "
                           "check the cell diameter or the modality of the model")
    labels = _renumber(found.labels, red)
    other = (kinds != "red_cell") & (kinds != "")
    others = _renumber(found.labels, other)
    if scale != 1.0:
        labels = grow_labels(labels, plane.shape[1:])
        others = grow_labels(others, plane.shape[1:])
        others[labels > 0] = 0
    return set_apart(Segmentation(labels, found.diameter_px / scale, np.concatenate([[False], edge[red]]), others,
                                  np.concatenate([[""], kinds[other]]).astype(object), cell_diameter is None),
                     plane, modality)
