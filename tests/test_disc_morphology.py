"""The finder's disc morphology equals scipy's binary operations with skimage's disk, pixel for pixel."""
import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.morphology import disk

from napari_supn_anomaly.cells import disc_morphology
from napari_supn_anomaly.cells.disc_morphology import disc_closing, disc_dilation, disc_erosion, disc_opening, fill_holes

OPERATIONS = [(disc_erosion, ndi.binary_erosion), (disc_dilation, ndi.binary_dilation),
              (disc_opening, ndi.binary_opening), (disc_closing, ndi.binary_closing)]


def _masks(seed: int):
    rng = np.random.default_rng(seed)
    for _ in range(12):
        shape = (int(rng.integers(1, 50)), int(rng.integers(1, 70)))
        yield ndi.gaussian_filter(rng.random(shape), rng.uniform(0.5, 5)) > rng.uniform(0.4, 0.6)
    yield np.zeros((20, 30), bool)
    yield np.ones((20, 30), bool)
    touching = np.zeros((25, 25), bool)
    touching[:9, 10:] = True  # an object on the image's edge: the edge counts as outside
    yield touching


@pytest.mark.parametrize("scipy_radius", [0, disc_morphology.SCIPY_RADIUS])
def test_disc_operations_match_scipy(monkeypatch, scipy_radius):
    monkeypatch.setattr(disc_morphology, "SCIPY_RADIUS", scipy_radius)
    for mask in _masks(0):
        for radius in range(1, 10):
            for ours, theirs in OPERATIONS:
                expected = theirs(mask, disk(radius))
                got = ours(mask, radius)
                assert got.shape == expected.shape and (got == expected).all(), (ours.__name__, radius, mask.shape)


def test_radius_zero_is_the_mask():
    mask = next(_masks(1))
    for ours, _ in OPERATIONS:
        assert (ours(mask, 0) == mask).all()


def test_fill_holes_matches_scipy():
    for mask in _masks(2):
        assert (fill_holes(mask) == ndi.binary_fill_holes(mask)).all()
    ring = np.zeros((9, 9), bool)
    ring[2:7, 2:7] = True
    ring[4, 4] = False
    assert fill_holes(ring)[4, 4] and not fill_holes(ring)[0, 0]
