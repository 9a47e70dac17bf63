"""Pixel anomaly maps from the VAE itself (Zimmerer et al. 2019; Zhou, Deng & Wu 2020; Dehaene et al. 2020).

All maps are [B, H, W], higher = more anomalous, computed at the encoder mean (deterministic).

* reconstruction error: ((x - mean) / sigma)^2 summed over channels, sigma the L2 baseline's
  per-channel standard deviation (the "Rec" term of the ELBO up to a constant);
* gradient maps: |d T / d x| for T = KL (through the encoder only), Rec (through encoder,
  decoder and the explicit x) or the ELBO Rec + KL, summed over channels and Gaussian-smoothed;
* energy-based projection: descend E(x) = Rec(x) + KL(x) + lambda * |x - x0|_1 on the input,
  each step weighted by the squared reconstruction error, back-propagating through the whole
  network (encoder and decoder: the reconstruction is not detached); the map is the squared
  change (x0 - x_T)^2 / sigma^2.

Rec uses the fixed-variance ("l2") Gaussian by default, as in the papers; ``likelihood="supn"``
or ``"diag"`` uses the learned precision heads instead (their NLL includes the log-determinant).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .networks import SupnVAE, kl_divergence

GRADIENT_TERMS = ("kl", "rec", "elbo")


def default_smoothing_sigma(crop_size: int) -> float:
    """Zimmerer's sigma = 3 px at 64 x 64, scaled with the crop size."""
    return 3.0 * crop_size / 64.0


def gaussian_blur(maps: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian smoothing of [B, H, W] maps with reflected borders."""
    if sigma <= 0:
        return maps
    radius = max(1, math.ceil(3.0 * sigma))
    radius = min(radius, maps.shape[-1] - 1, maps.shape[-2] - 1)
    t = torch.arange(-radius, radius + 1, dtype=maps.dtype, device=maps.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = F.pad(maps[:, None], (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1))
    x = F.conv2d(x, k.view(1, 1, -1, 1))
    return x[:, 0]


def _l2_sigma(net: SupnVAE, like: torch.Tensor) -> torch.Tensor:
    return net.l2_log_sigma.exp().to(like).view(1, -1, 1, 1)


def reconstruction_nll(net: SupnVAE, x: torch.Tensor, mean: torch.Tensor, code: torch.Tensor,
                       likelihood: str = "l2", weight: torch.Tensor | None = None) -> torch.Tensor:
    """-log p(x | z) per image [B] (up to the constant), summed over ``weight`` if given."""
    if likelihood == "l2":
        per_pixel = 0.5 * ((x - mean) / _l2_sigma(net, x)).square()
        if weight is not None:
            per_pixel = per_pixel * weight
        return per_pixel.flatten(1).sum(1)
    return net.factor(likelihood, code, mean).nll(x - mean, weight)


@torch.no_grad()
def reconstruction_error_map(net: SupnVAE, x: torch.Tensor) -> torch.Tensor:
    """((x - mean) / sigma)^2 summed over channels at z = encoder mean, [B, H, W]."""
    mean = net.decode_mean(net.encode(x)[0])
    return ((x - mean) / _l2_sigma(net, x)).square().sum(1)


def gradient_map(net: SupnVAE, x: torch.Tensor, term: str, likelihood: str = "l2",
                 weight: torch.Tensor | None = None, sigma: float | None = None,
                 kl_weight: float = 1.0) -> torch.Tensor:
    """|d term / d x| summed over channels and Gaussian-smoothed, [B, H, W].

    term: "kl" (KL of q(z|x) to the prior), "rec" (reconstruction NLL at z = mu(x)) or
    "elbo" (rec + kl_weight * kl). Only the input receives gradients; the weights are untouched.
    """
    if term not in GRADIENT_TERMS:
        raise ValueError(f"unknown gradient term {term!r}; choose from {GRADIENT_TERMS}")
    sigma = default_smoothing_sigma(x.shape[-1]) if sigma is None else sigma
    with torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        mu_z, logvar = net.encode(xg)
        total = 0.0
        if term in ("kl", "elbo"):
            total = total + (kl_weight if term == "elbo" else 1.0) * kl_divergence(mu_z, logvar).sum()
        if term in ("rec", "elbo"):
            mean = net.decode_mean(mu_z)
            total = total + reconstruction_nll(net, xg, mean, mu_z, likelihood, weight).sum()
        (grad,) = torch.autograd.grad(total, xg)
    return gaussian_blur(grad.abs().sum(1), sigma)


def projection_energy(net: SupnVAE, x: torch.Tensor, x0: torch.Tensor, lam: float, likelihood: str = "l2",
                      weight: torch.Tensor | None = None, return_mean: bool = False):
    """Dehaene's energy per image [B], in units of the L2 variance so that lambda is an intensity
    scale: sigma^2 * (Rec(x) + KL(x)) + lambda * |x - x0|_1."""
    mu_z, logvar = net.encode(x)
    mean = net.decode_mean(mu_z)
    scale = float(net.l2_log_sigma.exp().square().mean())
    loss = reconstruction_nll(net, x, mean, mu_z, likelihood, weight) + kl_divergence(mu_z, logvar)
    energy = scale * loss + lam * (x - x0).abs().flatten(1).sum(1)
    return (energy, mean) if return_mean else energy


def _energy_and_gradient(net, x, x0, lam, likelihood, weight):
    with torch.enable_grad():
        xg = x.detach().clone().requires_grad_(True)
        energy, mean = projection_energy(net, xg, x0, lam, likelihood, weight, return_mean=True)
        (grad,) = torch.autograd.grad(energy.sum(), xg)
    return energy.detach(), mean.detach(), grad


def energy_projection(net: SupnVAE, x0: torch.Tensor, steps: int = 30, step_size: float = 1.0,
                      lam: float = 0.05, likelihood: str = "l2", weight: torch.Tensor | None = None,
                      clamp: tuple[float, float] = (-1.5, 1.5)) -> torch.Tensor:
    """Project x0 towards what the model considers normal; returns x_T [B, C, H, W].

    x_{t+1} = x_t - step_size * dE/dx_t * (x_t - f(x_t))^2, with f(x_t) the reconstruction and
    the gradient taken through the whole network. A step that would raise an image's energy is
    undone and that image's step size halved, so E never increases; one forward and one
    backward pass per step.
    """
    x0 = x0.detach()
    xt = x0.clone()
    view = (-1,) + (1,) * (x0.dim() - 1)
    alpha = torch.full((len(x0),), float(step_size), dtype=x0.dtype, device=x0.device)
    energy, mean, grad = _energy_and_gradient(net, xt, x0, lam, likelihood, weight)
    for _ in range(steps):
        trial = (xt - alpha.view(view) * grad * (xt - mean).square()).clamp(*clamp)
        t_energy, t_mean, t_grad = _energy_and_gradient(net, trial, x0, lam, likelihood, weight)
        ok = t_energy <= energy
        okv = ok.view(view)
        xt = torch.where(okv, trial, xt)
        mean = torch.where(okv, t_mean, mean)
        grad = torch.where(okv, t_grad, grad)
        energy = torch.where(ok, t_energy, energy)
        alpha = torch.where(ok, alpha, 0.5 * alpha)
    return xt


def projection_map(net: SupnVAE, x: torch.Tensor, **options) -> torch.Tensor:
    """(x0 - x_T)^2 / sigma^2 summed over channels, [B, H, W]."""
    xt = energy_projection(net, x, **options)
    return ((x - xt) / _l2_sigma(net, x)).square().sum(1)
