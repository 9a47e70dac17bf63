"""Two-stage SUPN-VAE training (DESIGN.md, 'Training') as a generator of progress events.

Stage 1 fits the encoder and mean decoder under a fixed-variance Gaussian + KL; stage 2 freezes
them and fits both likelihood heads (SUPN and diagonal) on the same latent samples, so the
baselines get exactly the same budget. An optional joint stage fine-tunes everything at a low
rate. Callers stop training by closing the generator or through ``should_stop``; the network
passed in is only modified if ``in_place`` is set.
"""
from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Callable, Iterator

import numpy as np
import torch

from ..errors import Cancelled
from ..progress import Progress
from ..supn import ArchConfig, SupnVAE, kl_divergence
from ..supn.precision import LOG_2PI


class TrainingCollapsed(RuntimeError):
    """The mean decoder kept collapsing to a constant image."""


@dataclass
class TrainConfig:
    seed: int = 0
    batch_size: int = 32
    stage1_iters: int = 1500
    stage2_iters: int = 800
    joint_iters: int = 0
    lr: float = 2e-3
    lr_stage2: float = 2e-3
    lr_joint: float = 2e-4
    kl_weight: float = 1.0
    fixed_sigma: float = 0.1
    l1_off_diag: float = 1e-3
    augment: bool = True
    dequantise: float = 0.0
    max_minutes: float | None = None
    collapse_ratio: float = 0.02
    max_restarts: int = 2
    early_stop_every: int = 25      # iterations between checks of the held-back loss (if cells are held back)
    early_stop_patience: int = 4    # checks without improvement before a stage stops early
    num_threads: int | None = None

    def __post_init__(self):
        check_minutes(self.max_minutes, "max_minutes")

    def to_dict(self) -> dict:
        return asdict(self)


def check_minutes(minutes: float | None, name: str) -> None:
    """A time budget is None (none) or a positive, finite number of minutes; ValueError naming ``name``."""
    if minutes is not None and not (isinstance(minutes, (int, float)) and math.isfinite(minutes) and minutes > 0):
        raise ValueError(f"{name} must be a finite number of more than 0 minutes")


def augment_batch(x: torch.Tensor, w: torch.Tensor, generator: torch.Generator):
    """Random flips and 90-degree rotations, the same for the image and its weight."""
    k = int(torch.randint(0, 4, (1,), generator=generator))
    flip = bool(torch.randint(0, 2, (1,), generator=generator))
    x, w = torch.rot90(x, k, (2, 3)), torch.rot90(w, k, (2, 3))
    if flip:
        x, w = torch.flip(x, (3,)), torch.flip(w, (3,))
    return x, w


def fixed_variance_nll(x, mean, weight, sigma: float) -> torch.Tensor:
    per_pixel = 0.5 * ((x - mean) / sigma).square() + math.log(sigma) + 0.5 * LOG_2PI
    return (per_pixel * weight).flatten(1).sum(1)


@torch.no_grad()
def prior_sample_spread(net: SupnVAE, n: int, generator: torch.Generator, device) -> float:
    """Mean per-pixel variance of decoded prior samples: near zero when the VAE collapsed."""
    z = torch.randn(n, net.cfg.latent_dim, generator=generator).to(device)
    return float(net.decode_mean(z).var(0).mean())


@torch.no_grad()
def estimate_l2_sigma(net: SupnVAE, x: torch.Tensor, weight: torch.Tensor, batch_size: int) -> torch.Tensor:
    """Per-channel residual std of the mean decoder on training data (the L2 baseline's variance)."""
    sq, count = torch.zeros(x.shape[1], device=x.device), torch.zeros(1, device=x.device)
    for s in range(0, len(x), batch_size):
        xb, wb = x[s:s + batch_size], weight[s:s + batch_size]
        mean = net.decode_mean(net.encode(xb)[0])
        sq += ((xb - mean).square() * wb).sum((0, 2, 3))
        count += wb.sum()
    return torch.sqrt(sq / count.clamp_min(1.0)).clamp_min(1e-3)


def stage_loss(net: SupnVAE, stage: str, xb, wb, cfg: TrainConfig, code=None, mu_z=None, logvar=None):
    """Loss per pixel of the cell, averaged over the batch, for one training stage."""
    if mu_z is None:
        mu_z, logvar = net.encode(xb)
    code = mu_z if code is None else code
    kl = kl_divergence(mu_z, logvar)
    mean = net.decode_mean(code)
    n_pix = wb.flatten(1).sum(1).clamp_min(1.0)
    if stage == "mean":
        nll = fixed_variance_nll(xb, mean, wb, cfg.fixed_sigma)
        return ((nll + cfg.kl_weight * kl) / n_pix).mean()
    loss = 0.0
    for name in ("supn", "diag"):
        factor = net.factor(name, code, mean)
        nll = factor.nll(xb - mean, wb)
        loss = loss + ((nll + cfg.kl_weight * kl) / n_pix).mean()
        if factor.off_diag.numel():
            l1 = (factor.off_diag.abs().mean(2, keepdim=True)[:, :, 0] * wb).sum() / wb.sum().clamp_min(1.0)
            loss = loss + cfg.l1_off_diag * l1
    return loss


@torch.no_grad()
def held_back_loss(net: SupnVAE, stage: str, x: torch.Tensor, w: torch.Tensor, cfg: TrainConfig) -> float:
    """The stage's loss on held-back cells at the encoder mean (deterministic)."""
    was_training = net.training
    net.eval()
    total = 0.0
    for s in range(0, len(x), 64):
        total += float(stage_loss(net, stage, x[s:s + 64], w[s:s + 64], cfg)) * len(x[s:s + 64])
    net.train(was_training)
    return total / len(x)


def _cosine(lr: float, frac: float) -> float:
    return lr * (0.05 + 0.95 * 0.5 * (1.0 + math.cos(math.pi * min(1.0, frac))))


@dataclass
class _Batches:
    """The training cells (and the held-back ones) on the device, and how to draw a batch."""

    x: torch.Tensor
    weight: torch.Tensor
    x_held_back: torch.Tensor | None
    weight_held_back: torch.Tensor | None
    batch_size: int
    device: torch.device
    augmenter: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None  # training.augment

    def draw(self, cfg: TrainConfig, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        idx = torch.randint(0, len(self.x), (self.batch_size,), generator=gen).to(self.device)
        xb, wb = self.x[idx], self.weight[idx]
        if cfg.augment:
            xb, wb = augment_batch(xb, wb, gen)
        if self.augmenter is not None:
            xb = self.augmenter(xb, gen)
        if cfg.dequantise > 0:
            xb = xb + cfg.dequantise * (torch.rand(xb.shape, generator=gen).to(self.device) - 0.5)
        return xb, wb


def _to_device(a: np.ndarray, device: torch.device) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(a, np.float32)).to(device)


def _stage_parameters(net: SupnVAE, stage: str, cfg: TrainConfig) -> tuple[list, float]:
    """What a stage trains (everything else is frozen) and its learning rate."""
    if stage == "mean":
        params, lr0 = list(net.encoder.parameters()) + list(net.mean_decoder.parameters()), cfg.lr
    elif stage == "precision":
        params, lr0 = list(net.heads.parameters()), cfg.lr_stage2
    else:
        params, lr0 = list(net.parameters()), cfg.lr_joint
    for p in net.parameters():
        p.requires_grad_(False)
    for p in params:
        p.requires_grad_(True)
    return params, lr0


@dataclass
class _Run:
    """What the stages share: iterations done, the running loss, the planned total and the clock."""

    total: int
    start: float
    done: int = 0
    running: float | None = None

    def progress(self, stage: str, message: str = "", held_back: float | None = None) -> Progress:
        return Progress(stage, self.done, self.total, message, self.running, time.perf_counter() - self.start,
                        held_back)


def _train_stage(net: SupnVAE, stage: str, iters: int, budget_s: float | None, data: _Batches, cfg: TrainConfig,
                 gen: torch.Generator, run: _Run, fine_tuning: bool, report_every: int, attempt: int,
                 should_stop: Callable[[], bool] | None):
    """Generator of one stage's Progress; returns True when the mean decoder collapsed."""
    stage_start = time.perf_counter()
    params, lr0 = _stage_parameters(net, stage, cfg)
    opt = torch.optim.Adam(params, lr=lr0)
    run.running = None
    best_loss, best_params, checks_without_gain = math.inf, None, 0
    for it in range(iters):
        if should_stop is not None and should_stop():
            raise Cancelled("training was cancelled")
        elapsed_stage = time.perf_counter() - stage_start
        frac = it / iters
        if budget_s is not None:
            if elapsed_stage >= budget_s:
                break
            frac = max(frac, elapsed_stage / budget_s)
        for g in opt.param_groups:
            g["lr"] = _cosine(lr0, frac)
        xb, wb = data.draw(cfg, gen)
        mu_z, logvar = net.encode(xb)
        code = net.sample_latent(mu_z, logvar, gen if data.device.type == "cpu" else None)
        loss = stage_loss(net, stage, xb, wb, cfg, code, mu_z, logvar)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        opt.step()
        value = float(loss.detach())
        if not math.isfinite(value):
            raise FloatingPointError(f"training diverged (loss {value}) in stage {stage!r}")
        run.running = value if run.running is None else 0.95 * run.running + 0.05 * value
        run.done += 1
        if stage == "mean" and it == max(50, iters // 4) and not fine_tuning:
            spread = prior_sample_spread(net, 64, gen, data.device)
            if spread < cfg.collapse_ratio * float(data.x[:256].var(0).mean()):
                yield run.progress(stage, f"the mean decoder collapsed to a constant image; restarting "
                                          f"(attempt {attempt + 2})")
                return True
        if run.done % report_every == 0:
            yield run.progress(stage)
        if data.x_held_back is not None and (it + 1) % cfg.early_stop_every == 0:
            val = held_back_loss(net, stage, data.x_held_back, data.weight_held_back, cfg)
            if val < best_loss - 1e-4:
                best_loss, checks_without_gain = val, 0
                best_params = [p.detach().clone() for p in params]
            else:
                checks_without_gain += 1
            stop = checks_without_gain >= cfg.early_stop_patience
            yield run.progress(stage, "held-back loss stopped improving; next stage" if stop else "", val)
            if stop:
                break
    if best_params is not None:  # keep the weights that did best on the held-back cells
        with torch.no_grad():
            for p, best in zip(params, best_params):
                p.copy_(best)
    if stage == "mean":
        net.eval()
        net.l2_log_sigma.copy_(torch.log(estimate_l2_sigma(net, data.x, data.weight, 256)))
        net.train()
    return False


def train_supn_vae(x: np.ndarray, weight: np.ndarray, arch: ArchConfig | None = None,
                   cfg: TrainConfig | None = None, init: SupnVAE | None = None, in_place: bool = False,
                   device: torch.device | str = "cpu", should_stop: Callable[[], bool] | None = None,
                   report_every: int = 10, x_held_back: np.ndarray | None = None,
                   weight_held_back: np.ndarray | None = None,
                   augmenter: Callable[[torch.Tensor, torch.Generator], torch.Tensor] | None = None,
                   ) -> Iterator[Progress | SupnVAE]:
    """Train on normalised crops ``x`` [N, C, S, S] with loss weights ``weight`` [N, 1, S, S].

    Yields Progress events and, last, the trained SupnVAE. ``init`` starts from an existing
    network (fine-tuning); it is copied unless ``in_place``. With held-back cells, every stage
    stops early when their loss stops improving and keeps its best weights.
    """
    cfg = cfg or TrainConfig()
    device = torch.device(device)
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    if init is not None:
        arch = init.cfg
    arch = arch or ArchConfig(crop_size=x.shape[-1], channels=x.shape[1])
    if x.ndim != 4 or x.shape[1:] != (arch.channels, arch.crop_size, arch.crop_size):
        raise ValueError(f"training crops must be [N, {arch.channels}, {arch.crop_size}, {arch.crop_size}], got {x.shape}")
    if len(x) < 2:
        raise ValueError("at least two training crops are needed")
    held_back = x_held_back is not None and len(x_held_back)
    data = _Batches(_to_device(x, device), _to_device(weight, device),
                    _to_device(x_held_back, device) if held_back else None,
                    _to_device(weight_held_back, device) if held_back else None, min(cfg.batch_size, len(x)), device,
                    augmenter)
    budget_s = None if cfg.max_minutes is None else 60.0 * cfg.max_minutes
    stages = [("mean", cfg.stage1_iters, 0.5), ("precision", cfg.stage2_iters, 0.4), ("joint", cfg.joint_iters, 0.1)]
    stages = [s for s in stages if s[1] > 0]
    share = sum(s[2] for s in stages)
    run = _Run(sum(s[1] for s in stages), time.perf_counter())

    for attempt in range(cfg.max_restarts + 1):
        torch.manual_seed(cfg.seed + 1000 * attempt)
        gen = torch.Generator().manual_seed(cfg.seed + 1000 * attempt)
        if init is not None and not in_place:
            net = SupnVAE(init.cfg)
            net.load_state_dict(init.state_dict())
        else:
            net = init if init is not None else SupnVAE(arch)
        net.to(device).train()
        collapsed = False
        run.done = 0
        for stage, iters, frac_time in stages:
            stage_budget = None if budget_s is None else budget_s * frac_time / share
            collapsed = yield from _train_stage(net, stage, iters, stage_budget, data, cfg, gen, run,
                                                init is not None, report_every, attempt, should_stop)
            if collapsed:
                break
        if not collapsed:
            break
    else:
        raise TrainingCollapsed("the VAE collapsed to a constant image in every attempt; try another seed or more data")

    for p in net.parameters():
        p.requires_grad_(True)
    net.eval()
    if run.running is None:
        run.running = float("nan")
    yield run.progress("done")
    yield net


def run_to_end(events: Iterator[Progress | SupnVAE], on_progress: Callable[[Progress], None] | None = None) -> SupnVAE:
    """Drive a training generator, passing progress to a callback; return the network."""
    net = None
    for event in events:
        if isinstance(event, Progress):
            if on_progress is not None:
                on_progress(event)
        else:
            net = event
    if net is None:
        raise Cancelled("training ended without a model")
    return net
