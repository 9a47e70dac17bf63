"""The synthetic field generator and the parasite matching used to score detections."""
from __future__ import annotations

import numpy as np
import pytest

from napari_supn_anomaly.cells import MODALITIES
from napari_supn_anomaly.synthetic import healthy_cell_crops, make_field, match_parasites


@pytest.mark.parametrize("modality", MODALITIES)
def test_fields_have_truth_and_look_like_their_modality(modality):
    f = make_field((256, 256), modality, cell_diameter=36, infected_fraction=0.5, seed=4)
    assert f.image.dtype == np.uint8
    assert f.image.shape == ((256, 256, 3) if modality == "brightfield-stained" else (256, 256))
    assert f.cells.shape == f.parasites.shape == (256, 256)
    assert f.cells.max() > 10 and f.parasites.max() > 0 and len(f.infected) > 0
    # every parasite lies in an infected cell, never in the background
    assert (f.cells[f.parasites > 0] > 0).all()
    assert set(np.unique(f.cells[f.parasites > 0])) == set(f.infected)
    grey = f.image.astype(float).mean(-1) if f.image.ndim == 3 else f.image.astype(float)
    inside, outside = np.median(grey[f.cells > 0]), np.median(grey[f.cells == 0])
    if modality == "fluorescence":
        assert 15 < outside < 40 and 100 < inside < 170   # as the real supn_fl_cells crops
    else:
        assert inside < outside - 20                      # dark (or stained) cells on light


def test_cells_cut_by_the_edge_are_never_infected():
    f = make_field((256, 256), "fluorescence", infected_fraction=1.0, seed=1)
    edge = np.unique(np.concatenate([f.cells[0], f.cells[-1], f.cells[:, 0], f.cells[:, -1]]))
    assert not set(edge) & set(f.infected)


def test_same_seed_same_field_and_other_seed_differs():
    a = make_field((128, 128), "fluorescence", seed=7)
    b = make_field((128, 128), "fluorescence", seed=7)
    c = make_field((128, 128), "fluorescence", seed=8)
    assert np.array_equal(a.image, b.image) and not np.array_equal(a.image, c.image)


def test_fluorescence_parasites_are_brighter_than_their_cell():
    f = make_field((256, 256), "fluorescence", infected_fraction=1.0, seed=2)
    for cid in f.infected:
        cell = f.image[(f.cells == cid) & (f.parasites == 0)].astype(float)
        spot = f.image[(f.cells == cid) & (f.parasites > 0)].astype(float)
        assert spot.max() > np.percentile(cell, 99)


def _inner_healthy(f) -> list[int]:
    """The healthy cells not cut by the field's edge (the ones a match counts)."""
    rim = np.concatenate([f.cells[0], f.cells[-1], f.cells[:, 0], f.cells[:, -1]])
    return [c for c in f.healthy if c not in rim]


def test_match_parasites_counts_found_and_false():
    f = make_field((256, 256), "fluorescence", infected_fraction=0.5, seed=3)
    perfect = match_parasites(f.parasites > 0, f)
    assert perfect.n_found == perfect.n_parasites > 0 and perfect.n_false == 0 and perfect.recall == 1.0
    nothing = match_parasites(np.zeros_like(f.cells), f)
    assert nothing.n_found == 0 and nothing.n_false == 0
    wrong = match_parasites(f.cells == _inner_healthy(f)[0], f)
    assert wrong.n_found == 0 and wrong.n_false == 1 and wrong.n_false_cells == 1
    total = perfect + wrong
    assert total.n_parasites == 2 * perfect.n_parasites and total.n_false == 1 and total.n_false_cells == 1


def test_false_candidates_are_counted_per_healthy_cell_as_the_sensitivity_counts_them():
    f = make_field((256, 256), "fluorescence", infected_fraction=0.0, seed=3)
    cell = f.cells == _inner_healthy(f)[0]
    ys, xs = np.nonzero(cell)
    two_spots = np.zeros_like(cell)
    two_spots[ys.min() + 2, xs.min():xs.max()] = cell[ys.min() + 2, xs.min():xs.max()]
    two_spots[ys.max() - 2, xs.min():xs.max()] = cell[ys.max() - 2, xs.min():xs.max()]
    m = match_parasites(two_spots, f, tolerance_px=0)
    assert m.n_false == 2 and m.n_false_cells == 1
    assert f"1 healthy cell of {m.n_healthy_cells} with a false candidate" in m.summary()
    assert "2 false candidate regions" in m.summary()


def test_healthy_crops_are_whole_cells():
    crops, masks = healthy_cell_crops("brightfield-stained", 5, cell_diameter=30, seed=0)
    assert len(crops) == 5 and crops[0].shape == (3, 60, 60) and masks[0].shape == (60, 60)
    assert all(m[30, 30] for m in masks)


def test_the_match_summary_gives_a_rate_that_means_something_when_false_candidates_outnumber_healthy_cells():
    from napari_supn_anomaly.synthetic import ParasiteMatch

    assert "(2.5 per 100 healthy cells)" in ParasiteMatch(45, 38, 42, 4, 161, 30, 4).summary()
    assert "(70 per 100 healthy cells)" in ParasiteMatch(45, 38, 42, 14, 20, 30, 14).summary()
    many = ParasiteMatch(8, 8, 49, 41, 18, 8, 12).summary()
    assert "12 healthy cells of 18 with a false candidate (67 per 100 healthy cells); 41 false candidate regions" in many
    assert "no false candidates on 18 healthy cells" in ParasiteMatch(8, 8, 8, 0, 18, 8, 0).summary()
