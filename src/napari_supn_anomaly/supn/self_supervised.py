"""A small segmentation network trained on healthy cells with synthetic anomalies (FPI, PII, P-PII).

The self-supervised family of Tan et al. (FPI, PII) and Mueller et al. 2023 (P-PII): no real
anomaly is ever seen; the network learns to segment what was pasted into a healthy cell, and
its sigmoid output is the anomaly map. A pool of synthetic samples is generated once (P-PII is
slow: tens of Poisson solves per image) and re-used with flips and rotations.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from ..errors import Cancelled
from ..progress import Progress
from .synthetic_anomalies import GENERATORS, HistogramEqualiser, make_synthetic


@dataclass
class SegmentationConfig:
    generator: str = "ppii"
    equalise: bool = False
    widths: tuple[int, ...] = (16, 32, 64)
    iterations: int = 400
    batch_size: int = 32
    lr: float = 2e-3
    pool_size: int = 512
    clean_fraction: float = 0.25  # share of pool samples left unchanged (label 0)
    seed: int = 0

    def __post_init__(self):
        if self.generator not in GENERATORS:
            raise ValueError(f"unknown synthetic anomaly {self.generator!r}; choose from {GENERATORS}")
        self.widths = tuple(self.widths)

    def to_dict(self) -> dict:
        return asdict(self)


def _block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, padding=1), nn.GroupNorm(min(8, cout), cout), nn.SiLU(),
                         nn.Conv2d(cout, cout, 3, padding=1), nn.GroupNorm(min(8, cout), cout), nn.SiLU())


class SegmentationNet(nn.Module):
    """A compact U-Net: [B, C, S, S] -> anomaly logits [B, S, S]."""

    def __init__(self, channels: int, widths: tuple[int, ...] = (16, 32, 64)):
        super().__init__()
        self.down = nn.ModuleList()
        cin = channels
        for w in widths:
            self.down.append(_block(cin, w))
            cin = w
        self.up = nn.ModuleList()
        for w in reversed(widths[:-1]):
            self.up.append(_block(cin + w, w))
            cin = w
        self.out = nn.Conv2d(cin, 1, 1)

    def forward(self, x):
        skips = []
        for i, block in enumerate(self.down):
            x = block(x if i == 0 else F.max_pool2d(x, 2))
            skips.append(x)
        for block, skip in zip(self.up, reversed(skips[:-1])):
            x = block(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="nearest"), skip], 1))
        return self.out(x)[:, 0]


@dataclass
class TrainedSegmenter:
    """The trained network with what it needs at scoring time."""

    net: SegmentationNet
    config: SegmentationConfig
    equaliser: HistogramEqualiser | None
    seconds: float

    def prepare(self, x_norm: np.ndarray) -> np.ndarray:
        return self.equaliser.apply(x_norm) if self.equaliser is not None else x_norm

    @torch.no_grad()
    def anomaly_map(self, x_norm: np.ndarray, device="cpu") -> np.ndarray:
        """Sigmoid output [N, S, S] for normalised crops [N, C, S, S]."""
        x = torch.from_numpy(np.ascontiguousarray(self.prepare(x_norm), np.float32)).to(device)
        self.net.to(device).eval()
        return torch.sigmoid(self.net(x)).cpu().numpy()


def build_pool(x_norm: np.ndarray, masks: np.ndarray, cfg: SegmentationConfig, rng: np.random.Generator,
               should_stop: Callable[[], bool] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Synthetic training pairs (images [P, C, S, S], labels [P, S, S]) from healthy crops."""
    n = len(x_norm)
    images, labels = [], []
    for i in range(cfg.pool_size):
        if should_stop is not None and should_stop():
            raise Cancelled("training was cancelled")
        t = int(rng.integers(n))
        if rng.random() < cfg.clean_fraction or n < 2:
            images.append(x_norm[t])
            labels.append(np.zeros(x_norm.shape[-2:], np.float32))
            continue
        others = [int(j) for j in rng.choice(n - 1, size=min(8, n - 1), replace=False)]
        sources = [(x_norm[j if j < t else j + 1], masks[j if j < t else j + 1]) for j in others]
        sample = make_synthetic(cfg.generator, x_norm[t], masks[t], sources, rng)
        images.append(sample.image)
        labels.append(sample.label)
    return np.stack(images).astype(np.float32), np.stack(labels).astype(np.float32)


def train_segmenter(x_norm: np.ndarray, masks: np.ndarray, cfg: SegmentationConfig | None = None,
                    device="cpu", should_stop: Callable[[], bool] | None = None,
                    ) -> Iterator[Progress | TrainedSegmenter]:
    """Generator: yields Progress and finally the TrainedSegmenter.

    ``x_norm`` [N, C, S, S] normalised healthy crops, ``masks`` [N, S, S] their cell masks.
    Loss: binary cross-entropy against the soft labels.
    """
    cfg = cfg or SegmentationConfig()
    if len(x_norm) < 2:
        raise ValueError("at least two healthy cells are needed to train the segmentation network")
    start = time.perf_counter()
    rng = np.random.default_rng(cfg.seed)
    torch.manual_seed(cfg.seed)
    images, labels = build_pool(x_norm, np.asarray(masks, bool), cfg, rng, should_stop)
    yield Progress("synthetic anomalies", cfg.pool_size, cfg.pool_size)
    equaliser = HistogramEqualiser.fit(x_norm) if cfg.equalise else None
    if equaliser is not None:
        images = equaliser.apply(images)
    xs, ys = torch.from_numpy(images).to(device), torch.from_numpy(labels).to(device)
    net = SegmentationNet(x_norm.shape[1], cfg.widths).to(device).train()
    opt = torch.optim.Adam(net.parameters(), lr=cfg.lr)
    gen = torch.Generator().manual_seed(cfg.seed)
    batch = min(cfg.batch_size, len(xs))
    for it in range(cfg.iterations):
        if should_stop is not None and should_stop():
            raise Cancelled("training was cancelled")
        for g in opt.param_groups:
            g["lr"] = cfg.lr * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * it / cfg.iterations)))
        idx = torch.randint(0, len(xs), (batch,), generator=gen).to(device)
        xb, yb = xs[idx], ys[idx]
        k = int(torch.randint(0, 4, (1,), generator=gen))
        xb, yb = torch.rot90(xb, k, (2, 3)), torch.rot90(yb, k, (1, 2))
        if bool(torch.randint(0, 2, (1,), generator=gen)):
            xb, yb = torch.flip(xb, (3,)), torch.flip(yb, (2,))
        loss = F.binary_cross_entropy_with_logits(net(xb), yb)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if (it + 1) % 10 == 0 or it + 1 == cfg.iterations:
            yield Progress("segmentation network", it + 1, cfg.iterations, loss=float(loss.detach()))
    net.eval()
    yield TrainedSegmenter(net.cpu(), cfg, equaliser, time.perf_counter() - start)


def segmenter_state(seg: TrainedSegmenter) -> tuple[dict[str, torch.Tensor], dict]:
    """Weights and JSON-able settings, for saving next to a model (safetensors, never pickle)."""
    meta = {"kind": "self-supervised segmentation", "config": seg.config.to_dict(), "seconds": round(seg.seconds, 1),
            "channels": int(seg.net.down[0][0].in_channels),
            "equaliser": None if seg.equaliser is None else seg.equaliser.quantiles}
    return seg.net.state_dict(), meta


def segmenter_from_state(tensors: dict[str, torch.Tensor], meta: dict) -> TrainedSegmenter:
    cfg = SegmentationConfig(**meta["config"])
    net = SegmentationNet(int(meta["channels"]), cfg.widths)
    net.load_state_dict(tensors, strict=True)
    eq = None if meta.get("equaliser") is None else HistogramEqualiser(meta["equaliser"])
    return TrainedSegmenter(net.eval(), cfg, eq, float(meta.get("seconds", 0.0)))
