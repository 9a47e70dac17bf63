"""Crowded clumps are cut along the cells, and a red cell filled by a schizont stays a red cell
(cells/finder.py ``split_large_objects``, cells/kinds.py)."""
from __future__ import annotations

import numpy as np
import pytest

from napari_supn_anomaly.cells import segment_cells
from napari_supn_anomaly.cells.finder import DEFAULT_SETTINGS, split_large_objects


def disc_field(shape, centres, radius, cell, background, noise=2.0, seed=0):
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    img = np.full(shape, float(background))
    for cy, cx in centres:
        img[(yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2] = cell
    return img + np.random.default_rng(seed).normal(0, noise, shape)


def whole_around(labels, centres, radius):
    """Whether each centre's object covers the whole disc of ``radius`` around it (no cut near it)."""
    yy, xx = np.mgrid[:labels.shape[0], :labels.shape[1]]
    out = []
    for cy, cx in centres:
        near = (yy - cy) ** 2 + (xx - cx) ** 2 <= radius ** 2
        out.append(bool((labels[near] == labels[cy, cx]).all() and labels[cy, cx] > 0))
    return out


def test_a_clump_of_six_touching_cells_is_cut_into_six_without_cutting_through_a_centre():
    r = 18  # cells of 36 px, as given to the finder
    centres = [(60, 60), (60, 92), (60, 124), (90, 76), (90, 108), (90, 140)]  # touching and overlapping
    img = disc_field((160, 210), centres, r, 130, 20)
    seg = segment_cells(img, "fluorescence", cell_diameter=2 * r)
    ids = [int(seg.labels[y, x]) for y, x in centres]
    assert 0 not in ids and len(set(ids)) == 6 and seg.n_cells == 6, (ids, seg.n_cells)
    assert all(whole_around(seg.labels, centres, 0.4 * r))


def test_a_large_object_is_cut_along_the_edges_between_its_cells_not_in_straight_lines():
    # three overlapping discs handed over as one object: the cut follows the drawn rims
    r = 20
    centres = [(50, 45), (50, 75), (50, 105)]
    yy, xx = np.mgrid[:100, :150]
    labels = np.zeros((100, 150), np.int32)
    edges = np.zeros((100, 150))
    for cy, cx in centres:
        inside = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
        labels[inside] = 1
        edges[np.abs(np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) - r) < 1.0] = 1.0
    edges[labels == 0] = 0
    cut = split_large_objects(labels, 2 * r, DEFAULT_SETTINGS, edges=edges)
    ids = [int(cut[y, x]) for y, x in centres]
    assert len(set(ids)) == 3 and 0 not in ids
    assert all(whole_around(cut, centres, 0.4 * r))
    assert (cut[labels == 0] == 0).all() and (cut[labels > 0] > 0).all()


def test_a_red_cell_filled_by_a_schizont_stays_a_red_cell_and_a_white_cell_stays_apart():
    shape = (170, 240)
    centres = [(50, 50), (50, 110), (120, 50), (120, 110)]
    rgb = np.stack([disc_field(shape, centres, 18, c, 230, seed=i) for i, c in enumerate((175, 115, 125))])
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    schizont = (yy - 50) ** 2 + (xx - 110) ** 2 < 14 ** 2  # 60% of its red cell, purple
    rgb[:, schizont] = np.array([90, 40, 140])[:, None]
    white = (yy - 90) ** 2 + (xx - 185) ** 2 < 26 ** 2     # a white cell: twice a red cell's area
    nucleus = ((yy - 90) ** 2 + (xx - 185) ** 2 < 21 ** 2)  # its nucleus: 1.4 red-cell areas
    rgb[:, white] = np.array([200, 170, 200])[:, None]
    rgb[:, nucleus] = np.array([90, 50, 150])[:, None]
    seg = segment_cells(rgb, "brightfield-stained", cell_diameter=36)
    assert seg.n_cells == 4 and seg.labels[50, 110] > 0, seg.kind_counts()
    assert seg.kind_counts().get("white_cell") == 1 and seg.others[90, 185] > 0


def test_a_cut_between_two_cells_never_runs_through_a_parasite():
    from napari_supn_anomaly.cells.finder import keep_blobs_whole

    labels = np.zeros((40, 60), np.int32)
    labels[5:35, 5:30], labels[5:35, 30:55] = 1, 2   # two cells cut along x = 30
    blob = np.zeros(labels.shape, bool)
    blob[15:25, 24:33] = True                          # a parasite across the cut, most of it in cell 1
    out = keep_blobs_whole(labels, blob)
    assert (out[blob] == 1).all()
    assert (out[~blob] == labels[~blob]).all()


def neutrophil_field(centre, shape=(300, 400), seed=0):
    """Eight red cells (36 px) and a white cell twice their diameter: pale lilac cytoplasm around a
    nucleus of three joined lobes (1.3 red-cell areas), at ``centre``."""
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    rgb = np.empty((3,) + shape)
    rgb[:] = np.array([230, 232, 228])[:, None, None]
    for cy, cx in [(40, 40), (40, 200), (160, 40), (160, 215), (100, 215), (250, 120), (240, 330), (60, 340)]:
        rgb[:, (yy - cy) ** 2 + (xx - cx) ** 2 < 18 ** 2] = np.array([175, 115, 125])[:, None]
    wy, wx = centre
    rgb[:, (yy - wy) ** 2 + (xx - wx) ** 2 < 36 ** 2] = np.array([205, 185, 210])[:, None]
    for ly, lx in ((-10, -10), (-8, 12), (12, 2)):
        rgb[:, (yy - wy - ly) ** 2 + (xx - wx - lx) ** 2 < 12 ** 2] = np.array([95, 55, 150])[:, None]
    white = (yy - wy) ** 2 + (xx - wx) ** 2 < 30 ** 2  # well inside it
    return rgb + np.random.default_rng(seed).normal(0, 3, rgb.shape), white


@pytest.mark.parametrize("centre", [(100, 120), (90, 24)], ids=["inside", "cut-by-the-edge"])
def test_a_white_cell_with_a_lobed_nucleus_is_one_white_cell_not_red_cell_pieces(centre):
    # Chula field 100: a white cell larger than two red cells was cut into pieces of red-cell size,
    # and the pieces without the nucleus were counted as red cells
    rgb, white = neutrophil_field(centre)
    for diameter in (36, None):
        seg = segment_cells(rgb, "brightfield-stained", cell_diameter=diameter)
        assert seg.kind_counts().get("white_cell") == 1 and seg.n_cells == 8, seg.kind_counts()
        assert (seg.labels[white] == 0).all()
        inside = seg.others[white]
        assert (inside == inside[0]).all() and seg.other_kinds[inside[0]] == "white_cell"


def test_a_small_object_inside_a_red_cell_joins_it_and_one_beside_a_cell_stays_apart():
    from napari_supn_anomaly.cells.kinds import join_enclosed

    yy, xx = np.mgrid[:80, :120]
    labels = np.zeros((80, 120), np.int32)
    labels[(yy - 40) ** 2 + (xx - 40) ** 2 < 25 ** 2] = 1
    labels[(yy - 40) ** 2 + (xx - 45) ** 2 < 5 ** 2] = 2   # a parasite cut out inside cell 1
    labels[(yy - 40) ** 2 + (xx - 70) ** 2 < 5 ** 2] = 3   # a platelet on cell 1's outline
    labels[(yy - 40) ** 2 + (xx - 100) ** 2 < 5 ** 2] = 4  # a platelet on the background
    kinds = np.array(["", "red_cell", "platelet", "platelet", "debris"], dtype=object)
    out = join_enclosed(labels.copy(), kinds)
    assert out[40, 45] == 1 and kinds[2] == ""
    assert out[40, 70] == 3 and out[40, 100] == 4 and list(kinds[3:]) == ["platelet", "debris"]


def test_a_cell_cut_in_two_through_its_schizont_is_one_cell_again():
    from napari_supn_anomaly.cells.finder import keep_blobs_whole

    yy, xx = np.mgrid[:60, :60]
    cell = (yy - 30) ** 2 + (xx - 30) ** 2 < 20 ** 2            # one cell of 40 px ...
    labels = np.where(cell, np.where(xx < 30, 1, 2), 0).astype(np.int32)  # ... cut along x = 30
    labels[:4, :4] = 3                                          # a speck elsewhere stays
    dots = np.zeros(labels.shape, bool)
    for y, x in ((26, 24), (26, 33), (34, 27), (34, 35)):      # a schizont's separate dots across the cut
        dots[y - 2:y + 2, x - 2:x + 2] = True
    out = keep_blobs_whole(labels, dots, diameter=40.0)
    assert len(np.unique(out[cell])) == 1 and out[2, 2] == 3
    # two whole cells sharing a parasite on their border stay two cells
    two = np.where(cell, 1, 0).astype(np.int32)
    two[(yy - 30) ** 2 + (xx - 70) ** 2 < 20 ** 2] = 2
    two = np.pad(two, ((0, 0), (0, 40)))[:, :100]
    blob = np.zeros(two.shape, bool)
    blob[28:33, 47:53] = True
    out = keep_blobs_whole(two, blob, diameter=40.0)
    assert set(np.unique(out)) == {0, 1, 2}


def test_a_long_thin_strip_is_debris_but_a_thin_piece_cut_by_the_edge_stays_a_red_cell():
    from napari_supn_anomaly.cells.kinds import THIN, object_kinds

    diameter = 40.0
    labels = np.zeros((200, 240), np.int32)
    yy, xx = np.mgrid[:200, :240]
    labels[(yy - 60) ** 2 + (xx - 60) ** 2 < 20 ** 2] = 1           # a red cell
    labels[140:148, 30:150] = 2                                      # a strip 8 px wide, 2.4 cell areas long
    labels[20:100, 234:240] = 3                                      # a cell cut by the edge: 6 px of it show
    labels[(yy - 60) ** 2 + (xx - 160) ** 2 < 20 ** 2] = 4           # another red cell ...
    labels[(yy - 60) ** 2 + (xx - 160) ** 2 < 5 ** 2] = 0           # ... with a hole: still a wide cell
    plane = np.full((1, 200, 240), 100.0)
    kinds = object_kinds(labels, plane, plane, diameter, stained=False)
    assert 8 < THIN * diameter
    assert list(kinds[1:]) == ["red_cell", "debris", "red_cell", "red_cell"]


def test_a_small_piece_the_edge_cut_off_a_red_cell_is_a_red_cell_but_a_platelet_at_the_edge_stays_one():
    # MalariaNet Trip_038 Image_18: the edge left a fifth of an infected cell, mostly its purple
    # parasite; small and blue, it was called a platelet and never scored
    from napari_supn_anomaly.cells.kinds import SMALL, object_kinds

    diameter = 40.0
    yy, xx = np.mgrid[:120, :160]
    labels = np.zeros((120, 160), np.int32)
    labels[(yy - 60) ** 2 + (xx - 60) ** 2 < 20 ** 2] = 1     # a whole red cell
    labels[(yy - 60) ** 2 + (xx - 170) ** 2 < 20 ** 2] = 2    # a red cell's sliver: 30 px along the edge
    labels[(yy + 2) ** 2 + (xx - 110) ** 2 < 6 ** 2] = 3      # a platelet cut by the top edge: 7 px along it
    plane = np.zeros((3, 120, 160))
    plane[:] = np.array([200.0, 190.0, 200.0])[:, None, None]  # light background
    plane[:, labels == 1] = np.array([160.0, 120.0, 140.0])[:, None]  # pink cell
    plane[:, labels > 1] = np.array([110.0, 80.0, 160.0])[:, None]    # purple: a parasite, a platelet
    area = np.bincount(labels.ravel()) / (np.pi * (diameter / 2) ** 2)
    assert area[2] < SMALL and area[3] < SMALL
    kinds = object_kinds(labels, plane, plane[:, :1, :1] * np.ones_like(plane), diameter, stained=True)
    assert list(kinds[1:]) == ["red_cell", "red_cell", "platelet"]


def test_the_cells_diameter_is_measured_on_whole_cells_not_on_the_slivers_the_edge_cut():
    from napari_supn_anomaly.cells.measure import median_cell_diameter

    yy, xx = np.mgrid[:100, :200]
    labels = np.zeros((100, 200), np.int32)
    for i, cx in enumerate((40, 100, 160)):
        labels[(yy - 50) ** 2 + (xx - cx) ** 2 < 20 ** 2] = i + 1   # three whole cells, 40 px
    for i, cy in enumerate((10, 50, 90)):
        labels[(yy - cy) ** 2 + (xx - 215) ** 2 < 20 ** 2] = i + 4  # three slivers along the right edge
    assert median_cell_diameter(labels) == pytest.approx(40, abs=1)
    assert median_cell_diameter(labels[:, 150:]) < 40  # only cut cells: measured on them
