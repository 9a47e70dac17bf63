"""The finder's convex hulls, drawn row by row, are skimage's to the pixel."""
from __future__ import annotations

import numpy as np
import pytest
from skimage import measure, morphology

from napari_supn_anomaly.cells.hull import convex_image, solidity


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
