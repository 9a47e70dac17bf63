"""The built-in samples load with their truth, named for what it marks."""
from __future__ import annotations

import numpy as np
import pytest

from napari_supn_anomaly.sample_data import SAMPLES, giemsa_sample, load_sample


@pytest.mark.parametrize("key", list(SAMPLES))
def test_every_sample_loads_with_cells_and_truth_in_its_planes(key):
    sample = load_sample(key)
    planes = sample.image.shape[:-1] if sample.axes.endswith("S") else sample.image.shape
    assert sample.cells.shape == sample.parasites.shape == planes
    assert sample.cells.max() > 0 and sample.parasites.max() > 0
    truth = sample.truth(0)
    assert len(truth.infected) > 0 and len(truth.healthy) > len(truth.infected)


def test_the_giemsa_sample_is_real_cells_whose_truth_is_each_infected_cell():
    sample = load_sample("giemsa")
    assert sample.truth_kind == "infected cells" and sample.truth_name.endswith("true infected cells")
    assert sample.image.dtype == np.uint8 and sample.image.shape[-1] == 3
    assert 50 < sample.cell_diameter_px < 90  # Plymouth's cells at their own magnification
    for plane in range(sample.n_planes):
        cells, truth = sample.cells[plane], sample.parasites[plane]
        for label in np.unique(truth[truth > 0]):
            covered = np.unique(cells[truth == label])
            assert len(covered) == 1 and covered[0] > 0                   # one cell ...
            assert np.array_equal(cells == covered[0], truth == label)     # ... and all of it


def test_the_napari_sample_layers_name_the_truth():
    (image, image_meta, kind), (truth, truth_meta, truth_kind) = giemsa_sample()
    assert kind == "image" and image_meta["rgb"] and truth_kind == "labels"
    assert truth_meta["name"] == f"{image_meta['name']} true infected cells" and not truth_meta["visible"]


def test_a_sample_missing_a_file_says_which(tmp_path, monkeypatch):
    import shutil

    import napari_supn_anomaly.sample_data as samples

    stem = SAMPLES["giemsa"][0]
    for suffix in ("", "_cells"):
        shutil.copy(samples.sample_folder() / f"{stem}{suffix}.tif", tmp_path)
    monkeypatch.setattr(samples, "sample_folder", lambda: tmp_path)
    with pytest.raises(FileNotFoundError, match=f"{stem}_infected_cells.tif is missing"):
        load_sample("giemsa")
