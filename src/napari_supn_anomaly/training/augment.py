"""Colour and intensity augmentation of healthy training crops, so that another stain, lamp,
camera or focus does not move healthy cells out of "normal".

Every draw comes from the ``torch.Generator`` passed in (the trainer's), so a seed fixes the
whole run. The trainer holds crops normalised by the model's ``IntensityStats``; the augmenter
maps a batch back to raw intensities, changes it there and normalises it again:

* stain jitter (RGB only): each channel's optical density ``-log(I / white)`` is scaled and
  shifted, as another stain batch or staining time would (Tellez et al. 2018 jitter the
  H&E densities the same way);
* gamma, contrast and brightness of the whole crop (lamp, exposure, camera response);
* a slight Gaussian blur (focus) and Gaussian noise (camera).
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

Augmenter = Callable[[torch.Tensor, torch.Generator], torch.Tensor]


@dataclass(frozen=True)
class ColourAugment:
    """Strengths; 0 switches a part off. Ranges are uniform and symmetric around "no change"."""

    stain_scale: float = 0.15    # each channel's optical density times 1 +- this (RGB only)
    stain_shift: float = 0.04    # plus +- this optical density (RGB only)
    gamma: float = 0.2           # I ** exp(+- this), on intensities relative to white
    contrast: float = 0.1        # (I - mean) * (1 +- this) + mean
    brightness: float = 0.04     # + (+- this) * white
    blur_sigma: float = 0.8      # Gaussian blur of up to this many crop pixels, half of the crops
    noise: float = 0.01          # Gaussian noise of up to this times white

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ColourAugment:
        return cls(**{k: float(v) for k, v in data.items() if k in cls.__dataclass_fields__})


def _uniform(n: int, half_width: float, generator: torch.Generator, shape=()) -> torch.Tensor:
    """n draws (per-sample, times ``shape``) uniform in [-half_width, +half_width], float32 on the CPU."""
    return (2.0 * torch.rand((n, *shape), generator=generator) - 1.0) * half_width


def _blur(x: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    """Per-sample Gaussian blur of [B, C, H, W] with sigma [B] (0 = unchanged)."""
    b, c, h, w = x.shape
    radius = max(1, math.ceil(3.0 * float(sigma.max())))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    s = sigma.to(x.device, x.dtype).clamp_min(1e-3)[:, None]
    k1 = torch.exp(-0.5 * (t[None] / s) ** 2)
    k1 = k1 / k1.sum(1, keepdim=True)
    k1 = torch.where(sigma.to(x.device)[:, None] > 0, k1, (t[None] == 0).to(x.dtype))  # sigma 0: identity
    k1 = k1.repeat_interleave(c, 0)  # one kernel per (sample, channel)
    y = F.pad(x.reshape(1, b * c, h, w), (radius, radius, radius, radius), mode="replicate")
    y = F.conv2d(y, k1[:, None, None, :], groups=b * c)
    y = F.conv2d(y, k1[:, None, :, None], groups=b * c)
    return y.reshape(b, c, h, w)


def augment_raw(x: torch.Tensor, generator: torch.Generator, cfg: ColourAugment, white: float = 1.0,
                rgb: bool | None = None) -> torch.Tensor:
    """Augmented copy of raw crops ``x`` [B, C, H, W] with intensities in [0, ``white``].

    ``rgb`` (default: 3 channels) switches on the stain jitter; transmitted light stays in
    [0, white]. Other images (fluorescence) may be brighter than ``white`` and stay >= 0.
    """
    if x.ndim != 4:
        raise ValueError(f"crops must be [B, C, H, W], got {tuple(x.shape)}")
    b, c = x.shape[:2]
    rgb = (c == 3) if rgb is None else rgb
    dev, dt = x.device, x.dtype
    top = 1.0 if rgb else None
    rel = (x / white).clamp(0.0, top)
    if rgb and (cfg.stain_scale > 0 or cfg.stain_shift > 0):
        eps = 1.0 / 256.0
        od = -torch.log(rel + eps)
        scale = 1.0 + _uniform(b, cfg.stain_scale, generator, (c, 1, 1)).to(dev, dt)
        shift = _uniform(b, cfg.stain_shift, generator, (c, 1, 1)).to(dev, dt)
        rel = (torch.exp(-(od * scale + shift)) - eps).clamp(0.0, 1.0)
    if cfg.gamma > 0:
        gamma = torch.exp(_uniform(b, cfg.gamma, generator, (1, 1, 1))).to(dev, dt)
        rel = rel.clamp_min(1e-6) ** gamma
    if cfg.contrast > 0:
        mean = rel.mean((1, 2, 3), keepdim=True)
        rel = (rel - mean) * (1.0 + _uniform(b, cfg.contrast, generator, (1, 1, 1)).to(dev, dt)) + mean
    if cfg.brightness > 0:
        rel = rel + _uniform(b, cfg.brightness, generator, (1, 1, 1)).to(dev, dt)
    if cfg.blur_sigma > 0:
        sigma = torch.rand(b, generator=generator) * cfg.blur_sigma
        sigma = torch.where(torch.rand(b, generator=generator) < 0.5, sigma, torch.zeros_like(sigma))
        if bool((sigma > 0).any()):
            rel = _blur(rel, sigma)
    if cfg.noise > 0:
        std = (torch.rand((b, 1, 1, 1), generator=generator) * cfg.noise).to(dev, dt)
        rel = rel + std * torch.randn(tuple(rel.shape), generator=generator).to(dev, dt)
    return rel.clamp(0.0, top) * white


def normalised_augmenter(cfg: ColourAugment, low: list[float], high: list[float]) -> Augmenter:
    """An augmenter of crops normalised by ``IntensityStats(low, high)`` (to [-1, 1]): back to raw
    intensities, :func:`augment_raw` with white = the brightest end of any channel, normalised again."""
    lo = torch.tensor(low, dtype=torch.float32)[None, :, None, None]
    hi = torch.tensor(high, dtype=torch.float32)[None, :, None, None]
    white = float(max(max(low), max(high)))  # fine-tuning with inverted contrast stores low > high

    def augment(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        l, h = lo.to(x.device, x.dtype), hi.to(x.device, x.dtype)
        raw = l + (x + 1.0) * 0.5 * (h - l)
        out = augment_raw(raw, generator, cfg, white)
        return 2.0 * (out - l) / (h - l) - 1.0

    return augment
