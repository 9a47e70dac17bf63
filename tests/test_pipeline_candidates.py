"""Candidate regions, the cell and candidate tables, and re-thresholding without the model."""
from __future__ import annotations

import numpy as np
import pandas as pd

from napari_supn_anomaly.pipeline.candidates import (
    candidate_regions,
    candidate_table,
    cell_table,
    strongest_region_per_cell,
)
from napari_supn_anomaly.pipeline.result import DetectionResult


def two_cells():
    labels = np.zeros((40, 60), np.int32)
    labels[5:35, 5:30] = 1
    labels[5:35, 30:55] = 2
    heat = np.zeros((40, 60), np.float32)
    heat[labels > 0] = 1.0
    heat[10:13, 10:13] = 9.0          # a strong region in cell 1
    heat[20:22, 28:32] = 6.0          # a region across the border of cells 1 and 2
    return heat, labels


def test_cell_table_scores_are_the_max_inside_each_cell():
    heat, labels = two_cells()
    table = cell_table(heat, labels)
    assert list(table["cell_id"]) == [1, 2]
    assert list(table["score"]) == [9.0, 6.0]
    assert list(table["area"]) == [750, 750]


def test_one_marker_per_candidate_cell_at_its_strongest_region():
    heat, labels = two_cells()
    table = candidate_table(heat, labels, 5.0)  # cell 1: the strong region and its half of the border one
    assert sorted(table["cell_id"]) == [1, 1, 2]
    markers = strongest_region_per_cell(table)
    assert list(markers["cell_id"]) == [1, 2] and list(markers["score"]) == [9.0, 6.0]
    assert markers.iloc[0][["y", "x"]].tolist() == [10.0, 10.0]
    stack = pd.concat([table.assign(plane=0), table.assign(plane=1)], ignore_index=True)
    assert len(strongest_region_per_cell(stack)) == 4  # cell ids restart in every plane
    assert len(strongest_region_per_cell(table.iloc[:0])) == 0


def test_regions_are_split_at_cell_borders():
    heat, labels = two_cells()
    regions = candidate_regions(heat, labels, 5.0)
    assert regions.max() == 3
    table = candidate_table(heat, labels, 5.0)
    assert sorted(table["cell_id"]) == [1, 1, 2]
    strong = table.loc[table["score"].idxmax()]
    assert strong["area"] == 9 and strong["cell_id"] == 1 and 10 <= strong["y"] <= 12
    assert (table["status"] == "candidate").all()
    assert len(candidate_table(heat, labels, 5.0, min_area=5)) == 1   # the border halves have 4 px each


def test_rethresholding_a_result_needs_no_model():
    heat, labels = two_cells()
    result = DetectionResult(heat, labels, cell_table(heat, labels), None, 0.0).with_threshold(5.0)
    assert len(result.candidate_table) == 3 and result.cell_table["candidate"].tolist() == [True, True]
    higher = result.with_threshold(7.0)
    assert len(higher.candidate_table) == 1 and higher.cell_table["candidate"].tolist() == [True, False]
    assert higher.provenance["threshold"] == 7.0 and result.threshold == 5.0   # the original is unchanged
    # a cell is a candidate exactly when its score reaches the threshold
    for thr in (0.5, 6.0, 8.0, 10.0):
        r = result.with_threshold(thr)
        assert (r.cell_table["candidate"] == (r.cell_table["score"] >= thr)).all()


def test_stack_results_have_plane_columns():
    heat, labels = two_cells()
    heat3 = np.stack([heat, heat * 0, heat])
    labels3 = np.stack([labels] * 3)
    cells = pd.concat([cell_table(heat3[k], labels3[k]).assign(plane=k) for k in range(3)], ignore_index=True)
    result = DetectionResult(heat3, labels3, cells, None, 0.0, plane_axes="T").with_threshold(5.0)
    table = result.candidate_table
    assert {"plane", "t"} <= set(table.columns)
    assert sorted(set(table["plane"])) == [0, 2] and len(table) == 6
    assert list(table["candidate_id"]) == list(range(1, 7))
    assert result.cell_table.groupby("plane")["candidate"].sum().tolist() == [2, 0, 2]
    assert result.candidate_mask().shape == heat3.shape


def test_candidate_table_measures_each_region_as_scipy_does():
    """Measured on the regions' pixels alone, equal to scipy.ndimage's measurements of the whole image;
    a region's peak is its first highest pixel in row order."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(3)
    heat = (ndi.gaussian_filter(rng.normal(size=(180, 150)), 2) * 10).astype(np.float32)
    labels, _ = ndi.label(ndi.gaussian_filter(rng.normal(size=(180, 150)), 4) > 0.02)
    labels = (labels * 7).astype(np.int32)  # ids with gaps
    threshold = float(np.quantile(heat, 0.7))
    table = candidate_table(heat, labels, threshold, min_area=1)
    regions = candidate_regions(heat, labels, threshold)
    ids = np.arange(1, regions.max() + 1)
    assert len(table) == len(ids) > 20
    np.testing.assert_array_equal(table["area"], ndi.sum_labels(np.ones_like(regions), regions, ids))
    np.testing.assert_array_equal(table["score"], ndi.maximum(heat, regions, ids))
    np.testing.assert_allclose(table["mean_score"], ndi.mean(heat, regions, ids), rtol=1e-6)
    peaks = np.array(ndi.maximum_position(heat, regions, ids))
    np.testing.assert_array_equal(table[["y", "x"]].to_numpy(), peaks)
    np.testing.assert_array_equal(table["cell_id"], labels[peaks[:, 0], peaks[:, 1]])

    flat = np.zeros((3, 6), np.float32)
    flat[1, 1:5] = [2, 5, 5, 1]
    tie = candidate_table(flat, np.ones((3, 6), np.int32), 1.0)
    assert (tie["y"].tolist(), tie["x"].tolist()) == ([1.0], [2.0])
