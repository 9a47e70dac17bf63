"""Single-cell crop standardisation and the dataset readers."""
import numpy as np
import pytest

from conftest import require_data
from napari_supn_anomaly.cells import (
    CropGeometry,
    crop_scale, equivalent_diameter, find_cell_mask, loss_weight, standardise_crop, standardise_crops,
)


def disc(h, w, cy, cx, r):
    yy, xx = np.mgrid[:h, :w]
    return (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r


def test_finds_the_central_bright_cell_not_the_neighbour():
    img = np.full((1, 80, 80), 10.0)
    img[0][disc(80, 80, 40, 42, 15)] = 200
    img[0][disc(80, 80, 8, 8, 10)] = 220  # a brighter neighbour in the corner
    mask = find_cell_mask(img, "fluorescence")
    assert mask[40, 42] and not mask[8, 8]
    assert abs(equivalent_diameter(mask) - 30) < 3


def test_finds_dark_cell_on_light_background():
    img = np.full((1, 60, 60), 230.0)
    img[0][disc(60, 60, 30, 30, 12)] = 60
    mask = find_cell_mask(img, "brightfield")
    assert mask[30, 30] and not mask[2, 2]


def test_constant_crop_has_no_cell():
    assert not find_cell_mask(np.full((1, 32, 32), 7.0)).any()


def test_standardise_rescales_centres_and_fills_with_background():
    img = np.full((3, 50, 70), 240.0)
    m = disc(50, 70, 20, 50, 10)
    img[:, m] = 100
    crop, mask = standardise_crop(img, m, 64, scale=1.5)
    assert crop.shape == (3, 64, 64) and mask.shape == (64, 64)
    assert abs(equivalent_diameter(mask) - 30) < 2
    ys, xs = np.nonzero(mask)
    assert abs(ys.mean() - 32) <= 1 and abs(xs.mean() - 32) <= 1
    assert np.allclose(crop[:, 0, 0], 240.0)  # padding uses the (white) background


def test_one_scale_for_a_set_of_crops():
    masks = [disc(40, 40, 20, 20, r) for r in (8, 10, 12)]
    assert crop_scale(masks, 30) == pytest.approx(30 / equivalent_diameter(masks[1]))
    with pytest.raises(ValueError, match="no cell"):
        crop_scale([np.zeros((8, 8), bool)], 30)


def test_standardise_crops_finds_missing_masks():
    imgs = []
    for r in (9, 10, 11):
        im = np.full((1, 40, 40), 5.0)
        im[0][disc(40, 40, 20, 20, r)] = 100
        imgs.append(im)
    crops, masks, scale = standardise_crops(imgs, [None] * 3, CropGeometry(32, 15, "fluorescence"))
    assert crops.shape == (3, 1, 32, 32) and masks.any((1, 2)).all()
    w = loss_weight(masks, dilation=2)
    assert w.shape == (3, 1, 32, 32) and (w[:, 0] >= masks).all() and w.sum() > masks.sum()


def test_real_dataset_readers():
    root = require_data()
    from napari_supn_anomaly.evaluation.datasets import (
        giemsa_fields, load_fl_cells, load_giemsa_cells, load_remoscope_fields,
    )
    val = load_fl_cells(root, "validation")
    assert len(val) == 100 and val.labels.sum() == 50 and val.masks[0].dtype == bool
    fields = giemsa_fields(root)
    assert len(fields) == 24
    g = load_giemsa_cells(root, fields=fields[:1])
    assert g.images[0].shape[0] == 3 and set(g.groups) == {fields[0]}
    rem = load_remoscope_fields(root)
    assert len(rem) == 7
    h, w = rem[0].image.shape
    assert all(0 <= b.y0 < b.y1 <= h and 0 <= b.x0 < b.x1 <= w for f in rem for b in f.boxes)
