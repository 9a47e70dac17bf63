"""Score rules: the matched spot statistic against dense linear algebra, its null distribution,
and the window rules through anomaly_maps."""
import numpy as np
import pytest
import torch

from napari_supn_anomaly.supn import ArchConfig, SupnVAE
from napari_supn_anomaly.supn.precision import SupnFactor, n_cross_channel, n_off_diagonal
from napari_supn_anomaly.supn.scoring import (
    SCORE_RULES, _band_matrix, _gaussian_kernel, anomaly_maps, cell_scores, matched_spot_map, pixel_map,
)




def random_factor(radius, channels=1, h=7, w=8, batch=2, seed=0, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    log_diag = scale * torch.randn(batch, channels, h, w, generator=g, dtype=torch.float64)
    off = scale * torch.randn(batch, channels, n_off_diagonal(radius), h, w, generator=g, dtype=torch.float64)
    cross = None
    if channels > 1:
        cross = scale * torch.randn(batch, n_cross_channel(channels), h, w, generator=g, dtype=torch.float64)
    return SupnFactor(log_diag, off, cross, radius)


def dense_spot_statistic(factor, e, sigma):
    b, c, h, w = e.shape
    u = factor.dense_upper()
    lam = u.transpose(1, 2) @ u
    k = _gaussian_kernel(sigma, torch.float64, "cpu")
    rad = k.shape[0] // 2
    out = torch.zeros(b, h, w, dtype=torch.float64)
    for y in range(h):
        for x in range(w):
            s = torch.zeros(c, h + 2 * rad, w + 2 * rad, dtype=torch.float64)
            s[:, y:y + 2 * rad + 1, x:x + 2 * rad + 1] = k
            s = s[:, rad:rad + h, rad:rad + w].flatten()
            for i in range(b):
                out[i, y, x] = (s @ lam[i] @ e[i].flatten()) / torch.sqrt(s @ lam[i] @ s)
    return out


@pytest.mark.parametrize("radius,channels,sigma", [(0, 1, 1.0), (1, 1, 1.0), (2, 1, 0.7), (1, 2, 1.0), (2, 3, 1.5)])
def test_matched_spot_map_matches_dense(radius, channels, sigma):
    factor = random_factor(radius, channels)
    e = torch.randn(2, channels, 7, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    got = matched_spot_map(factor, e, sigma)
    want = dense_spot_statistic(factor, e, sigma)
    assert torch.allclose(got, want, atol=1e-10)


def test_spot_statistic_is_standard_normal_under_the_model_and_sees_a_spot():
    factor = random_factor(1, 1, h=24, w=24, batch=64, seed=3, scale=0.2)
    g = torch.Generator().manual_seed(4)
    residual = factor.solve(torch.randn(64, 1, 24, 24, generator=g, dtype=torch.float64))
    t = matched_spot_map(factor, residual, 1.0)[:, 4:20, 4:20]  # every pixel is N(0, 1)
    assert abs(float(t.mean())) < 0.05
    assert abs(float(t.std()) - 1.0) < 0.05
    yy, xx = torch.meshgrid(torch.arange(24.0), torch.arange(24.0), indexing="ij")
    spot = 3.0 * torch.exp(-((yy - 12) ** 2 + (xx - 12) ** 2) / 2.0)
    t_spot = matched_spot_map(factor, residual + spot, 1.0)
    assert float((t_spot[:, 12, 12] - matched_spot_map(factor, residual, 1.0)[:, 12, 12]).min()) > 0


def test_window_rules_through_anomaly_maps_match_pixel_map():
    torch.manual_seed(0)
    net = SupnVAE(ArchConfig(crop_size=16, latent_dim=4, widths=(4, 8), head_widths=(4, 4))).eval()
    x = torch.randn(3, 1, 16, 16)
    with torch.no_grad():
        mu, _ = net.encode(x)
        mean = net.decode_mean(mu)
        for lik in ("supn", "diag", "l2"):
            z = net.factor(lik, mu, mean).whiten(x - mean)
            for rule in ("paper", "bright", "dark"):
                assert torch.allclose(anomaly_maps(net, x, lik, SCORE_RULES[rule]), pixel_map(z, SCORE_RULES[rule]),
                                      atol=1e-5)
            spot = anomaly_maps(net, x, lik, SCORE_RULES["spot"])
            assert spot.shape == (3, 16, 16) and torch.isfinite(spot).all()


def test_purple_scaled_maps_each_pixels_own_residual_through_anomaly_maps():
    torch.manual_seed(0)
    net = SupnVAE(ArchConfig(crop_size=16, channels=3, latent_dim=4, widths=(4, 8), head_widths=(4, 4))).eval()
    x = torch.randn(2, 3, 16, 16)
    rule = SCORE_RULES["purple-scaled"]
    with torch.no_grad():
        mu, _ = net.encode(x)
        mean = net.decode_mean(mu)
        for lik in ("supn", "diag"):
            factor = net.factor(lik, mu, mean)
            scaled = torch.exp(factor.log_diag) * (x - mean)
            assert torch.allclose(factor.scale(x - mean), scaled)
            assert torch.allclose(anomaly_maps(net, x, lik, rule), pixel_map(scaled, rule), atol=1e-5)
            if lik == "diag":  # a diagonal factor's whitened residual is its scaled residual
                assert torch.allclose(anomaly_maps(net, x, lik, rule), anomaly_maps(net, x, lik, SCORE_RULES["purple"]),
                                      atol=1e-5)
    assert "units of the precision's diagonal" in rule.units


def test_scaled_residual_keeps_a_smooth_blob_that_whitening_filters_out():
    """A precision that expects smooth residuals (each pixel predicted by its right and lower
    neighbours) whitens the inside of a smooth purple blob to about 0: the window rule on z sees
    little of it, the same rule on the scaled residual all of it."""
    h = w = 24
    log_diag = torch.zeros(1, 3, h, w)
    off = torch.zeros(1, 3, n_off_diagonal(1), h, w)
    off[:, :, 0] = -0.5  # (0, 1): the pixel to the right
    off[:, :, 2] = -0.5  # (1, 0): the pixel below
    factor = SupnFactor(log_diag, off, None, 1)
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32), indexing="ij")
    blob = torch.exp(-((yy - 12) ** 2 + (xx - 12) ** 2) / (2 * 3.0 ** 2))
    e = torch.stack([torch.zeros_like(blob), -blob, 0.3 * blob])[None]  # darker in green than in blue
    whitened = pixel_map(factor.whiten(e), SCORE_RULES["purple"])[0, 12, 12]
    scaled = pixel_map(factor.scale(e), SCORE_RULES["purple-scaled"])[0, 12, 12]
    assert scaled > 5 * abs(whitened)
    assert scaled > 10


def test_cell_score_is_max_inside_mask_and_whole_crop_when_mask_empty():
    maps = torch.zeros(2, 5, 5)
    maps[:, 0, 0] = 10.0
    maps[:, 2, 2] = 1.0
    masks = torch.zeros(2, 5, 5, dtype=torch.bool)
    masks[0, 1:4, 1:4] = True
    scores = cell_scores(maps, masks)
    assert scores.tolist() == [1.0, 10.0]


def test_bright_and_dark_rules_have_opposite_signs():
    z = torch.from_numpy(np.random.default_rng(0).normal(size=(1, 1, 6, 6)).astype(np.float32))
    assert torch.allclose(pixel_map(z, SCORE_RULES["bright"]), -pixel_map(z, SCORE_RULES["dark"]))


def test_dark_spot_is_the_mirror_of_spot():
    torch.manual_seed(0)
    net = SupnVAE(ArchConfig(crop_size=16, latent_dim=4, widths=(4, 8), head_widths=(4, 4))).eval()
    x = torch.randn(2, 1, 16, 16)
    bright = anomaly_maps(net, x, "supn", SCORE_RULES["spot"])
    assert torch.allclose(anomaly_maps(net, x, "supn", SCORE_RULES["dark-spot"]), -bright)


def test_the_registry_names_the_model_likelihoods_and_builds_every_network_config():
    from napari_supn_anomaly.scoring import REGISTRY
    from napari_supn_anomaly.supn import LIKELIHOODS
    from napari_supn_anomaly.supn.self_supervised import SegmentationConfig

    assert {n for n, info in REGISTRY.items() if info.likelihood} == set(LIKELIHOODS)
    for info in REGISTRY.values():
        assert isinstance(info.network, SegmentationConfig) == info.needs_network


def test_band_matrix_is_a_zero_padded_correlation():
    kernel = torch.tensor([1.0, 2.0, 5.0, -1.0, 0.5], dtype=torch.float64)
    line = torch.randn(11, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    want = torch.nn.functional.conv1d(line.view(1, 1, -1), kernel.view(1, 1, -1), padding=2).view(-1)
    assert torch.allclose(_band_matrix(kernel, 11) @ line, want, atol=1e-12)
