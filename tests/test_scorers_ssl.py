"""Self-supervised scorers: the segmentation network trained on synthetic anomalies in healthy cells."""
import numpy as np
import pytest
import torch

from napari_supn_anomaly import scorers as R
from napari_supn_anomaly.models import ModelFileError

from _tiny_cells import S, disk_cells, tiny_model


@pytest.fixture(scope="module")
def model():
    torch.set_num_threads(1)
    return tiny_model(iters=60)


@pytest.mark.parametrize("name", ["ssl-fpi", "ssl-pii", "ssl-ppii", "ssl-ppii-he"])
def test_segmenter_trains_scores_and_round_trips(model, name, tmp_path):
    healthy, masks = disk_cells(16, seed=5)
    events = list(R.train_scorer(name, model, healthy, masks, iterations=25, pool_size=32))
    seg = events[-1]
    losses = [e[3] for e in events[:-1] if e[0] == "segmentation network"]
    assert losses[-1] < losses[0], "training did not lower the loss"
    test, tmask = disk_cells(3, seed=6, blob=True)
    out = R.score_cells_with(name, model, test, tmask, segmenter=seg)
    assert out.maps.shape == (3, S, S) and np.isfinite(out.maps).all()
    assert out.maps.min() >= 0 and out.maps.max() <= 1
    path = R.save_segmenter(tmp_path / name, seg, model)
    again = R.load_segmenter(path)
    np.testing.assert_allclose(R.score_cells_with(name, model, test, tmask, segmenter=again).maps, out.maps, atol=1e-6)
    assert (again.equaliser is not None) == name.endswith("-he")


def test_a_segmenter_is_only_used_for_its_own_generator(model):
    healthy, masks = disk_cells(8, seed=7)
    seg = list(R.train_scorer("ssl-fpi", model, healthy, masks, iterations=2, pool_size=8))[-1]
    with pytest.raises(ValueError, match="trained with 'fpi'"):
        R.score_cells_with("ssl-pii", model, healthy, masks, segmenter=seg)


def test_a_sup_model_file_is_not_a_segmenter(model, tmp_path):
    path = model.save(tmp_path / "m")
    with pytest.raises(ModelFileError, match="not a self-supervised scorer"):
        R.load_segmenter(path)
