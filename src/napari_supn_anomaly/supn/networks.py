"""The SUPN-VAE: a convolutional VAE whose likelihood heads give a sparse Cholesky precision.

One network carries the shared encoder and mean decoder plus two likelihood heads trained
from the same latent code: ``supn`` (diagonal + stencil off-diagonals + cross-channel
weights) and ``diag`` (diagonal only, the paper's baseline). The third baseline, ``l2``,
is the mean with one fixed standard deviation per channel.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from .precision import SupnFactor, n_cross_channel, n_off_diagonal

LIKELIHOODS = ("supn", "diag", "l2")


@dataclass
class ArchConfig:
    crop_size: int = 64
    channels: int = 1
    latent_dim: int = 32
    widths: tuple[int, ...] = (16, 32, 64, 96)
    head_widths: tuple[int, ...] = (8, 16, 24, 32)
    radius: int = 1
    log_diag_low: float = -2.0
    log_diag_high: float = 6.0
    init_log_diag: float = 2.0
    blocks_per_level: int = 1  # extra 3x3 conv blocks after each down/up-sampling step

    def __post_init__(self):
        self.widths = tuple(self.widths)
        self.head_widths = tuple(self.head_widths)
        if len(self.head_widths) != len(self.widths):
            raise ValueError("widths and head_widths need the same number of levels")
        if self.crop_size % (2 ** len(self.widths)):
            raise ValueError(f"crop_size {self.crop_size} is not divisible by 2^{len(self.widths)}")
        if not self.log_diag_low < self.init_log_diag < self.log_diag_high:
            raise ValueError("init_log_diag must lie inside (log_diag_low, log_diag_high)")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> ArchConfig:
        known = set(cls.__dataclass_fields__)
        unknown = set(data) - known
        if unknown:
            raise ValueError(f"unknown architecture settings: {sorted(unknown)}")
        return cls(**data)


def inference_layout(x: torch.Tensor) -> torch.Tensor:
    """``x`` channels-last when scoring on a CPU (no gradients), else as it is.

    oneDNN runs the decoders' transposed convolutions 2-3x faster channels-last, and each layer
    keeps its input's layout. Values agree to float rounding. Training and GPUs keep the default.
    """
    if x.device.type == "cpu" and x.dim() == 4 and not torch.is_grad_enabled():
        return x.contiguous(memory_format=torch.channels_last)
    return x


def _conv_block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride=stride, padding=1),
        nn.GroupNorm(min(8, cout), cout),
        nn.SiLU(),
    )


def _up_block(cin: int, cout: int) -> nn.Sequential:
    # A 4x4 transposed convolution: about 3x cheaper on a CPU than nearest upsampling + conv.
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 4, stride=2, padding=1),
        nn.GroupNorm(min(8, cout), cout),
        nn.SiLU(),
    )


class Encoder(nn.Module):
    def __init__(self, cfg: ArchConfig):
        super().__init__()
        # Strided convolutions straight from the input: no full-resolution layer, which is
        # where most of the CPU time of a small VAE goes.
        layers, cin = [], cfg.channels
        for width in cfg.widths:
            layers.append(_conv_block(cin, width, stride=2))
            layers += [_conv_block(width, width) for _ in range(cfg.blocks_per_level - 1)]
            cin = width
        self.features = nn.Sequential(*layers)
        side = cfg.crop_size // 2 ** len(cfg.widths)
        self.head = nn.Linear(cin * side * side, 2 * cfg.latent_dim)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    def forward(self, x):
        mu, logvar = self.head(self.features(x).flatten(1)).chunk(2, dim=1)
        return mu, logvar.clamp(-12.0, 6.0)


class Decoder(nn.Module):
    """Latent code to a full-resolution feature map with ``widths[0]`` channels."""

    def __init__(self, cfg: ArchConfig, widths: tuple[int, ...]):
        super().__init__()
        self.side = cfg.crop_size // 2 ** len(widths)
        self.top = widths[-1]
        self.fc = nn.Linear(cfg.latent_dim, self.top * self.side * self.side)
        layers, cin = [], self.top
        for width in reversed(widths):
            layers.append(_up_block(cin, width))
            layers += [_conv_block(width, width) for _ in range(cfg.blocks_per_level - 1)]
            cin = width
        self.features = nn.Sequential(*layers)

    def forward(self, z):
        h = torch.relu(self.fc(z)).view(-1, self.top, self.side, self.side)
        return self.features(inference_layout(h))


class MeanDecoder(nn.Module):
    def __init__(self, cfg: ArchConfig):
        super().__init__()
        self.body = Decoder(cfg, cfg.widths)
        self.out = nn.Conv2d(cfg.widths[0], cfg.channels, 1)

    def forward(self, z):
        return self.out(self.body(z))


class PrecisionHead(nn.Module):
    """Predicts the Cholesky factor from the latent code and the (detached) mean image."""

    def __init__(self, cfg: ArchConfig, radius: int, cross_channel: bool):
        super().__init__()
        self.cfg, self.radius = cfg, radius
        self.n_off = n_off_diagonal(radius)
        self.n_cross = n_cross_channel(cfg.channels) if cross_channel else 0
        c = cfg.channels
        self.body = Decoder(cfg, cfg.head_widths)
        width = cfg.head_widths[0]
        self.mix = _conv_block(width + c, width)
        self.out = nn.Conv2d(width, c * (1 + self.n_off) + self.n_cross, 3, padding=1)
        nn.init.zeros_(self.out.weight)
        nn.init.zeros_(self.out.bias)
        frac = (cfg.init_log_diag - cfg.log_diag_low) / (cfg.log_diag_high - cfg.log_diag_low)
        with torch.no_grad():
            self.out.bias[:c] = math.log(frac / (1.0 - frac))

    def forward(self, z, mean) -> SupnFactor:
        cfg, c = self.cfg, self.cfg.channels
        h = self.mix(torch.cat([self.body(z), mean.detach()], dim=1))
        raw = self.out(h)
        b, _, hh, ww = raw.shape
        log_diag = cfg.log_diag_low + (cfg.log_diag_high - cfg.log_diag_low) * torch.sigmoid(raw[:, :c])
        off = raw[:, c:c * (1 + self.n_off)].reshape(b, c, self.n_off, hh, ww)
        cross = raw[:, c * (1 + self.n_off):] if self.n_cross else None
        return SupnFactor(log_diag, off, cross, self.radius)


class SupnVAE(nn.Module):
    def __init__(self, cfg: ArchConfig):
        super().__init__()
        self.cfg = cfg
        self.encoder = Encoder(cfg)
        self.mean_decoder = MeanDecoder(cfg)
        self.heads = nn.ModuleDict({
            "supn": PrecisionHead(cfg, cfg.radius, cross_channel=cfg.channels > 1),
            "diag": PrecisionHead(cfg, 0, cross_channel=False),
        })
        # Fixed per-channel log std of the L2 baseline, set from training residuals.
        self.register_buffer("l2_log_sigma", torch.full((cfg.channels,), -2.0))

    def encode(self, x):
        return self.encoder(x)

    @staticmethod
    def sample_latent(mu, logvar, generator: torch.Generator | None = None):
        eps = torch.randn(mu.shape, generator=generator, device=mu.device, dtype=mu.dtype)
        return mu + torch.exp(0.5 * logvar) * eps

    def decode_mean(self, z):
        return self.mean_decoder(z)

    def factor(self, likelihood: str, z, mean) -> SupnFactor:
        """The Cholesky factor of the named likelihood at latent ``z`` with decoded ``mean``."""
        if likelihood in self.heads:
            return self.heads[likelihood](z, mean)
        if likelihood == "l2":
            b, c, h, w = mean.shape
            log_diag = (-self.l2_log_sigma).view(1, c, 1, 1).expand(b, c, h, w)
            return SupnFactor(log_diag, mean.new_zeros(b, c, 0, h, w), None, 0)
        raise ValueError(f"unknown likelihood {likelihood!r}; choose from {LIKELIHOODS}")


def kl_divergence(mu, logvar) -> torch.Tensor:
    """KL(q(z|x) || N(0, I)) per image, [B]."""
    return 0.5 * (mu.square() + logvar.exp() - logvar - 1.0).sum(1)
