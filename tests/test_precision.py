"""The sparse Cholesky operators against dense matrices on tiny images."""
import pytest
import torch

from napari_supn_anomaly.supn.precision import (
    SupnFactor, n_cross_channel, n_off_diagonal, stencil_offsets,
)


def random_factor(radius, channels=1, h=6, w=7, batch=2, cross=True, seed=0):
    g = torch.Generator().manual_seed(seed)
    f = n_off_diagonal(radius)
    log_diag = 0.3 * torch.randn(batch, channels, h, w, generator=g, dtype=torch.float64)
    off = 0.2 * torch.randn(batch, channels, f, h, w, generator=g, dtype=torch.float64)
    cr = None
    if cross and channels > 1:
        cr = 0.2 * torch.randn(batch, n_cross_channel(channels), h, w, generator=g, dtype=torch.float64)
    return SupnFactor(log_diag, off, cr, radius)


@pytest.mark.parametrize("radius", [0, 1, 2, 3])
def test_offsets_follow_raster_order(radius):
    offs = stencil_offsets(radius)
    assert len(offs) == n_off_diagonal(radius)
    assert all(dy * 100 + dx > 0 for dy, dx in offs)
    assert offs == sorted(offs)


@pytest.mark.parametrize("radius,channels", [(1, 1), (2, 1), (3, 1), (1, 3), (2, 2), (0, 3)])
def test_whiten_matches_dense_matvec(radius, channels):
    fac = random_factor(radius, channels)
    e = torch.randn(2, channels, 6, 7, dtype=torch.float64)
    u = fac.dense_upper()
    dense = torch.einsum("bij,bj->bi", u, e.flatten(1))
    assert torch.allclose(fac.whiten(e).flatten(1), dense, atol=1e-10)
    # upper-triangular with the expected diagonal
    assert torch.allclose(torch.tril(u, -1), torch.zeros_like(u))


@pytest.mark.parametrize("radius,channels", [(1, 1), (2, 1), (3, 1), (2, 3)])
def test_nll_matches_dense_multivariate_normal(radius, channels):
    fac = random_factor(radius, channels)
    mu = torch.randn(2, channels, 6, 7, dtype=torch.float64)
    x = torch.randn(2, channels, 6, 7, dtype=torch.float64)
    u = fac.dense_upper()
    precision = u.transpose(1, 2) @ u
    mvn = torch.distributions.MultivariateNormal(mu.flatten(1), precision_matrix=precision)
    assert torch.allclose(fac.nll(x - mu), -mvn.log_prob(x.flatten(1)), atol=1e-8)
    assert torch.allclose(fac.log_det(), torch.logdet(precision), atol=1e-8)


@pytest.mark.parametrize("radius,channels", [(1, 1), (2, 1), (3, 1), (1, 3), (2, 2)])
def test_solve_matches_dense_solve(radius, channels):
    fac = random_factor(radius, channels)
    eps = torch.randn(2, channels, 6, 7, dtype=torch.float64)
    u = fac.dense_upper()
    dense = torch.linalg.solve_triangular(u, eps.flatten(1)[..., None], upper=True)[..., 0]
    assert torch.allclose(fac.solve(eps).flatten(1), dense, atol=1e-9)
    # and whitening the solution gives eps back
    assert torch.allclose(fac.whiten(fac.solve(eps)), eps, atol=1e-9)


def test_weighted_nll_only_counts_weighted_pixels():
    fac = random_factor(1)
    e = torch.randn(2, 1, 6, 7, dtype=torch.float64)
    weight = torch.zeros(2, 1, 6, 7, dtype=torch.float64)
    assert torch.allclose(fac.nll(e, weight), torch.zeros(2, dtype=torch.float64))


def test_shape_mismatch_is_reported():
    with pytest.raises(ValueError, match="off_diag"):
        SupnFactor(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 3, 4, 4), None, 1)
