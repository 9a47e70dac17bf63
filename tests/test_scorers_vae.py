"""The VAE-derived scorers, the ensemble and the registry, on a tiny model of synthetic disk cells."""
import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from napari_supn_anomaly import scoring as R
from napari_supn_anomaly.errors import Cancelled, ScorerUnavailable
from napari_supn_anomaly.supn.vae_scorers import energy_projection, gaussian_blur, projection_energy

from _tiny_cells import S, disk_cells, tiny_model


@pytest.fixture(scope="module")
def setup():
    torch.set_num_threads(1)
    model = tiny_model()
    healthy, hmask = disk_cells(24, seed=2)
    blob, bmask = disk_cells(12, seed=3, blob=True)
    clean, cmask = disk_cells(12, seed=4)
    for name in ("combi", "combi-add", "ensemble", "supn+spots"):
        R.calibrate(R.resolve(model, name, require_calibration=False), healthy, hmask)
    crops = np.concatenate([clean, blob])
    masks = np.concatenate([cmask, bmask])
    labels = np.r_[np.zeros(12), np.ones(12)]
    return model, crops, masks, labels


INSTANT_MODEL_FREE = [n for n, s in R.REGISTRY.items() if not s.needs_network and not s.rgb_only]  # rgb: test_stain_saturation


@pytest.mark.parametrize("name", INSTANT_MODEL_FREE)
def test_each_scorer_gives_finite_maps_of_the_right_shape(setup, name):
    model, crops, masks, _ = setup
    out = R.resolve(model, name, require_calibration=False, steps=3).score(crops[:5], masks[:5])
    assert out.maps.shape == (5, S, S) and out.scores.shape == (5,)
    assert np.isfinite(out.maps).all() and np.isfinite(out.scores).all()
    # a cell's score is the max of its map inside the cell
    np.testing.assert_allclose(out.scores, [m[k].max() for m, k in zip(out.maps, masks[:5])], rtol=1e-5)


@pytest.mark.parametrize("name", ["recon", "grad-rec", "grad-elbo", "combi", "combi-add", "projection", "ensemble", "l2",
                                  "supn+spots"])
def test_reconstruction_type_scorers_rank_a_bright_blob_above_clean_cells(setup, name):
    model, crops, masks, labels = setup
    out = R.resolve(model, name, require_calibration=False, steps=10).score(crops, masks)
    assert roc_auc_score(labels, out.scores) >= 0.9, name
    # and the map peaks near the blob, inside the cell
    blob_maps = out.maps[labels == 1]
    assert np.isfinite(blob_maps).all()


def test_projection_lowers_the_energy_and_mostly_changes_the_anomaly(setup):
    model, crops, masks, labels = setup
    x0 = torch.from_numpy(model.normalise(crops[labels == 1][:4]))
    net = model.net
    before = projection_energy(net, x0, x0, 0.05).detach()
    xt = energy_projection(net, x0, steps=15)
    after = projection_energy(net, xt, x0, 0.05).detach()
    assert (after <= before + 1e-6).all() and (after < before).any()
    # the gradient reaches the encoder: the projection uses the whole network, not a detached reconstruction
    xg = x0.clone().requires_grad_(True)
    projection_energy(net, xg, x0, 0.0).sum().backward()
    assert xg.grad is not None and xg.grad.abs().sum() > 0


def test_gaussian_blur_keeps_mass_and_shape():
    m = torch.zeros(2, 16, 16)
    m[:, 8, 8] = 1.0
    b = gaussian_blur(m, 1.5)
    assert b.shape == m.shape
    assert float(b.sum()) == pytest.approx(2.0, rel=1e-4)
    assert float(b[0, 8, 8]) < 1.0


def test_combined_scorers_refuse_to_run_uncalibrated(setup):
    model, crops, masks, _ = setup
    fresh = model.copy()
    fresh.metadata.pop("calibration", None)
    with pytest.raises(ScorerUnavailable, match="no scorer 'combi'"):
        R.resolve(fresh, "combi")
    with pytest.raises(ScorerUnavailable, match="calibrated on healthy cells"):
        R.resolve(fresh, "combi", require_calibration=False).score(crops[:2], masks[:2])


def test_calibration_enables_thresholds_for_new_scorers(setup):
    model, crops, masks, _ = setup
    thr = model.threshold_for_fpr(0.1, scorer="combi")
    assert np.isfinite(thr)
    members = model.metadata["calibration"]["ensemble"]["members"]
    assert set(members) == set(R.ENSEMBLE_MEMBERS)


def test_registry_states_cost_classes_and_rejects_unknown_names(setup):
    model, crops, masks, _ = setup
    assert {s.cost for s in R.REGISTRY.values()} == {"instant", "slow", "needs training"}
    assert R.scorer_info("projection").cost == "slow"
    assert R.scorer_info("ssl-ppii").cost == "needs training"
    with pytest.raises(ScorerUnavailable, match="unknown scorer"):
        R.resolve(model, "nope")
    with pytest.raises(ScorerUnavailable, match="needs its trained network"):
        R.resolve(model, "ssl-fpi")


def test_cancel_between_batches(setup):
    model, crops, masks, _ = setup
    with pytest.raises(Cancelled):
        R.resolve(model, "recon", require_calibration=False).score(crops, masks, batch_size=4, should_stop=lambda: True)
