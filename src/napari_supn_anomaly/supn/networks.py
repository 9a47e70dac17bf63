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
import torch.nn.functional as F
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
    # The decoders stop at half resolution and one sub-pixel convolution gives the outputs: no
    # full-resolution feature maps, where most of the scoring time went (False: files before it).
    direct_output: bool = False

    def __post_init__(self):
        self.widths = tuple(self.widths)
        self.head_widths = tuple(self.head_widths)
        if len(self.head_widths) != len(self.widths):
            raise ValueError("widths and head_widths need the same number of levels")
        if self.crop_size % (2 ** len(self.widths)):
            raise ValueError(f"crop_size {self.crop_size} is not divisible by 2^{len(self.widths)}")
        if not self.log_diag_low < self.init_log_diag < self.log_diag_high:
            raise ValueError("init_log_diag must lie inside (log_diag_low, log_diag_high)")
        if not isinstance(self.direct_output, bool):
            raise TypeError(f"direct_output must be true or false, not {self.direct_output!r}")

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
    """Latent code to a full-resolution feature map with ``widths[0]`` channels, or with
    ``cfg.direct_output`` to a half-resolution one with ``widths[1]`` channels (``out_width``)."""

    def __init__(self, cfg: ArchConfig, widths: tuple[int, ...]):
        super().__init__()
        self.side = cfg.crop_size // 2 ** len(widths)
        self.top = widths[-1]
        self.fc = nn.Linear(cfg.latent_dim, self.top * self.side * self.side)
        levels = list(reversed(widths))
        if cfg.direct_output:
            levels = levels[:-1]
        layers, cin = [], self.top
        for width in levels:
            layers.append(_up_block(cin, width))
            layers += [_conv_block(width, width) for _ in range(cfg.blocks_per_level - 1)]
            cin = width
        self.features = nn.Sequential(*layers)
        self.out_width = cin

    def forward(self, z):
        h = torch.relu(self.fc(z)).view(-1, self.top, self.side, self.side)
        return self.features(inference_layout(h))


class MeanDecoder(nn.Module):
    def __init__(self, cfg: ArchConfig):
        super().__init__()
        self.body = Decoder(cfg, cfg.widths)
        if cfg.direct_output:
            self.out = _output_upsampling(self.body.out_width, cfg.channels)
        else:
            self.out = nn.Conv2d(cfg.widths[0], cfg.channels, 1)

    def forward(self, z):
        return self.out(self.body(z))


class _PixelShuffle2(nn.Module):
    """``F.pixel_shuffle(x, 2)`` whatever the input's memory layout, with a plain (channel-major)
    result: on a channels-last input torch's own is several times slower, and the factor's
    planes are then read one by one."""

    def forward(self, x):
        b, c, h, w = x.shape
        return x.unflatten(1, (c // 4, 2, 2)).permute(0, 1, 4, 2, 5, 3).reshape(b, c // 4, 2 * h, 2 * w)


def _output_upsampling(cin: int, cout: int) -> nn.Sequential:
    # A 3x3 convolution to the 2x2 sub-pixels of each output, then pixel shuffle (Shi et al. 2016):
    # as expressive as a 4x4 stride-2 transposed convolution, and several times faster on a CPU
    # with few output channels.
    return nn.Sequential(nn.Conv2d(cin, 4 * cout, 3, padding=1), _PixelShuffle2())


class PrecisionHead(nn.Module):
    """Predicts the Cholesky factor from the latent code and the (detached) mean image.

    With ``direct_output`` the mean image joins the half-resolution features as its 2x2
    pixel blocks (space to depth: nothing of it is lost) and one sub-pixel convolution
    gives the full-resolution factor.
    """

    def __init__(self, cfg: ArchConfig, radius: int, cross_channel: bool):
        super().__init__()
        self.cfg, self.radius = cfg, radius
        self.n_off = n_off_diagonal(radius)
        self.n_cross = n_cross_channel(cfg.channels) if cross_channel else 0
        c = cfg.channels
        self.body = Decoder(cfg, cfg.head_widths)
        width, n_out = self.body.out_width, c * (1 + self.n_off) + self.n_cross
        if cfg.direct_output:
            self.mix = _conv_block(width + 4 * c, width)
            self.out = _output_upsampling(width, n_out)
        else:
            self.mix = _conv_block(width + c, width)
            self.out = nn.Conv2d(width, n_out, 3, padding=1)
        conv = self.out[0] if cfg.direct_output else self.out
        nn.init.zeros_(conv.weight)
        nn.init.zeros_(conv.bias)
        frac = (cfg.init_log_diag - cfg.log_diag_low) / (cfg.log_diag_high - cfg.log_diag_low)
        with torch.no_grad():  # the first c outputs (4 sub-pixels each with direct_output) are log_diag
            conv.bias[:c * (4 if cfg.direct_output else 1)] = math.log(frac / (1.0 - frac))

    def forward(self, z, mean) -> SupnFactor:
        cfg, c = self.cfg, self.cfg.channels
        mean = mean.detach()
        if cfg.direct_output:
            mean = F.pixel_unshuffle(mean, 2)
        # cat of a channels-last and a plain tensor is plain: back to the body's layout (2x faster convs)
        h = self.mix(inference_layout(torch.cat([self.body(z), mean], dim=1)))
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
