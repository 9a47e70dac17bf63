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


def _loop_resize_within_labels(image, labels_in, labels_out):
    """Reference for resize_within_labels, one output pixel at a time: skimage's linear sample
    positions (scipy zoom, grid_mode), input pixels reflected at the edge, only those of the
    output pixel's own label weighted; its cell's lowest value where none is."""
    (h, w), (oh, ow) = image.shape, labels_out.shape

    def taps(n_in, n_out, i):
        pos = (i + 0.5) * n_in / n_out - 0.5
        start = int(np.floor(pos))
        frac = pos - start
        reflect = [abs(k) if k < n_in else 2 * (n_in - 1) - k for k in (start, start + 1)]
        return [(0 if n_in == 1 else reflect[0], 1 - frac), (0 if n_in == 1 else reflect[1], frac)]

    out = np.zeros((oh, ow), np.float32)
    for y in range(oh):
        for x in range(ow):
            own = labels_out[y, x]
            if own == 0:
                continue
            num = den = 0.0
            for r, wy in taps(h, oh, y):
                for c, wx in taps(w, ow, x):
                    if labels_in[r, c] == own:
                        num += wy * wx * image[r, c]
                        den += wy * wx
            out[y, x] = num / den if den > 0 else (image[labels_in == own].min() if (labels_in == own).any() else 0)
    return out


@pytest.mark.parametrize("shapes", [((23, 31), (41, 37)), ((41, 37), (23, 31)), ((1, 9), (3, 20))])
def test_maps_are_resized_within_each_cell(shapes):
    from napari_supn_anomaly.cells.resize import resize_nearest, resize_within_labels

    rng = np.random.default_rng(7)
    (h, w), out_shape = shapes
    labels_in = rng.integers(0, 4, (h, w)).astype(np.int32)
    image = rng.normal(size=(h, w)).astype(np.float32)
    labels_out = resize_nearest(labels_in, out_shape)
    labels_out[0, 0] = 9  # a cell the input lacks: 0
    got = resize_within_labels(image, labels_in, labels_out)
    np.testing.assert_allclose(got, _loop_resize_within_labels(image, labels_in, labels_out), atol=1e-5)
    # no cell's values leave the range of its own input values
    for cid in np.intersect1d(np.unique(labels_in[labels_in > 0]), labels_out):
        own = image[labels_in == cid]
        assert own.min() - 1e-5 <= got[labels_out == cid].min() and got[labels_out == cid].max() <= own.max() + 1e-5


def test_a_cell_takes_no_score_from_its_neighbours_map():
    """A signed map: one cell +5 throughout, the touching one -1. Interpolated plainly, the low
    cell's border took values up to about 3 from its neighbour."""
    from napari_supn_anomaly.cells.resize import resize_nearest, resize_within_labels

    labels = np.zeros((40, 80), np.int32)
    labels[5:35, 5:40], labels[5:35, 40:75] = 1, 2
    image = np.select([labels == 1, labels == 2], [5.0, -1.0]).astype(np.float32)
    big = resize_nearest(labels, (100, 200))
    got = resize_within_labels(image, labels, big)
    assert (got[big == 2] == -1).all() and (got[big == 1] == 5).all() and (got[big == 0] == 0).all()


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
    monkeypatch.setattr(fields, "resize_within_labels", _loop_resize_within_labels)
    old = _run(iter_score_field(plane, f.cells, scorer, diameter, batch_size=8))
    np.testing.assert_array_equal(new.cell_ids, old.cell_ids)
    assert len(new.cell_ids) > 5
    tolerance = 1e-4 * np.maximum(1.0, np.abs(old.model_scores))
    assert (np.abs(new.model_scores - old.model_scores) <= tolerance).all()
    np.testing.assert_allclose(new.heatmap, old.heatmap, rtol=0, atol=1e-4 * max(1.0, np.abs(old.heatmap).max()))


def test_unscored_pixels_take_their_cells_lowest_value_not_zero():
    """A cell's pixels outside its crop's mask (the margin along the field's edge) are not scored;
    with a signed map, 0 there would be the cell's highest value."""
    from napari_supn_anomaly.cells.field_crops import fill_unscored

    labels = np.zeros((10, 12), np.int32)
    labels[:, :5], labels[2:8, 6:11] = 1, 2
    heat = np.full(labels.shape, -np.inf, np.float32)
    heat[labels == 1] = -2.0
    heat[labels == 2] = 3.0
    heat[:, 0] = -np.inf  # cell 1's margin along the edge
    heat[2:8, 6] = -np.inf
    heat[3, 8] = 1.0
    fill_unscored(heat, labels)
    assert (heat[labels == 1] == -2).all() and (heat[labels == 0] == 0).all()
    assert heat[2, 6] == 1.0 and heat[labels == 2].max() == 3.0


def test_annotation_marks_are_found_on_the_field_as_recorded_not_after_its_colours_are_matched():
    """Matching a field's colours to the model's stain can give parts of a parasite a mark's hue:
    the marks that are filled in and left out of the scoring are those of the recorded field."""
    model = tiny_model("brightfield-stained")
    f = make_field((160, 160), "brightfield-stained", cell_diameter=2 * model.cell_diameter_px,
                   infected_fraction=0.0, seed=5)
    clean = np.moveaxis(f.image, -1, 0).astype(np.float32)
    marked = clean.copy()
    marked[:, 78:81, 10:150] = np.array([250.0, 250.0, 5.0])[:, None, None]  # a yellow arrow across the cells
    assert (f.cells[78:81, 10:150] > 0).any()

    def heatmap(plane, recorded):
        return _run(iter_score_field(plane, f.cells, resolve(model, "supn"), 2 * model.cell_diameter_px,
                                     recorded=recorded)).heatmap

    # the arrow on the recorded field is hidden from the scoring, whatever the matching did to it ...
    np.testing.assert_array_equal(heatmap(clean, marked), heatmap(marked, marked))
    # ... and a mark's colour that only the matched field shows hides nothing
    assert not np.array_equal(heatmap(marked, clean), heatmap(marked, marked))
