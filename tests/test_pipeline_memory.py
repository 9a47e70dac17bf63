"""A plane too large for the free memory is refused before anything is allocated."""
from __future__ import annotations

import numpy as np
import pytest

from _tiny_models import tiny_model
from napari_supn_anomaly.pipeline import memory
from napari_supn_anomaly.errors import PlaneTooLarge
from napari_supn_anomaly.pipeline.memory import check_plane_fits, plane_memory_bytes
from napari_supn_anomaly.pipeline.stacks import detect
from napari_supn_anomaly.scoring import resolve


def test_the_estimate_grows_with_pixels_and_channels():
    assert plane_memory_bytes(2000, 2000, 3) > plane_memory_bytes(2000, 2000, 1) > plane_memory_bytes(1000, 1000, 1)


def test_a_plane_that_does_not_fit_is_refused_with_what_to_do():
    check_plane_fits(512, 512, 1, available=2**30)
    with pytest.raises(PlaneTooLarge, match=r"30000 x 30000 pixels .* crop the image"):
        check_plane_fits(30000, 30000, 1, available=16 * 2**30)


def test_detect_refuses_before_reading_the_data(monkeypatch):
    monkeypatch.setattr(memory, "available_memory_bytes", lambda: 10 * 2**20)
    # a lazy array that fails if anything reads it
    class Unreadable:
        shape, ndim, dtype = (4000, 4000), 2, np.dtype(np.uint8)

        def __getitem__(self, key):
            raise AssertionError("the data was read")

        def __array__(self, *args, **kwargs):
            raise AssertionError("the data was read")

    with pytest.raises(ValueError, match="needs about"):
        detect(Unreadable(), "YX", resolve(tiny_model("fluorescence")))
