"""Every anomaly scorer by name: the SUPN-VAE's own and the seed papers' alternatives.

One entry point, :func:`score_cells_with`, turns standardised single-cell crops (raw
intensities [N, C, S, S], as for ``AnomalyModel.score_crops``) and cell masks [N, S, S] into
per-pixel maps and per-cell scores (the max of the map inside the cell). Each scorer states its
cost class: "instant" (one forward/backward pass), "slow" (an optimisation per cell) or
"needs training" (a network of its own, trained on healthy cells first with
:func:`train_scorer`). Scorers that combine several maps need healthy calibration cells first
(:func:`calibrate_scorer`); their calibration is stored in the model's metadata next to the
SUPN scorers' own, so ``model.threshold_for_fpr(fpr, scorer=name)`` works for every scorer.

A "needs training" scorer runs wherever its network is at hand: shipped next to a built-in model
(``models/weights/<model>.<scorer>.safetensors``, calibrated in the model's metadata) or loaded
from a file and attached to the model for the session (:func:`attach_segmenter_file`); such a
file carries its own healthy calibration. :func:`segmenter_for` finds it, :func:`available_scorers`
lists it.
"""
from __future__ import annotations

import copy
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch

from .models import AnomalyModel, CropScores
from .models.builtin import builtin_model_names, builtin_segmenter_path
from .models.model_file import ModelFileError, load_model_file, read_metadata, save_model_file
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
    registry's scorers it holds a healthy calibration for, the self-supervised ones only where their
    network is at hand (shipped with the built-in model, or attached from a file)."""
    calibrated = model.metadata.get("calibration", {})
    extra = [n for n, info in SCORERS.items() if n not in model.scorers and n in calibrated
             and (info.segmenter is None or has_segmenter(model, n))]
    return list(model.scorers) + extra


def describe_cost(name: str) -> str:
    """The cost class of a scorer in words, for a label beside a scorer menu."""
    cost = scorer_info(name).cost
    return {INSTANT: "instant: one pass of the network per batch of cells",
            SLOW: "slow: an optimisation per cell (tens of times slower than instant scorers)",
            NEEDS_TRAINING: "needs training: a segmentation network of its own, trained on healthy cells"}[cost]


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


def train_calibrated_scorer(name: str, model: AnomalyModel, train_crops: np.ndarray, train_masks: np.ndarray,
                            calibration_crops: np.ndarray, calibration_masks: np.ndarray, *,
                            iterations: int | None = None, pool_size: int | None = None, seed: int = 0,
                            device="cpu", should_stop: Callable[[], bool] | None = None):
    """Generator: :func:`train_scorer` on the training cells, then :func:`calibrate_scorer` on other
    healthy cells (never the ones it trained on). Yields (stage, step, total, loss) as training goes,
    ("calibration", 0, 1, nan) before calibrating, and finally (TrainedSegmenter, calibration entry).
    The calibration is also stored in ``model.metadata`` (see :func:`calibrate_scorer`).
    """
    segmenter = None
    for event in train_scorer(name, model, train_crops, train_masks, iterations=iterations, pool_size=pool_size,
                              seed=seed, device=device, should_stop=should_stop):
        if isinstance(event, tuple):
            yield event
        else:
            segmenter = event
    yield ("calibration", 0, 1, float("nan"))
    entry = calibrate_scorer(name, model, calibration_crops, calibration_masks, segmenter=segmenter)
    yield segmenter, entry


def segmenter_scorer(segmenter: TrainedSegmenter) -> str:
    """The scorer a trained network belongs to (by its synthetic anomaly and equalisation)."""
    for name, info in SCORERS.items():
        if info.segmenter is not None and (info.segmenter.generator, info.segmenter.equalise) == (
                segmenter.config.generator, segmenter.config.equalise):
            return name
    raise ValueError(f"no scorer uses networks trained with {segmenter.config.generator!r}")  # pragma: no cover


def save_segmenter(path: str | Path, segmenter: TrainedSegmenter, model: AnomalyModel,
                   calibration: dict | None = None) -> Path:
    """Save a trained network (safetensors) with what ties it to ``model``.

    ``calibration`` is its healthy calibration entry (what :func:`calibrate_scorer` returns); a
    file that carries one can run in the Detect widget and ``supn-anomaly detect`` as it is.
    """
    tensors, meta = segmenter_state(segmenter)
    meta.update(scorer=segmenter_scorer(segmenter), base_model=model.name, crop_size=model.crop_size,
                cell_diameter_px=model.cell_diameter_px, intensity=model.intensity.to_dict())
    if calibration is not None:
        meta["calibration"] = {k: v for k, v in calibration.items() if k != "normalisation"}
    return save_model_file(path, tensors, meta)


def _check_fits(meta: dict, model: AnomalyModel, filename: str) -> None:
    """One clear error when a network was trained on another model's crops (size, channels, intensities)."""
    intensity = meta.get("intensity") or {}
    fits = (int(meta.get("crop_size", -1)) == model.crop_size and int(meta.get("channels", -1)) == model.channels
            and _close(intensity.get("low"), model.intensity.to_dict()["low"])
            and _close(intensity.get("high"), model.intensity.to_dict()["high"])
            and ("cell_diameter_px" not in meta or _close(meta["cell_diameter_px"], model.cell_diameter_px)))
    if not fits:
        raise ModelFileError(
            f"{filename} was trained for the model {meta.get('base_model', '?')!r} "
            f"({meta.get('crop_size', '?')} px crops, {meta.get('channels', '?')} channel(s)); it does not fit the "
            f"model {model.name!r} ({model.crop_size} px crops, {model.channels} channel(s), other intensities "
            f"or cell size): train one for this model")


def _close(a, b) -> bool:
    try:
        return np.allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-4, atol=1e-6)
    except (TypeError, ValueError):
        return False


def _read_segmenter(path: str | Path, model: AnomalyModel | None) -> tuple[TrainedSegmenter, dict]:
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelFileError(f"scorer network file not found: {path}")
    meta = read_metadata(path)
    if meta.get("kind") != SEGMENTER_KIND:
        what = "an anomaly model" if "arch" in meta or "score_rules" in meta else "not a network of this plugin"
        raise ModelFileError(f"{path.name} is {what}, not a self-supervised scorer network (ssl-*)")
    if model is not None:
        _check_fits(meta, model, path.name)
    tensors, meta = load_model_file(path)
    try:
        return segmenter_from_state(tensors, meta), meta
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path.name} is damaged: {str(exc).splitlines()[0]}") from exc


def load_segmenter(path: str | Path, model: AnomalyModel | None = None) -> TrainedSegmenter:
    """A trained network from a safetensors file; with ``model``, checked to have been made for it.

    Raises ModelFileError (one line for people) for a missing, foreign or damaged file.
    """
    return _read_segmenter(path, model)[0]


# networks attached to a model object for this session: model -> {scorer: TrainedSegmenter}
_ATTACHED: "weakref.WeakKeyDictionary[AnomalyModel, dict[str, TrainedSegmenter]]" = weakref.WeakKeyDictionary()


def attach_segmenter(model: AnomalyModel, segmenter: TrainedSegmenter, calibration: dict | None) -> str:
    """Let ``model`` run the segmenter's scorer from now on; returns the scorer's name.

    The network's own healthy calibration replaces the model's entry for that scorer (an entry
    made with another network would give wrong thresholds); without one the scorer needs a
    threshold or a calibration (:func:`calibrate_scorer`) before it can flag cells.
    """
    name = segmenter_scorer(segmenter)
    table = model.metadata.setdefault("calibration", {})
    if calibration and calibration.get("healthy_scores"):
        table[name] = copy.deepcopy(calibration)
    else:
        table.pop(name, None)
    _ATTACHED.setdefault(model, {})[name] = segmenter
    return name


def attach_segmenter_file(model: AnomalyModel, path: str | Path, require_calibration: bool = False) -> str:
    """Load a network file made for ``model`` and attach it (:func:`attach_segmenter`); its scorer's name.

    ``require_calibration``: refuse a file without a healthy calibration (nothing is attached then).
    """
    segmenter, meta = _read_segmenter(path, model)
    calibration = meta.get("calibration")
    if require_calibration and not (calibration and calibration.get("healthy_scores")):
        raise ModelFileError(f"{Path(path).name} carries no healthy calibration, so no threshold can be set; "
                             f"make it with `supn-anomaly train-scorer`, which calibrates it on held-back healthy cells")
    return attach_segmenter(model, segmenter, calibration)


def shipped_segmenter_path(model: AnomalyModel, name: str) -> Path | None:
    """The network file of ``name`` shipped with a built-in model, or None."""
    if model.name not in builtin_model_names():
        return None
    path = builtin_segmenter_path(model.name, name)
    return path if path.is_file() else None


def has_segmenter(model: AnomalyModel, name: str) -> bool:
    return name in _ATTACHED.get(model, {}) or shipped_segmenter_path(model, name) is not None


def segmenter_for(model: AnomalyModel, name: str) -> TrainedSegmenter | None:
    """The network of scorer ``name`` for ``model``: attached to it, else shipped with it, else None."""
    attached = _ATTACHED.get(model, {}).get(name)
    if attached is not None:
        return attached
    path = shipped_segmenter_path(model, name)
    if path is None:
        return None
    segmenter = load_segmenter(path, model)
    _ATTACHED.setdefault(model, {})[name] = segmenter  # load once; the model's own calibration stays
    return segmenter


def network_for_run(model: AnomalyModel, name: str, segmenter: TrainedSegmenter | None = None
                    ) -> TrainedSegmenter | None:
    """Check that ``model`` can run scorer ``name`` on fields; the network it needs (None if none).

    ``segmenter`` is a network given for this run; otherwise the attached or shipped one is used.
    Raises ValueError with a message for people.
    """
    if name in model.scorers:
        return None
    info = SCORERS.get(name)
    if info is None or info.segmenter is None:
        if name not in available_scorers(model):
            raise ValueError(f"the model {model.name!r} has no scorer {name!r}; it has "
                             f"{', '.join(available_scorers(model))}")
        return None
    if segmenter is not None:
        if segmenter_scorer(segmenter) != name:
            raise ValueError(f"the network given was trained for {segmenter_scorer(segmenter)!r}, not {name!r}")
        return segmenter
    segmenter = segmenter_for(model, name)
    if segmenter is None:
        raise ValueError(f"scorer {name!r} needs its trained network and none ships with the model "
                         f"{model.name!r}: load one (--segmenter FILE, or 'Scorer network…' in the Detect widget)")
    return segmenter
