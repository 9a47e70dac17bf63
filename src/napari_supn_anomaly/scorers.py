"""Every anomaly scorer by name: the SUPN-VAE's own and the seed papers' alternatives.

One entry point, :func:`score_cells_with`, turns standardised single-cell crops (raw
intensities [N, C, S, S], as for ``AnomalyModel.score_crops``) and cell masks [N, S, S] into
per-pixel maps and per-cell scores (the max of the map inside the cell). Each scorer states its
cost class: "instant" (one forward/backward pass), "slow" (an optimisation per cell) or
"needs training" (a network of its own, trained on healthy cells first with
:func:`train_scorer`). Scorers that combine several maps need healthy calibration cells first
(:func:`calibrate_scorer`); their calibration is stored in the model's metadata next to the
SUPN scorers' own, so ``model.threshold_for_fpr(fpr, scorer=name)`` works for every scorer.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from .models import AnomalyModel, CropScores
from .models.model_file import ModelFileError, load_model_file, save_model_file
from .pipeline.cell_crops import loss_weight
from .supn import cell_scores
from .supn.ensemble import MemberScale, combine_calibrated
from .supn.self_supervised import (SegmentationConfig, TrainedSegmenter, segmenter_from_state, segmenter_state,
                                   train_segmenter)
from .supn.vae_scorers import gradient_map, projection_map, reconstruction_error_map

INSTANT, SLOW, NEEDS_TRAINING = "instant", "slow", "needs training"
SEGMENTER_KIND = "self-supervised segmentation"


@dataclass(frozen=True)
class ScorerInfo:
    name: str
    cost: str
    family: str
    description: str
    needs_calibration: bool = False
    segmenter: SegmentationConfig | None = None  # for the "needs training" scorers


SCORERS: dict[str, ScorerInfo] = {s.name: s for s in [
    ScorerInfo("supn", INSTANT, "SUPN-VAE", "whitened residual of the sparse-precision Gaussian (MIDL 2022)"),
    ScorerInfo("diag", INSTANT, "SUPN-VAE", "whitened residual of the learned diagonal Gaussian (paper baseline)"),
    ScorerInfo("l2", INSTANT, "SUPN-VAE", "residual over one fixed standard deviation (paper baseline)"),
    ScorerInfo("recon", INSTANT, "VAE", "squared reconstruction error (Zhou et al. 2020)"),
    ScorerInfo("grad-kl", INSTANT, "VAE gradient", "|d KL / d x|, smoothed (Zimmerer et al. 2019)"),
    ScorerInfo("grad-rec", INSTANT, "VAE gradient", "|d Rec / d x|, smoothed (Zhou et al. 2020)"),
    ScorerInfo("grad-elbo", INSTANT, "VAE gradient", "|d (Rec + KL) / d x|, smoothed (Zhou et al. 2020)"),
    ScorerInfo("combi", INSTANT, "VAE gradient", "healthy-normalised |d KL / d x| times reconstruction error "
               "(Zimmerer et al. 2019)", needs_calibration=True),
    ScorerInfo("combi-add", INSTANT, "VAE gradient", "healthy-normalised |d KL / d x| plus healthy-normalised "
               "reconstruction error", needs_calibration=True),
    ScorerInfo("projection", SLOW, "VAE projection", "energy-based projection, squared change of the input "
               "(Dehaene et al. 2020)"),
    ScorerInfo("ssl-fpi", NEEDS_TRAINING, "self-supervised", "segmentation net trained with Foreign Patch "
               "Interpolation (Tan et al.)", segmenter=SegmentationConfig(generator="fpi")),
    ScorerInfo("ssl-pii", NEEDS_TRAINING, "self-supervised", "segmentation net trained with Poisson Image "
               "Interpolation (Tan et al. 2021)", segmenter=SegmentationConfig(generator="pii")),
    ScorerInfo("ssl-ppii", NEEDS_TRAINING, "self-supervised", "segmentation net trained with probabilistic PII "
               "(Mueller et al. 2023)", segmenter=SegmentationConfig(generator="ppii")),
    ScorerInfo("ssl-ppii-he", NEEDS_TRAINING, "self-supervised", "probabilistic PII on histogram-equalised cells "
               "(Mueller et al. 2023)", segmenter=SegmentationConfig(generator="ppii", equalise=True)),
    ScorerInfo("ensemble", INSTANT, "ensemble", "mean of supn, diag, recon and grad-elbo maps, each calibrated "
               "on healthy cells", needs_calibration=True),
]}

MODEL_SCORERS = ("supn", "diag", "l2")
ENSEMBLE_MEMBERS = ("supn", "diag", "recon", "grad-elbo")


def scorer_names() -> list[str]:
    return list(SCORERS)


def scorer_info(name: str) -> ScorerInfo:
    if name not in SCORERS:
        raise ValueError(f"unknown scorer {name!r}; choose from {', '.join(SCORERS)}")
    return SCORERS[name]


def available_scorers(model: AnomalyModel) -> list[str]:
    """Scorers that can run on whole fields with this model as it is: its own likelihoods plus the
    registry's scorers it holds a healthy calibration for (no separately trained network needed)."""
    calibrated = model.metadata.get("calibration", {})
    extra = [n for n, info in SCORERS.items()
             if n not in model.scorers and n in calibrated and info.segmenter is None]
    return list(model.scorers) + extra


def describe_scorers() -> list[dict]:
    return [{"name": s.name, "cost": s.cost, "family": s.family, "description": s.description,
             "needs_calibration": s.needs_calibration} for s in SCORERS.values()]


# -- maps per batch -----------------------------------------------------------------------

def _calibration(model: AnomalyModel, name: str) -> dict:
    cal = model.metadata.get("calibration", {}).get(name)
    if not cal or ("normalisation" not in cal and "members" not in cal):
        raise ValueError(f"scorer {name!r} must first be calibrated on healthy cells of this model "
                         f"(scorers.calibrate_scorer, or `supn-anomaly evaluate`)")
    return cal


def _minmax(maps: torch.Tensor, lo_hi) -> torch.Tensor:
    lo, hi = float(lo_hi[0]), float(lo_hi[1])
    return (maps - lo) / max(hi - lo, 1e-12)


def _batch_maps(name: str, model: AnomalyModel, x: torch.Tensor, masks: np.ndarray,
                segmenter: TrainedSegmenter | None, options: dict) -> torch.Tensor:
    net = model.net
    if name == "recon":
        return reconstruction_error_map(net, x)
    if name in ("grad-kl", "grad-rec", "grad-elbo"):
        weight = torch.from_numpy(loss_weight(masks)).to(x.device)
        return gradient_map(net, x, name.split("-")[1], weight=weight, sigma=options.get("sigma"))
    if name in ("combi", "combi-add"):
        norm = _calibration(model, name)["normalisation"]
        kl = _minmax(gradient_map(net, x, "kl", sigma=options.get("sigma")), norm["grad-kl"])
        rec = reconstruction_error_map(net, x)
        return kl * rec if name == "combi" else kl + _minmax(rec, norm["recon"])
    if name == "projection":
        weight = torch.from_numpy(loss_weight(masks)).to(x.device)
        keep = {k: options[k] for k in ("steps", "step_size", "lam") if k in options}
        return projection_map(net, x, weight=weight, **keep)
    if SCORERS[name].segmenter is not None:
        if segmenter is None:
            raise ValueError(f"scorer {name!r} needs its own network trained on healthy cells first "
                             f"(scorers.train_scorer, or `supn-anomaly evaluate --scorers {name}`)")
        return torch.from_numpy(segmenter.anomaly_map(x.cpu().numpy(), x.device))
    raise ValueError(f"scorer {name!r} has no map function")  # pragma: no cover


def _iter_batches(name: str, model: AnomalyModel, crops: np.ndarray, masks: np.ndarray, batch_size: int,
                  segmenter: TrainedSegmenter | None, options: dict) -> Iterator[tuple[int, CropScores]]:
    if name in MODEL_SCORERS:
        yield from model.iter_score_batches(crops, masks, scorer=name, batch_size=batch_size)
        return
    model.check_crops(crops)
    for start in range(0, len(crops), batch_size):
        x = torch.from_numpy(model.normalise(crops[start:start + batch_size])).to(model.device)
        m = np.asarray(masks[start:start + batch_size], bool)
        maps = _batch_maps(name, model, x, m, segmenter, options).detach().float()
        scores = cell_scores(maps, torch.from_numpy(m).to(maps.device))
        yield start, CropScores(maps.cpu().numpy(), scores.cpu().numpy())


def score_cells_with(name: str, model: AnomalyModel, crops: np.ndarray, masks: np.ndarray, *, device=None,
                     batch_size: int = 32, segmenter: TrainedSegmenter | None = None,
                     should_stop: Callable[[], bool] | None = None,
                     on_progress: Callable[[int, int], None] | None = None, **options) -> CropScores:
    """Per-pixel maps [N, S, S] and per-cell scores [N] of scorer ``name``.

    ``crops`` are raw intensities [N, C, S, S] at the model's crop size and scale, ``masks`` the
    cells [N, S, S]. ``segmenter`` is the trained network of a "needs training" scorer.
    ``should_stop`` is polled between batches (raises InterruptedError); ``on_progress(done, total)``.
    Options: ``sigma`` (gradient smoothing, px), ``steps``/``step_size``/``lam`` (projection).
    """
    info = scorer_info(name)
    if device is not None:
        model.to(device)
    crops = np.asarray(crops, np.float32)
    masks = np.asarray(masks, bool)
    if masks.shape != (len(crops),) + crops.shape[-2:]:
        raise ValueError(f"masks must be [N, S, S] matching the crops, got {masks.shape} for crops {crops.shape}")
    if name == "ensemble":
        return _score_ensemble(model, crops, masks, batch_size, should_stop, on_progress, options)
    if info.segmenter is not None and segmenter is not None and segmenter.config.generator != info.segmenter.generator:
        raise ValueError(f"the network given was trained with {segmenter.config.generator!r}, not for {name!r}")
    parts = []
    for start, part in _iter_batches(name, model, crops, masks, batch_size, segmenter, options):
        parts.append(part)
        if on_progress is not None:
            on_progress(start + len(part.scores), len(crops))
        if should_stop is not None and should_stop():
            raise InterruptedError("scoring was cancelled")
    if not parts:
        s = crops.shape[-1] if crops.ndim == 4 else model.crop_size
        return CropScores(np.zeros((0, s, s), np.float32), np.zeros(0, np.float32))
    return CropScores(np.concatenate([p.maps for p in parts]), np.concatenate([p.scores for p in parts]))


def _score_ensemble(model, crops, masks, batch_size, should_stop, on_progress, options) -> CropScores:
    cal = _calibration(model, "ensemble")
    names = list(cal["members"])
    maps = [score_cells_with(n, model, crops, masks, batch_size=batch_size, should_stop=should_stop,
                             **options).maps for n in names]
    combined = combine_calibrated(maps, [MemberScale.from_dict(cal["members"][n]) for n in names])
    scores = cell_scores(torch.from_numpy(combined), torch.from_numpy(masks)).numpy()
    if on_progress is not None:
        on_progress(len(crops), len(crops))
    return CropScores(combined, scores)


# -- calibration on healthy cells ---------------------------------------------------------

def _foreground_range(maps: np.ndarray, masks: np.ndarray, upper: float = 0.999) -> list[float]:
    values = maps[masks] if masks.any() else maps.ravel()
    return [float(values.min()), float(np.quantile(values, upper))]


def _store(model: AnomalyModel, name: str, scores: np.ndarray, extra: dict) -> dict:
    scores = np.sort(np.asarray(scores, np.float64))
    entry = {"healthy_scores": [float(s) for s in scores], "n_cells": int(len(scores)),
             "quantiles": {str(q): float(np.quantile(scores, q)) for q in (0.5, 0.9, 0.95, 0.99)}, **extra}
    model.metadata.setdefault("calibration", {})[name] = entry
    return entry


def calibrate_scorer(name: str, model: AnomalyModel, healthy_crops: np.ndarray, healthy_masks: np.ndarray, *,
                     segmenter: TrainedSegmenter | None = None, batch_size: int = 32,
                     members: tuple[str, ...] = ENSEMBLE_MEMBERS, **options) -> dict:
    """Store the healthy per-cell score distribution of ``name`` in ``model.metadata['calibration']``.

    Combined scorers also store their map normalisation (combi: min and 99.9th percentile of
    each map over healthy cell pixels; ensemble: each member's healthy median and spread).
    Works on the model in place; use ``model.copy()`` to keep a built-in model untouched.
    """
    scorer_info(name)
    healthy_masks = np.asarray(healthy_masks, bool)
    if len(healthy_crops) < 2:
        raise ValueError("at least two healthy cells are needed for calibration")
    run = dict(batch_size=batch_size, **options)
    if name in ("combi", "combi-add"):
        kl = score_cells_with("grad-kl", model, healthy_crops, healthy_masks, **run).maps
        rec = score_cells_with("recon", model, healthy_crops, healthy_masks, **run).maps
        model.metadata.setdefault("calibration", {})[name] = {"normalisation": {
            "grad-kl": _foreground_range(kl, healthy_masks), "recon": _foreground_range(rec, healthy_masks)}}
        scores = score_cells_with(name, model, healthy_crops, healthy_masks, **run).scores
        return _store(model, name, scores, {"normalisation": model.metadata["calibration"][name]["normalisation"]})
    if name == "ensemble":
        scales = {}
        for member in members:
            if SCORERS[member].segmenter is not None or member == "ensemble":
                raise ValueError(f"{member!r} cannot be an ensemble member")
            if SCORERS[member].needs_calibration:
                calibrate_scorer(member, model, healthy_crops, healthy_masks, **run)
            s = score_cells_with(member, model, healthy_crops, healthy_masks, **run).scores
            scales[member] = MemberScale.from_healthy_scores(s).to_dict()
        model.metadata.setdefault("calibration", {})["ensemble"] = {"members": scales}
        scores = score_cells_with("ensemble", model, healthy_crops, healthy_masks, **run).scores
        return _store(model, name, scores, {"members": scales})
    scores = score_cells_with(name, model, healthy_crops, healthy_masks, segmenter=segmenter, **run).scores
    return _store(model, name, scores, {})


# -- scorers with their own network ---------------------------------------------------------

def train_scorer(name: str, model: AnomalyModel, healthy_crops: np.ndarray, healthy_masks: np.ndarray, *,
                 iterations: int | None = None, pool_size: int | None = None, seed: int = 0, device="cpu",
                 should_stop: Callable[[], bool] | None = None):
    """Generator for a "needs training" scorer: yields (stage, step, total, loss), then the TrainedSegmenter.

    The network sees the healthy crops normalised with the model's own intensity statistics.
    """
    info = scorer_info(name)
    if info.segmenter is None:
        raise ValueError(f"scorer {name!r} needs no training")
    cfg = copy.deepcopy(info.segmenter)
    cfg.seed = seed
    if iterations is not None:
        cfg.iterations = int(iterations)
    if pool_size is not None:
        cfg.pool_size = int(pool_size)
    model.check_crops(np.asarray(healthy_crops))
    x = model.normalise(np.asarray(healthy_crops, np.float32))
    yield from train_segmenter(x, np.asarray(healthy_masks, bool), cfg, device=device, should_stop=should_stop)


def save_segmenter(path: str | Path, segmenter: TrainedSegmenter, model: AnomalyModel) -> Path:
    tensors, meta = segmenter_state(segmenter)
    meta.update(base_model=model.name, crop_size=model.crop_size, intensity=model.intensity.to_dict())
    return save_model_file(path, tensors, meta)


def load_segmenter(path: str | Path) -> TrainedSegmenter:
    tensors, meta = load_model_file(path)
    if meta.get("kind") != SEGMENTER_KIND:
        raise ModelFileError(f"{Path(path).name} is not a self-supervised scorer network")
    try:
        return segmenter_from_state(tensors, meta)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{Path(path).name} is damaged: {str(exc).splitlines()[0]}") from exc
