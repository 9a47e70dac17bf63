"""A large object gives back the wedges of its neighbours that it took in (cells/appendages.py)."""
from __future__ import annotations

import numpy as np

from napari_supn_anomaly.cells.appendages import give_back_appendages

DIAMETER = 40.0


def disc(shape, cy, cx, r):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    return (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2


def test_a_wedge_of_a_neighbour_goes_back_to_it_and_the_round_body_stays_whole():
    shape = (120, 160)
    body = disc(shape, 60, 50, 26)  # an enlarged (infected) cell, 1.7 cell areas
    neighbour = disc(shape, 60, 118, 20) & ~body
    wedge = np.zeros(shape, bool)
    wedge[52:68, 74:100] = True  # a strip of the neighbour, 16 px wide, flooded from the big cell
    wedge &= ~body & ~neighbour
    labels = np.zeros(shape, np.int32)
    labels[body | wedge] = 1
    labels[neighbour] = 2
    out = give_back_appendages(labels, DIAMETER)
    assert (out[body] == 1).mean() > 0.99  # the neck's corners may go with the wedge
    assert (out[wedge] == 2).mean() > 0.9, np.unique(out[wedge], return_counts=True)
    assert (out[neighbour] == 2).all() and (out[labels == 0] == 0).all()


def test_a_second_cell_of_a_pair_becomes_an_object_of_its_own():
    shape = (100, 170)
    big = disc(shape, 50, 50, 26)
    small = disc(shape, 50, 112, 19) & ~big  # 0.9 cell areas, joined by a neck
    neck = np.zeros(shape, bool)
    neck[46:54, 70:100] = True
    labels = np.zeros(shape, np.int32)
    labels[big | small | neck] = 1
    out = give_back_appendages(labels, DIAMETER)
    assert (out[big] == 1).all()
    inner_small = disc(shape, 50, 112, 15)
    ids = np.unique(out[inner_small])
    assert len(ids) == 1 and ids[0] not in (0, 1)


def test_a_large_round_cell_and_a_small_object_are_left_as_they_are():
    shape = (100, 160)
    labels = np.zeros(shape, np.int32)
    labels[disc(shape, 50, 50, 30)] = 1   # a macrocyte, 2.25 cell areas, nothing to give back
    labels[disc(shape, 50, 120, 18)] = 2  # a cell under the size that is looked at
    assert np.array_equal(give_back_appendages(labels, DIAMETER), labels)
