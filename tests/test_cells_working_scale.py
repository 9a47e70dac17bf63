"""Large cells are found on a shrunk copy of the field (cells/working_scale.py): the same cells,
outlines that follow them, and small or crowded cells left at full size."""
from __future__ import annotations

import dataclasses

import numpy as np
from test_cells_finder import discs

from napari_supn_anomaly.cells import segment_cells
from napari_supn_anomaly.cells.finder import DEFAULT_SETTINGS
from napari_supn_anomaly.cells.working_scale import grow_labels, working_scale

FULL_SIZE = dataclasses.replace(DEFAULT_SETTINGS, work_diameter=0.0)


def _grid(radius: int, n: int = 3, gap: int = 24):
    step = 2 * radius + gap
    centres = [(radius + gap + step * i, radius + gap + step * j) for i in range(n) for j in range(n)]
    side = step * n + gap
    return discs((side, side), centres, radius, 130, 20), centres


def test_large_cells_are_found_shrunk_with_the_same_cells_and_size():
    img, centres = _grid(70)  # cells 140 px wide: found at 64 / 140 of the size
    scale, work, diameter, _ = working_scale(img[None].astype(np.float32), "fluorescence", None, DEFAULT_SETTINGS)
    assert 0.4 < scale < 0.5 and work.shape[1] < 0.5 * img.shape[0] and 130 < diameter < 150
    seg = segment_cells(img, "fluorescence")
    full = segment_cells(img, "fluorescence", settings=FULL_SIZE)
    assert seg.labels.shape == img.shape and seg.measured
    assert seg.n_cells == full.n_cells == 9
    assert len({int(seg.labels[y, x]) for y, x in centres} - {0}) == 9
    assert abs(seg.diameter_px - full.diameter_px) < 0.05 * full.diameter_px
    # outlines lie within two pixels of the cells' edge on average (full size: 0.9 px, shrunk:
    # 1.7 px, on cells 140 px wide), not a shrunk pixel's staircase
    truth = img > 75
    perimeter = 9 * 2 * np.pi * 70
    assert ((seg.labels > 0) ^ truth).sum() / perimeter < 2.0
    assert ((full.labels > 0) ^ truth).sum() / perimeter < 1.0


def test_a_given_large_diameter_sets_the_scale_without_measuring():
    img, _ = _grid(70)
    scale, _, diameter, _ = working_scale(img[None].astype(np.float32), "fluorescence", 140.0, DEFAULT_SETTINGS)
    assert scale == DEFAULT_SETTINGS.work_diameter / 140.0 and diameter == 140.0
    seg = segment_cells(img, "fluorescence", cell_diameter=140.0)
    assert seg.n_cells == 9 and not seg.measured and seg.diameter_px == 140.0


def test_cells_near_the_working_size_are_found_at_full_size_exactly_as_before():
    img, _ = _grid(20)
    scale, work, diameter, _ = working_scale(img[None].astype(np.float32), "fluorescence", None, DEFAULT_SETTINGS)
    assert scale == 1.0 and work.shape[1:] == img.shape
    seg = segment_cells(img, "fluorescence")
    full = segment_cells(img, "fluorescence", settings=FULL_SIZE)
    assert np.array_equal(seg.labels, full.labels) and seg.diameter_px == full.diameter_px
    # a plane this small is measured at full size, as the finder measures it, and the finder takes that over
    assert diameter == full.diameter_px and seg.measured


def test_a_large_plane_is_measured_on_a_half_size_subsample_first(monkeypatch):
    from napari_supn_anomaly.cells import working_scale as module

    img, _ = _grid(20)
    monkeypatch.setattr(module, "FULL_SIZE_MEASURE", img.size - 1)
    scale, work, diameter, foreground = working_scale(img[None].astype(np.float32), "fluorescence", None,
                                                      DEFAULT_SETTINGS)
    assert scale == 1.0 and diameter is None and foreground is None  # the finder measures it itself
    seg = segment_cells(img, "fluorescence")
    full = segment_cells(img, "fluorescence", settings=FULL_SIZE)
    assert np.array_equal(seg.labels, full.labels)


def test_grown_labels_keep_every_object_and_follow_a_smooth_outline():
    yy, xx = np.mgrid[:40, :40]
    small = np.zeros((40, 40), np.int32)
    small[(yy - 12) ** 2 + (xx - 12) ** 2 < 8 ** 2] = 1
    small[(yy - 12) ** 2 + (xx - 27) ** 2 < 7 ** 2] = 2  # touching the first
    small[30:32, 30:32] = 3                              # a speck of 2 x 2 shrunk pixels
    grown = grow_labels(small, (120, 120))
    assert set(np.unique(grown)) == {0, 1, 2, 3}
    yy, xx = np.mgrid[:120, :120]
    disc = (yy - 37) ** 2 + (xx - 37) ** 2 < 24 ** 2
    assert ((grown == 1) ^ disc).sum() / disc.sum() < 0.08
