"""Whitened residuals and the rules that turn them into pixel maps and per-cell scores.

A pixel map is built so that a cell's score is the maximum of the map inside the cell: the
candidate threshold then means the same for cells and for the regions drawn on the map.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .networks import SupnVAE


@dataclass(frozen=True)
class ScoreRule:
    name: str
    window: int
    statistic: str  # "chi2": sum of z^2 over channels; "bright"/"dark": signed sum of z
    description: str


SCORE_RULES = {
    "paper": ScoreRule("paper", 4, "chi2", "max over 4x4 windows inside the cell of summed z^2 (MIDL 2022)"),
    "bright": ScoreRule("bright", 2, "bright", "max over 2x2 windows inside the cell of summed signed z (bright excess)"),
    "dark": ScoreRule("dark", 2, "dark", "max over 2x2 windows inside the cell of summed signed -z (dark excess)"),
}


def box_sum(img: torch.Tensor, window: int) -> torch.Tensor:
    """Sum over a window x window neighbourhood at every pixel, [B, H, W] -> [B, H, W]."""
    if window == 1:
        return img
    lo, hi = (window - 1) // 2, window // 2
    padded = F.pad(img[:, None], (lo, hi, lo, hi))
    return F.avg_pool2d(padded, window, stride=1)[:, 0] * window * window


def pixel_map(z: torch.Tensor, rule: ScoreRule) -> torch.Tensor:
    """Per-pixel score [B, H, W] from whitened residuals z [B, C, H, W]."""
    if rule.statistic == "chi2":
        stat = z.square().sum(1)
    elif rule.statistic == "bright":
        stat = z.sum(1)
    elif rule.statistic == "dark":
        stat = -z.sum(1)
    else:
        raise ValueError(f"unknown statistic {rule.statistic!r}")
    return box_sum(stat, rule.window)


def cell_scores(maps: torch.Tensor, masks: torch.Tensor) -> torch.Tensor:
    """Max of each map inside its mask, [B]. An empty mask scores over the whole crop."""
    masks = masks.bool()
    empty = ~masks.flatten(1).any(1)
    masks = masks | empty[:, None, None]
    return maps.masked_fill(~masks, float("-inf")).flatten(1).max(1).values


@torch.no_grad()
def whitened_residual(net: SupnVAE, x: torch.Tensor, likelihood: str, n_samples: int = 0,
                      generator: torch.Generator | None = None):
    """Whitened residuals at the encoder mean (n_samples=0) or for each of n latent samples.

    Returns (z, mean): z is [S, B, C, H, W] with S = max(1, n_samples); mean is the decoded
    mean at the encoder mean, [B, C, H, W].
    """
    mu_z, logvar = net.encode(x)
    mean = net.decode_mean(mu_z)
    codes = [mu_z] if n_samples <= 0 else [net.sample_latent(mu_z, logvar, generator) for _ in range(n_samples)]
    zs = []
    for code in codes:
        m = mean if code is mu_z else net.decode_mean(code)
        zs.append(net.factor(likelihood, code, m).whiten(x - m))
    return torch.stack(zs), mean
