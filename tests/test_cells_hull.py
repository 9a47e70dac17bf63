"""The finder's convex hulls, drawn row by row, are skimage's to the pixel."""
from __future__ import annotations

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage import measure, morphology

from napari_supn_anomaly.cells.hull import _bounding_pixels, convex_image, hull_runs, solid_objects, solidity


def _masks():
    rng = np.random.default_rng(0)
    yield from (rng.random((rng.integers(1, 40), rng.integers(1, 40))) < rng.uniform(0.03, 0.9) for _ in range(60))
    yy, xx = np.mgrid[:61, :61]
    yield (yy - 30) ** 2 + (xx - 30) ** 2 < 29 ** 2  # a disc
    yield ((yy - 30) ** 2 + (xx - 30) ** 2 < 29 ** 2) & ((yy - 30) ** 2 + (xx - 45) ** 2 >= 22 ** 2)  # a crescent
    yield np.eye(17, dtype=bool)  # a diagonal line
    yield np.ones((1, 9), bool)   # a row
    yield np.ones((1, 1), bool)   # one pixel


@pytest.mark.parametrize("mask", list(_masks()))
def test_the_hull_and_the_solidity_equal_skimages(mask):
    if not mask.any():
        assert not convex_image(mask).any() and solidity(mask) == 0.0
        return
    np.testing.assert_array_equal(convex_image(mask), morphology.convex_hull_image(mask))
    expected = measure.regionprops(mask.astype(np.uint8))[0].solidity
    assert solidity(mask) == pytest.approx(expected, abs=1e-12)


def test_solid_objects_match_solidity_and_the_bound_holds():
    rng = np.random.default_rng(3)
    yy, xx = np.mgrid[:120, :150]
    for trial in range(12):
        if trial % 2:
            mask = ndi.gaussian_filter(rng.random((120, 150)), rng.uniform(2, 6)) > rng.uniform(0.5, 0.6)
        else:  # rotated ellipses, some overlapping: round cells, pairs and clumps
            mask = np.zeros((120, 150), bool)
            for _ in range(8):
                cy, cx, ra, rb, th = rng.uniform(10, 110), rng.uniform(10, 140), *rng.uniform(2, 20, 2), rng.uniform(0, np.pi)
                u = (yy - cy) * np.cos(th) + (xx - cx) * np.sin(th)
                v = (xx - cx) * np.cos(th) - (yy - cy) * np.sin(th)
                mask |= (u / ra) ** 2 + (v / rb) ** 2 <= 1
        labels = measure.label(mask)
        n = int(labels.max())
        candidates = np.ones(n + 1, bool)
        candidates[0] = False
        candidates[1::3] = False  # objects left out stay False
        solid = solid_objects(labels, candidates, 0.9)
        bound = _bounding_pixels(labels, n)
        assert not solid[0]
        for region in measure.regionprops(labels):
            assert solid[region.label] == (candidates[region.label] and solidity(region.image) >= 0.9)
            rows, first, last = hull_runs(region.image)
            assert (last - first + 1).sum() <= bound[region.label]
