"""Single-cell crop standardisation and the dataset readers."""
import numpy as np
import pytest
from conftest import require_data

from napari_supn_anomaly.cells import (
    CropGeometry,
    crop_scale,
    equivalent_diameter,
    find_cell_mask,
    loss_weight,
    standardise_crop,
    standardise_crops,
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
    crops, masks, _ = standardise_crops(imgs, [None] * 3, CropGeometry(32, 15, "fluorescence"))
    assert crops.shape == (3, 1, 32, 32) and masks.any((1, 2)).all()
    w = loss_weight(masks, dilation=2)
    assert w.shape == (3, 1, 32, 32) and (w[:, 0] >= masks).all() and w.sum() > masks.sum()


def test_real_dataset_readers():
    root = require_data()
    from napari_supn_anomaly.evaluation.datasets import (
        giemsa_fields,
        load_fl_cells,
        load_giemsa_cells,
        load_remoscope_fields,
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


def test_fast_resize_equals_skimage_resize():
    """cells.resize (sparse per-axis operators) against skimage.transform.resize, which the field
    path used before: linear to float32 rounding with and without anti-aliasing, labels exactly."""
    from skimage import transform

    from napari_supn_anomaly.cells.measure import cell_ids
    from napari_supn_anomaly.cells.resize import resize_linear, resize_nearest

    rng = np.random.default_rng(3)
    shapes = [(2, 2, 9, 9), (5, 7, 2, 3), (3, 40, 1, 10), (1, 9, 4, 3), (64, 64, 64, 64), (64, 64, 32, 64),
              (100, 60, 100, 30), (9, 9, 3, 3), (10, 10, 5, 5), (7, 7, 14, 14), (213, 100, 100, 47)]
    for _ in range(25):
        h, w = rng.integers(1, 160, 2)
        s = rng.uniform(0.2, 3.0)
        shapes.append((h, w, max(1, round(h * s)), max(1, round(w * s))))
    for h, w, oh, ow in shapes:
        image = (rng.random((h, w)) * 1000).astype(np.float32)
        labels = rng.integers(0, 30, (h, w)).astype(np.int32)
        for anti_aliasing in (False, True):
            want = transform.resize(image, (oh, ow), order=1, anti_aliasing=anti_aliasing, preserve_range=True)
            got = resize_linear(image, (oh, ow), anti_aliasing)
            assert got.dtype == np.float32 and got.shape == (oh, ow) and got.flags.c_contiguous
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-6 * 1000, err_msg=str((h, w, oh, ow)))
        want = transform.resize(labels, (oh, ow), order=0, preserve_range=True, anti_aliasing=False)
        np.testing.assert_array_equal(resize_nearest(labels, (oh, ow)), want)
        assert resize_nearest(labels, (oh, ow)).dtype == labels.dtype
        unique = np.unique(labels)
        np.testing.assert_array_equal(cell_ids(labels), unique[unique > 0])
    # flat 8-bit regions stay exactly their integer (histogram-equalising scorers step there)
    flat = np.full((300, 260), 37, np.uint8)
    flat[:, 130:] = 200
    for anti_aliasing in (False, True):
        values = set(np.unique(resize_linear(flat, (141, 122), anti_aliasing)[:, :40]))
        assert values == {37.0}
    huge = np.array([[0, 2 ** 40, 5], [5, 0, 0]])  # ids far above the pixel count: np.unique
    np.testing.assert_array_equal(cell_ids(huge), [5, 2 ** 40])
    for dtype in (np.uint8, np.uint16, np.uint64, np.int64):
        ids = cell_ids(np.array([[0, 3, 3], [1, 0, 9]], dtype))
        assert ids.dtype == dtype and ids.tolist() == [1, 3, 9]


def _skimage_standardise_crop(image, mask, crop_size, scale):
    """standardise_crop as it was written with skimage.transform (the reference for cells.resize)."""
    from scipy import ndimage as ndi
    from skimage import transform

    from napari_supn_anomaly.cells.crops import background_value

    image, mask = np.asarray(image, np.float32), np.asarray(mask, bool)
    fill = background_value(image, mask)
    image = np.stack([transform.rescale(ch, scale, order=1, anti_aliasing=scale < 1, preserve_range=True)
                      for ch in image]).astype(np.float32)
    mask = transform.resize(mask.astype(np.float32), image.shape[1:], order=1) > 0.5
    cy, cx = (round(v) for v in ndi.center_of_mass(mask))
    out = np.empty((image.shape[0], crop_size, crop_size), np.float32)
    out[:] = fill[:, None, None]
    out_mask = np.zeros((crop_size, crop_size), bool)
    y0, x0 = cy - crop_size // 2, cx - crop_size // 2
    sy0, sx0, sy1, sx1 = max(0, y0), max(0, x0), min(mask.shape[0], y0 + crop_size), min(mask.shape[1], x0 + crop_size)
    out[:, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = image[:, sy0:sy1, sx0:sx1]
    out_mask[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = mask[sy0:sy1, sx0:sx1]
    return out, out_mask


def test_standardise_crop_equals_the_skimage_version():
    """Masks exactly (they often interpolate to exactly 0.5), intensities to float32 rounding."""
    rng = np.random.default_rng(4)
    for k in range(30):
        h, w = rng.integers(40, 130, 2)
        mask = disc(h, w, h / 2 + rng.uniform(-5, 5), w / 2 + rng.uniform(-5, 5), rng.uniform(10, min(h, w) / 2.2))
        image = rng.normal(100, 10, (1 + 2 * (k % 2), h, w)).astype(np.float32)
        image[:, mask] += 80
        for scale in (0.444, 0.5, 0.7, 1.3, 2.0):
            got, got_mask = standardise_crop(image, mask, 64, scale)
            want, want_mask = _skimage_standardise_crop(image, mask, 64, scale)
            np.testing.assert_array_equal(got_mask, want_mask)
            np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * np.abs(want).max())


def test_numbering_cells_consecutively_keeps_their_order_and_the_background():
    from napari_supn_anomaly.cells.measure import number_consecutively

    for labels in (np.array([[0, 7, 7], [3, 0, 12]], np.int32), np.array([[5, 2 ** 40], [0, 5]], np.int64),
                   np.zeros((2, 3), np.int32), np.array([[4, 4], [9, 4]], np.uint16)):
        ids, inverse = np.unique(labels, return_inverse=True)
        expected = inverse.reshape(labels.shape) + (ids[0] != 0)
        numbered = number_consecutively(labels)
        assert numbered.dtype == np.int32
        np.testing.assert_array_equal(numbered, expected)


def test_a_cells_centre_moves_with_the_window_it_is_cut_from():
    """A centroid on a half pixel rounds the same way at any offset: a block of a big plane (cut at
    odd offsets too) cuts a cell's crop around the same pixel as the whole plane."""
    from napari_supn_anomaly.cells.measure import cell_centres

    labels = np.zeros((40, 40), np.int32)
    labels[10:14, 20:26] = 1   # centroid (11.5, 22.5)
    whole = cell_centres(labels, np.array([1]))[0]
    for dy, dx in ((1, 0), (0, 3), (5, 7)):
        assert (cell_centres(labels[dy:, dx:], np.array([1]))[0] + (dy, dx) == whole).all()
