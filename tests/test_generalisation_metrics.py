"""The whole-field numbers of docs/benchmarks/generalisation.md on a field whose answer is known."""
from __future__ import annotations

import numpy as np

from napari_supn_anomaly.evaluation.field_sets import (
    FoundCells,
    StainedField,
    find_cells,
    saturation_map,
)
from napari_supn_anomaly.evaluation.generalisation import ScoredField, summarise


def _field():
    """Four square cells; a parasite in cells 1 and 2, one outside every cell; cell 3 touches nothing."""
    labels = np.zeros((40, 40), np.int32)
    labels[2:12, 2:12], labels[2:12, 20:30], labels[20:30, 2:12], labels[20:30, 20:30] = 1, 2, 3, 4
    parasites = np.zeros((40, 40), bool)
    parasites[4:8, 4:8] = True       # in cell 1
    parasites[4:8, 22:26] = True     # in cell 2
    parasites[34:37, 34:37] = True   # outside every cell: no found cell can hold it
    heatmap = np.zeros((40, 40), np.float32)
    heatmap[4:8, 4:8] = 5.0          # the map finds the parasite of cell 1 only
    heatmap[22:24, 22:24] = 3.0      # and a false spot in healthy cell 4
    ids = np.arange(1, 5)
    return labels, parasites, heatmap, ids


def test_summary_counts_parasites_cells_and_pixels():
    labels, parasites, heatmap, ids = _field()
    infected = np.array([True, True, False, False])
    healthy = ~infected
    candidate = np.array([True, False, False, True])  # cells 1 and 4 flagged
    scores = np.array([5.0, 0.0, 0.0, 3.0])
    f = ScoredField("f", "s", heatmap, labels, ids, scores, candidate, infected, healthy, parasites)
    out = summarise([f])
    assert out["n_parasites"] == 3
    assert np.isclose(out["parasites_in_found_cell"], 2 / 3)
    assert np.isclose(out["parasites_on_candidate"], 1 / 3)
    assert np.isclose(out["false_per_100"], 50.0)      # 1 of the 2 healthy cells
    assert np.isclose(out["auroc"], 0.625)  # pairs (infected, healthy): 5>0, 5>3, 0=0 (half), 0<3
    assert 0 < out["pixel_ap_field"] < out["pixel_ap_cells"] <= 1.0  # the parasite outside cells costs recall


def test_found_cells_mark_infected_and_healthy_cells_and_saturation_is_a_stain_map():
    rgb = np.full((3, 60, 60), 240.0, np.float32)
    yy, xx = np.mgrid[:60, :60]
    for cy, cx in ((15, 15), (15, 45), (45, 15), (45, 45)):
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < 9 ** 2
        rgb[:, disc] = np.array([200.0, 150.0, 170.0])[:, None]
    parasites = np.zeros((60, 60), bool)
    parasites[13:18, 13:18] = True
    rgb[:, parasites] = np.array([90.0, 40.0, 140.0])[:, None]
    cells = find_cells(StainedField("f", "s", rgb, parasites))
    assert isinstance(cells, FoundCells) and len(cells.ids) >= 3
    assert cells.infected.sum() == 1 and not (cells.infected & cells.healthy).any()
    sat = saturation_map(rgb)
    assert sat[parasites].min() > sat[~parasites].max() - 1e-6


def test_a_parasite_belongs_to_the_cell_holding_most_of_its_mask():
    """A generous mask reaching 12 px into the neighbour makes that neighbour neither infected nor
    healthy; a piece of mask under INFECTED_MIN_PX makes no cell infected."""
    from napari_supn_anomaly.evaluation.field_sets import INFECTED_MIN_PX, parasites_cells

    labels = np.zeros((20, 40), np.int32)
    labels[:, :20], labels[:, 20:] = 1, 2
    parasites = np.zeros((20, 40), bool)
    parasites[2:8, 10:22] = True              # 60 px in cell 1, 12 in cell 2
    parasites[15, 30:30 + INFECTED_MIN_PX - 1] = True  # too small for any cell
    np.testing.assert_array_equal(parasites_cells(parasites, labels), [False, True, False])
    assert not parasites_cells(np.zeros_like(parasites), labels).any()

