"""Cells cut by the field's edge: scored without the strip along the cut, so the cut is no anomaly."""
from __future__ import annotations

import numpy as np

from napari_supn_anomaly.cells.field_crops import cut_crops


def test_the_strip_along_the_cut_leaves_the_mask_of_an_edge_cell_only():
    labels = np.zeros((60, 80), np.int32)
    yy, xx = np.mgrid[:60, :80]
    labels[(yy - 30) ** 2 + (xx - 3) ** 2 < 100] = 1   # cut by the left edge
    labels[(yy - 30) ** 2 + (xx - 50) ** 2 < 100] = 2  # whole
    plane = labels[None].astype(np.float32)
    ids, centres = np.array([1, 2]), np.array([[30, 3], [30, 50]])
    fill = np.zeros(1, np.float32)
    _, plain = cut_crops(plane, labels, ids, centres, 32, fill)
    crops, masks = cut_crops(plane, labels, ids, centres, 32, fill, edge_margin=4)
    # crop column c shows field column c + 3 - 16; field columns 0-3 lie along the cut
    left = 16 - 3
    assert plain[0][:, left:left + 4].any() and not masks[0][:, :left + 4].any()
    assert (masks[0] == (plain[0] & (np.arange(32) >= left + 4)[None, :])).all()
    assert (masks[1] == plain[1]).all() and masks[1].any()


def test_beyond_the_fields_edge_a_crop_shows_the_field_mirrored_when_asked():
    rng = np.random.default_rng(0)
    plane = rng.random((2, 20, 30)).astype(np.float32)
    labels = np.zeros((20, 30), np.int32)
    labels[0:6, 0:5] = 1
    crops, masks = cut_crops(plane, labels, np.array([1]), np.array([[2, 2]]), 16, None)
    # crop row/column i shows field row/column i - 6; -1 mirrors to 0, -6 to 5
    want = np.pad(plane, ((0, 0), (6, 0), (6, 0)), mode="symmetric")[:, :16, :16]
    np.testing.assert_array_equal(crops[0], want)
    assert masks[0][6:12, 6:11].all() and masks[0].sum() == 30  # the cell's own pixels only
    filled, same = cut_crops(plane, labels, np.array([1]), np.array([[2, 2]]), 16, np.zeros(2, np.float32))
    assert (filled[0][:, :6] == 0).all() and (same == masks).all()


def test_healthy_cells_cut_by_the_edge_are_flagged_no_more_than_whole_ones():
    from napari_supn_anomaly.models import load_model
    from napari_supn_anomaly.pipeline.stacks import DetectSettings, detect
    from napari_supn_anomaly.sample_data import load_sample
    from napari_supn_anomaly.scoring import resolve

    sample = load_sample("fluorescence")
    result = detect(sample.image[:2], sample.axes, resolve(load_model("fluorescence-rbc")),
                    settings=DetectSettings(fpr=0.05, calibration="model"))
    table = result.cell_table
    infected = set()
    for plane in range(2):
        truth = sample.truth(plane).parasites
        infected |= {(plane, int(c)) for c in np.unique(result.cells[plane][truth > 0]) if c}
    healthy = ~np.array([(p, c) in infected for p, c in zip(table["plane"], table["cell_id"])])
    edge = table["edge"].to_numpy()
    assert (edge & healthy).sum() >= 10 and (~edge & healthy).sum() >= 40
    rate_edge = table["candidate"][edge & healthy].mean()
    rate_whole = table["candidate"][~edge & healthy].mean()
    assert rate_edge <= rate_whole + 0.05, (rate_edge, rate_whole)
