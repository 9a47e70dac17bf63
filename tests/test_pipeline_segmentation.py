"""Classical cell segmentation for bright cells on dark, dark cells on light and stained RGB."""
from __future__ import annotations

import numpy as np
import pytest

from napari_supn_anomaly.cells import MODALITIES, segment_cells
from napari_supn_anomaly.errors import NoCellsFound
from napari_supn_anomaly.synthetic import make_field


def matched_fraction(found: np.ndarray, truth: np.ndarray, min_iou: float = 0.6) -> float:
    """Fraction of true whole cells that one found cell overlaps with IoU >= min_iou."""
    edge = set(np.concatenate([truth[0], truth[-1], truth[:, 0], truth[:, -1]]))
    ids = [i for i in range(1, truth.max() + 1) if i not in edge and (truth == i).any()]
    hits = 0
    for i in ids:
        t = truth == i
        overlap = np.bincount(found[t], minlength=found.max() + 1)
        overlap[0] = 0
        j = overlap.argmax()
        if j and overlap[j] / np.logical_or(t, found == j).sum() >= min_iou:
            hits += 1
    return hits / len(ids)


@pytest.mark.parametrize("modality", MODALITIES)
def test_segmentation_finds_the_cells(modality):
    f = make_field((384, 384), modality, cell_diameter=36, seed=5, touching=0.3)
    plane = np.moveaxis(f.image, -1, 0) if f.image.ndim == 3 else f.image
    seg = segment_cells(plane, modality)
    assert matched_fraction(seg.labels, f.cells) >= 0.9
    assert 30 < seg.diameter_px < 42
    # cells cut by the field edge are found and flagged, and left out on request
    border = np.unique(np.concatenate([seg.labels[0], seg.labels[-1], seg.labels[:, 0], seg.labels[:, -1]]))
    assert seg.edge[border[border > 0]].all() and seg.edge.sum() == len(border[border > 0])
    kept = segment_cells(plane, modality, exclude_edges=True).labels
    assert not np.concatenate([kept[0], kept[-1], kept[:, 0], kept[:, -1]]).any()


def test_touching_cells_are_split():
    yy, xx = np.mgrid[:100, :160]
    img = np.full((100, 160), 20.0)
    for cx in (55, 87):   # two discs of diameter 36 whose centres are 32 px apart
        img[(yy - 50) ** 2 + (xx - cx) ** 2 < 18 ** 2] = 130
    seg = segment_cells(img, "fluorescence", cell_diameter=36)
    assert seg.labels.max() == 2


def test_size_filter_drops_debris():
    yy, xx = np.mgrid[:120, :120]
    img = np.full((120, 120), 20.0)
    img[(yy - 60) ** 2 + (xx - 60) ** 2 < 18 ** 2] = 130
    img[10:13, 10:13] = 200  # debris
    seg = segment_cells(img, "fluorescence", cell_diameter=36)
    assert seg.labels.max() == 1 and seg.labels[60, 60] == 1 and seg.labels[11, 11] == 0


def test_bad_planes_are_refused_with_a_reason():
    with pytest.raises(ValueError, match="constant"):
        segment_cells(np.full((64, 64), 3.0))
    nan = np.random.default_rng(0).random((64, 64))
    nan[1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        segment_cells(nan)
    noise = np.random.default_rng(0).normal(100, 1, (64, 64))
    with pytest.raises(NoCellsFound):
        segment_cells(noise, cell_diameter=40)
