"""Cropping around cells, rescaling to the model's cell size, and pasting maps back."""
from __future__ import annotations

import numpy as np
import pytest
from _tiny_models import tiny_model

from napari_supn_anomaly.cells import (
    background_fill,
    cell_centres,
    cut_crops,
    field_scale,
    paste_maps,
    rescale_plane,
)
from napari_supn_anomaly.pipeline.fields import iter_score_field
from napari_supn_anomaly.scoring import resolve
from napari_supn_anomaly.synthetic import make_field


def test_crops_pasted_back_rebuild_the_cells_exactly():
    f = make_field((200, 240), "fluorescence", cell_diameter=30, seed=1)
    plane = f.image[None].astype(np.float32)
    ids = np.arange(1, f.cells.max() + 1)
    centres = cell_centres(f.cells, ids)
    crops, masks = cut_crops(plane, f.cells, ids, centres, 48, background_fill(plane, f.cells))
    assert crops.shape == (len(ids), 1, 48, 48)
    # each mask is exactly its cell (cells near the edge are partly outside the field)
    assert all(m.sum() == (f.cells == i).sum() for i, m in zip(ids, masks) if 24 < centres[i - 1][0] < 176
               and 24 < centres[i - 1][1] < 216)
    heat = np.full(f.cells.shape, -np.inf, np.float32)
    paste_maps(heat, f.cells, ids, centres, crops[:, 0])
    inside = f.cells > 0
    np.testing.assert_array_equal(heat[inside], plane[0][inside])
    assert np.isinf(heat[~inside]).all()


def test_rescaling_keeps_labels_whole():
    f = make_field((200, 200), "fluorescence", cell_diameter=40, seed=2)
    plane, labels = rescale_plane(f.image[None].astype(np.float32), f.cells, 0.5)
    assert plane.shape == (1, 100, 100) and labels.shape == (100, 100)
    assert set(np.unique(labels)) <= set(np.unique(f.cells))
    assert abs((labels > 0).mean() - (f.cells > 0).mean()) < 0.02


def test_field_heatmap_has_the_field_shape_and_is_zero_outside_cells():
    model = tiny_model("fluorescence")
    f = make_field((180, 200), "fluorescence", cell_diameter=2 * model.cell_diameter_px, seed=3)
    assert field_scale(model.geometry, 2 * model.cell_diameter_px) == pytest.approx(0.5)
    steps = iter_score_field(f.image[None].astype(np.float32), f.cells, resolve(model, "supn"),
                             2 * model.cell_diameter_px, batch_size=4)
    events = []
    while True:
        try:
            events.append(next(steps))
        except StopIteration as done:
            scores = done.value
            break
    assert scores.heatmap.shape == f.cells.shape and scores.heatmap.dtype == np.float32
    assert (scores.heatmap[f.cells == 0] == 0).all()
    assert np.isfinite(scores.heatmap).all()
    n = len(scores.cell_ids)
    assert events[-1].done == events[-1].total == n and len(events) == 1 + -(-n // 4)
    assert scores.scale == pytest.approx(0.5)


def test_field_scale_refuses_a_bad_diameter():
    with pytest.raises(ValueError, match="positive"):
        field_scale(tiny_model("fluorescence").geometry, 0)


def _old_rescale_plane(plane, labels, scale):
    """The field path before cells.resize: skimage.transform.resize per channel (float64 inside)."""
    from skimage import transform

    if abs(scale - 1.0) < 1e-3:
        return plane.astype(np.float32, copy=False), labels
    out_shape = tuple(max(1, round(s * scale)) for s in plane.shape[1:])
    scaled = np.stack([transform.resize(ch, out_shape, order=1, anti_aliasing=scale < 1, preserve_range=True)
                       for ch in plane]).astype(np.float32)
    return scaled, transform.resize(labels, out_shape, order=0, preserve_range=True,
                                    anti_aliasing=False).astype(labels.dtype)


def _old_resize_back(heatmap, shape, anti_aliasing, accumulate=None):
    from skimage import transform

    return transform.resize(heatmap, shape, order=1, preserve_range=True,
                            anti_aliasing=anti_aliasing).astype(np.float32)


def _run(steps):
    while True:
        try:
            next(steps)
        except StopIteration as done:
            return done.value


@pytest.mark.parametrize("factor", [2.0, 0.7])  # fields shrunk (anti-aliased) and enlarged to the model's cells
def test_field_scores_equal_the_skimage_resize_path(factor, monkeypatch):
    from napari_supn_anomaly.pipeline import fields

    model = tiny_model("fluorescence")
    diameter = factor * model.cell_diameter_px
    f = make_field((150, 170), "fluorescence", cell_diameter=diameter, seed=4)
    plane = f.image[None].astype(np.float32)
    scorer = resolve(model, "supn")
    new = _run(iter_score_field(plane, f.cells, scorer, diameter, batch_size=8))
    monkeypatch.setattr(fields, "rescale_plane", _old_rescale_plane)
    monkeypatch.setattr(fields, "resize_linear", _old_resize_back)
    old = _run(iter_score_field(plane, f.cells, scorer, diameter, batch_size=8))
    np.testing.assert_array_equal(new.cell_ids, old.cell_ids)
    assert len(new.cell_ids) > 5
    tolerance = 1e-4 * np.maximum(1.0, np.abs(old.model_scores))
    assert (np.abs(new.model_scores - old.model_scores) <= tolerance).all()
    np.testing.assert_allclose(new.heatmap, old.heatmap, rtol=0, atol=1e-4 * max(1.0, np.abs(old.heatmap).max()))
