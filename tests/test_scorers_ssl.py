"""Self-supervised scorers: the segmentation network trained on synthetic anomalies in healthy cells."""
import numpy as np
import pytest
import torch

from napari_supn_anomaly import scoring as R
from napari_supn_anomaly.errors import ModelFileError, ScorerUnavailable

from _tiny_cells import S, disk_cells, tiny_model


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return tiny_model(iters=60)


@pytest.mark.parametrize("name", ["ssl-fpi", "ssl-pii", "ssl-ppii", "ssl-ppii-he"])
def test_segmenter_trains_scores_and_round_trips(model, name, tmp_path):
    healthy, masks = disk_cells(16, seed=5)
    events = list(R.train_network(name, model, healthy, masks, iterations=25, pool_size=32))
    seg = events[-1]
    losses = [e.loss for e in events[:-1] if e.stage == "segmentation network"]
    assert losses[-1] < losses[0], "training did not lower the loss"
    test, tmask = disk_cells(3, seed=6, blob=True)
    out = R.resolve(model, name, seg).score(test, tmask)
    assert out.maps.shape == (3, S, S) and np.isfinite(out.maps).all()
    assert out.maps.min() >= 0 and out.maps.max() <= 1
    path = R.save_network(tmp_path / name, seg, model)
    again = R.load_network(path)
    np.testing.assert_allclose(R.resolve(model, name, again).score(test, tmask).maps, out.maps, atol=1e-6)
    assert (again.equaliser is not None) == name.endswith("-he")


def test_a_segmenter_is_only_used_for_its_own_generator(model):
    healthy, masks = disk_cells(8, seed=7)
    seg = list(R.train_network("ssl-fpi", model, healthy, masks, iterations=2, pool_size=8))[-1]
    with pytest.raises(ScorerUnavailable, match="trained for 'ssl-fpi', not 'ssl-pii'"):
        R.resolve(model, "ssl-pii", seg)


def test_a_sup_model_file_is_not_a_segmenter(model, tmp_path):
    path = model.save(tmp_path / "m")
    with pytest.raises(ModelFileError, match="not a self-supervised scorer"):
        R.load_network(path)
