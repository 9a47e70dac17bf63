"""Sparse upper-triangular Cholesky factor of a Gaussian precision (SUPN).

U is never materialised. For channel c with stencil radius r it has
``U[p, p] = d_c[p]`` and ``U[p, p + o_f] = w_cf[p]`` for the F offsets after the centre
in raster order, plus same-pixel cross-channel weights ``c_ij`` for i < j. Pixels are
ordered channel-major (all of channel 0, then channel 1, ...), raster order inside.
The precision is ``U^T U`` and ``z = U (x - mu)`` is the whitened residual.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

LOG_2PI = math.log(2.0 * math.pi)


def stencil_offsets(radius: int) -> list[tuple[int, int]]:
    """Offsets (dy, dx) of the stencil cells strictly after the centre in raster order."""
    if radius < 0:
        raise ValueError("stencil radius must be >= 0")
    offsets = [(0, dx) for dx in range(1, radius + 1)]
    offsets += [(dy, dx) for dy in range(1, radius + 1) for dx in range(-radius, radius + 1)]
    return offsets


def n_off_diagonal(radius: int) -> int:
    return 2 * radius * (radius + 1)


def n_cross_channel(channels: int) -> int:
    return channels * (channels - 1) // 2


def cross_channel_pairs(channels: int) -> list[tuple[int, int]]:
    return [(i, j) for i in range(channels) for j in range(i + 1, channels)]


@dataclass
class SupnFactor:
    """Per-pixel parameters of U for a batch.

    log_diag: [B, C, H, W]; off_diag: [B, C, F, H, W] (F may be 0); cross: [B, C(C-1)/2, H, W] or None.
    """

    log_diag: torch.Tensor
    off_diag: torch.Tensor
    cross: torch.Tensor | None
    radius: int

    def __post_init__(self):
        b, c, h, w = self.log_diag.shape
        f = n_off_diagonal(self.radius)
        if self.off_diag.shape != (b, c, f, h, w):
            raise ValueError(f"off_diag has shape {tuple(self.off_diag.shape)}, expected {(b, c, f, h, w)}")
        if self.cross is not None and self.cross.shape != (b, n_cross_channel(c), h, w):
            raise ValueError(f"cross has shape {tuple(self.cross.shape)}, expected {(b, n_cross_channel(c), h, w)}")

    @property
    def channels(self) -> int:
        return self.log_diag.shape[1]

    def whiten(self, residual: torch.Tensor) -> torch.Tensor:
        """z = U e for e = x - mu, shape [B, C, H, W]."""
        z = torch.exp(self.log_diag) * residual
        r = self.radius
        if r:
            # one zero-padded copy serves every offset as a view (zero where it falls outside)
            h, w = residual.shape[-2:]
            padded = F.pad(residual, (r, r, 0, r))
            for f, (dy, dx) in enumerate(stencil_offsets(r)):
                z = z + self.off_diag[:, :, f] * padded[..., dy:dy + h, r + dx:r + dx + w]
        if self.cross is not None:
            extra = [torch.zeros_like(residual[:, 0]) for _ in range(self.channels)]
            for k, (i, j) in enumerate(cross_channel_pairs(self.channels)):
                extra[i] = extra[i] + self.cross[:, k] * residual[:, j]
            z = z + torch.stack(extra, dim=1)
        return z

    def scale(self, residual: torch.Tensor) -> torch.Tensor:
        """d e: each pixel's own residual times U's diagonal, without the neighbours' and the other
        channels' terms of ``whiten``. 1 / d is the pixel's standard deviation given the pixels after
        it (in U's order), not its marginal one, so healthy pixels spread a little wider than
        N(0, 1); but a smooth blob keeps its inside, which whitening's stencil, a high-pass filter,
        takes to about 0 for a parasite-sized blob."""
        return torch.exp(self.log_diag) * residual

    def log_det(self) -> torch.Tensor:
        """log |U^T U| per image, [B]."""
        return 2.0 * self.log_diag.flatten(1).sum(1)

    def nll(self, residual: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
        """Negative log-density per image, [B].

        ``weight`` ([B, 1 or C, H, W]) restricts the sum to some pixels (e.g. the cell): the
        per-pixel terms 0.5 z^2 - log d + 0.5 log 2 pi are weighted before summing.
        """
        z = self.whiten(residual)
        per_pixel = 0.5 * z.square() - self.log_diag + 0.5 * LOG_2PI
        if weight is not None:
            per_pixel = per_pixel * weight
        return per_pixel.flatten(1).sum(1)

    @torch.no_grad()
    def solve(self, eps: torch.Tensor) -> torch.Tensor:
        """Solve U s = eps by level-scheduled back-substitution; s ~ N(0, (U^T U)^-1) for eps ~ N(0, I)."""
        b, c, h, w = self.log_diag.shape
        n = h * w
        d = torch.exp(self.log_diag).reshape(b, c, n)
        wts = self.off_diag.reshape(b, c, -1, n)
        rhs = eps.reshape(b, c, n)
        s = torch.zeros_like(rhs)
        schedule = _level_schedule(h, w, self.radius)
        pairs = cross_channel_pairs(c)
        for ch in reversed(range(c)):
            target = rhs[:, ch].clone()
            if self.cross is not None:
                cross = self.cross.reshape(b, -1, n)
                for k, (i, j) in enumerate(pairs):
                    if i == ch:
                        target = target - cross[:, k] * s[:, j]
            sc = torch.zeros_like(target)
            for pix, nbr, valid in schedule:
                acc = target[:, pix]
                if nbr.numel():
                    neighbours = sc[:, nbr] * valid  # [B, F, P]
                    acc = acc - (wts[:, ch][:, :, pix] * neighbours).sum(1)
                sc[:, pix] = acc / d[:, ch, pix]
            s[:, ch] = sc
        return s.reshape(b, c, h, w)

    def dense_upper(self) -> torch.Tensor:
        """U as a dense [B, CN, CN] matrix (tests and tiny images only)."""
        b, c, h, w = self.log_diag.shape
        n = h * w
        u = torch.zeros(b, c * n, c * n, dtype=self.log_diag.dtype, device=self.log_diag.device)
        d = torch.exp(self.log_diag)
        offsets = stencil_offsets(self.radius)
        for ch in range(c):
            for y in range(h):
                for x in range(w):
                    p = ch * n + y * w + x
                    u[:, p, p] = d[:, ch, y, x]
                    for f, (dy, dx) in enumerate(offsets):
                        yy, xx = y + dy, x + dx
                        if 0 <= yy < h and 0 <= xx < w:
                            u[:, p, ch * n + yy * w + xx] = self.off_diag[:, ch, f, y, x]
        if self.cross is not None:
            for k, (i, j) in enumerate(cross_channel_pairs(c)):
                for y in range(h):
                    for x in range(w):
                        q = y * w + x
                        u[:, i * n + q, j * n + q] = self.cross[:, k, y, x]
        return u


@lru_cache(maxsize=32)
def _level_schedule(h: int, w: int, radius: int):
    """Groups of pixels that can be solved together, with their stencil neighbours.

    level(y, x) = (r + 1)(H - 1 - y) + (W - 1 - x): every neighbour p + o_f has a lower level.
    """
    offsets = stencil_offsets(radius)
    ys, xs = torch.meshgrid(torch.arange(h), torch.arange(w), indexing="ij")
    level = ((radius + 1) * (h - 1 - ys) + (w - 1 - xs)).flatten()
    ys, xs = ys.flatten(), xs.flatten()
    order = torch.argsort(level, stable=True)
    counts = torch.bincount(level)
    schedule = []
    start = 0
    for count in counts.tolist():
        pix = order[start:start + count]
        start += count
        if not offsets:
            schedule.append((pix, torch.empty(0, dtype=torch.long), None))
            continue
        dy = torch.tensor([o[0] for o in offsets])[:, None]
        dx = torch.tensor([o[1] for o in offsets])[:, None]
        ny, nx = ys[pix][None] + dy, xs[pix][None] + dx
        valid = (ny >= 0) & (ny < h) & (nx >= 0) & (nx < w)
        nbr = torch.where(valid, ny * w + nx, torch.zeros_like(ny))
        schedule.append((pix, nbr, valid.float()))
    return schedule
