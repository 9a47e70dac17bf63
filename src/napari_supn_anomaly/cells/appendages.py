"""Pieces of neighbouring cells that a large object took in, given back.

In a crowd a cell whose neighbour got no seed floods part of it: the object is the cell's round
body plus wedges of the cells around it, joined to the body by necks narrower than the cell
(MalariaNet: an infected cell, enlarged and round, with a wedge of each neighbour). The object's
body is what a disc a little smaller than its largest inscribed circle sweeps; what lies outside
it are the wedges. A wedge goes to the neighbour whose outline it completes best, or becomes an
object of its own when it is as large as half a cell (the second cell of a pair); one that touches
no other object stays.
"""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from skimage import measure

from .disc_morphology import disc_opening
from .hull import solidity

CHECKED_AREAS = 1.4   # objects of this many cell areas or more are looked at
BODY_RADIUS = 0.7     # the body: swept by a disc of this share of the object's largest inscribed radius
MIN_PIECE = 0.1       # pieces of less than this many cell areas (the opening's trim of corners) stay
OWN_OBJECT = 0.5      # a piece of this many cell areas or more is an object of its own
MAX_BODY = 2.0        # an object whose inscribed circle is wider than this many cell diameters is a sheet
                      # of cells, not one cell's body (and its opening would be slow)


def give_back_appendages(labels: np.ndarray, diameter: float) -> np.ndarray:
    """``labels`` with every object of ``CHECKED_AREAS`` cell areas or more cut to its body."""
    area = np.pi * (diameter / 2.0) ** 2
    out = labels.copy()
    next_id = int(labels.max()) + 1
    for region in measure.regionprops(labels):
        if region.area < CHECKED_AREAS * area:
            continue
        y0, x0, y1, x1 = region.bbox
        y0, x0 = max(0, y0 - 1), max(0, x0 - 1)
        y1, x1 = min(labels.shape[0], y1 + 1), min(labels.shape[1], x1 + 1)
        window = out[y0:y1, x0:x1]
        mask = window == region.label
        distance = ndi.distance_transform_edt(np.pad(mask, 1))[1:-1, 1:-1]
        inscribed = distance.max()
        radius = int(BODY_RADIUS * inscribed)
        if radius < 2 or inscribed > MAX_BODY * diameter / 2.0:
            continue
        opened, n = ndi.label(disc_opening(mask, radius))
        if n == 0:
            continue
        body = opened == opened[np.unravel_index(np.argmax(np.where(opened > 0, distance, 0)), mask.shape)]
        pieces, n_pieces = ndi.label(mask & ~body)
        for piece_id in range(1, n_pieces + 1):
            piece = pieces == piece_id
            size = int(piece.sum())
            if size < MIN_PIECE * area:
                continue
            if size >= OWN_OBJECT * area:
                window[piece] = next_id
                next_id += 1
                continue
            touching = window[ndi.binary_dilation(piece) & ~mask]
            touching = np.unique(touching[touching > 0])
            if len(touching):
                window[piece] = _best_fit(window, piece, touching)
    return out


def _best_fit(window: np.ndarray, piece: np.ndarray, neighbours: np.ndarray) -> int:
    """The neighbour whose outline ``piece`` completes best: their union the most convex."""
    if len(neighbours) == 1:
        return int(neighbours[0])
    return int(max(neighbours, key=lambda n: solidity(piece | (window == n))))
