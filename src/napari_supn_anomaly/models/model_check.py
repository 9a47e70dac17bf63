"""What a model file must hold to be used: checked when it loads, before anything runs.

A model that cannot tell healthy cells from anything else (weights that are not numbers, an
intensity range of zero width, no score rule, an empty or flat calibration) would score every
cell alike and report "no parasites": it is refused with a message naming the file. The
architecture is checked against the weights' shapes on torch's "meta" device, which allocates
nothing, so a header that declares a huge network is refused before any memory is used.
"""
from __future__ import annotations

import math
import warnings

import torch

from ..cells.modality import MODALITIES
from ..errors import ModelFileError
from ..supn import LIKELIHOODS, SCORE_RULES, ArchConfig, SupnVAE, check_rotations

# Far beyond any model of red cells; a header past them is damaged, not ambitious.
ARCH_LIMITS = {"crop_size": 1024, "channels": 16, "latent_dim": 4096, "radius": 8, "blocks_per_level": 8}
MAX_LEVELS, MAX_WIDTH = 8, 4096


def check_model(tensors: dict[str, torch.Tensor], meta: dict, name: str) -> ArchConfig:
    """The architecture of a model file whose weights and header can be trusted; ModelFileError
    (naming the file ``name``) for anything that would make it fail, hang or mislead."""
    if not isinstance(meta, dict):
        raise ModelFileError(f"{name} has a damaged model header (its settings are not a table)")
    cfg = _architecture(meta.get("architecture"), name)
    _weights_match(cfg, tensors, name)
    bad = [k for k, t in tensors.items() if t.is_floating_point() and not torch.isfinite(t).all()]
    if bad:
        raise ModelFileError(f"{name} is damaged: its weights hold values that are not numbers (NaN or "
                             f"infinite, e.g. in {bad[0]}); retrain the model or use another copy")
    _intensity(meta.get("intensity"), cfg.channels, name)
    diameter = meta.get("cell_diameter_px")
    if not _number(diameter) or not 0 < diameter < cfg.crop_size:
        raise ModelFileError(f"{name} has a damaged model header: the cell diameter ({diameter!r}) must be a "
                             f"number of pixels between 0 and the crop size {cfg.crop_size}")
    try:
        check_rotations(meta.get("rotations", 1))
    except ValueError as exc:
        raise ModelFileError(f"{name} has a damaged model header: {exc}") from None
    if meta.get("modality", "fluorescence") not in MODALITIES:
        raise ModelFileError(f"{name} has a damaged model header: unknown modality {meta.get('modality')!r}")
    _score_rules(meta.get("score_rules"), name)
    _calibration(meta.get("calibration", None), name)
    names = meta.get("channel_names")
    if names is not None and (not isinstance(names, list) or len(names) != cfg.channels
                              or not all(isinstance(n, str) for n in names)):
        raise ModelFileError(f"{name} has a damaged model header: channel_names must name its {cfg.channels} "
                             "channel(s)")
    if not isinstance(meta.get("name", ""), str):
        raise ModelFileError(f"{name} has a damaged model header: its name is not text")
    return cfg


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _architecture(arch, name: str) -> ArchConfig:
    if not isinstance(arch, dict):
        raise ModelFileError(f"{name} is damaged or incomplete: it does not describe its network (architecture)")
    for key, limit in ARCH_LIMITS.items():
        value = arch.get(key, getattr(ArchConfig, key))
        if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= limit:
            raise ModelFileError(f"{name} is damaged: its architecture declares {key} = {value!r}")
    for key in ("widths", "head_widths"):
        value = arch.get(key, getattr(ArchConfig, key))
        if (not isinstance(value, (list, tuple)) or not 0 < len(value) <= MAX_LEVELS
                or not all(isinstance(w, int) and not isinstance(w, bool) and 0 < w <= MAX_WIDTH for w in value)):
            raise ModelFileError(f"{name} is damaged: its architecture declares {key} = {value!r}")
    for key in ("log_diag_low", "log_diag_high", "init_log_diag"):
        if not _number(arch.get(key, getattr(ArchConfig, key))):
            raise ModelFileError(f"{name} is damaged: its architecture declares {key} = {arch.get(key)!r}")
    try:
        return ArchConfig.from_dict(arch)
    except (TypeError, ValueError) as exc:
        raise ModelFileError(f"{name} is damaged or incomplete: {str(exc).splitlines()[0]}") from None


def _weights_match(cfg: ArchConfig, tensors: dict[str, torch.Tensor], name: str) -> None:
    try:
        with torch.device("meta"), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # a damaged header may declare empty layers
            expected = {k: tuple(v.shape) for k, v in SupnVAE(cfg).state_dict().items()}
    except (RuntimeError, ValueError, TypeError, ZeroDivisionError) as exc:
        raise ModelFileError(f"{name} is damaged: its architecture cannot be built ({exc})") from None
    missing = sorted(set(expected) - set(tensors))
    extra = sorted(set(tensors) - set(expected))
    wrong = [k for k in expected if k in tensors and tuple(tensors[k].shape) != expected[k]]
    if missing or extra or wrong:
        what = (f"missing weights {missing[0]}" if missing else f"unexpected weights {extra[0]}" if extra
                else f"{wrong[0]} has shape {tuple(tensors[wrong[0]].shape)}, not {expected[wrong[0]]}")
        raise ModelFileError(f"{name} is damaged or incomplete: its weights do not match its architecture ({what})")


def _intensity(intensity, channels: int, name: str) -> None:
    ok = isinstance(intensity, dict) and all(
        isinstance(intensity.get(k), list) and len(intensity[k]) == channels and all(map(_number, intensity[k]))
        for k in ("low", "high"))
    if not ok:
        raise ModelFileError(f"{name} has a damaged model header: its intensity range must give a low and a high "
                             f"value for each of its {channels} channel(s)")
    # low > high is a model whose intensities are inverted (fine-tuned across contrasts), not damage
    if any(hi == lo for lo, hi in zip(intensity["low"], intensity["high"])):
        raise ModelFileError(f"{name} has a damaged model header: its intensity range has no width (low = high), "
                             "so every cell would look the same to it")


def _score_rules(rules, name: str) -> None:
    if not isinstance(rules, dict) or not rules:
        raise ModelFileError(f"{name} has a damaged model header: it names no score rules, so it cannot say how "
                             "to score a cell")
    for scorer, rule in rules.items():
        if scorer not in LIKELIHOODS or not isinstance(rule, str) or rule not in SCORE_RULES:
            raise ModelFileError(f"{name} has a damaged model header: unknown score rule {scorer!r}: {rule!r} "
                                 f"(rules: {', '.join(SCORE_RULES)})")


def _calibration(calibration, name: str) -> None:
    """Absent: the model is uncalibrated (a threshold must be given). Present: every entry holds
    healthy scores that are numbers and not all equal."""
    if calibration is None:
        return
    if not isinstance(calibration, dict) or not calibration:
        raise ModelFileError(f"{name} has a damaged model header: its healthy-cell calibration is empty or not a "
                             "table")
    for scorer, entry in calibration.items():
        scores = entry.get("healthy_scores") if isinstance(entry, dict) else None
        if not isinstance(scores, list) or len(scores) < 2 or not all(map(_number, scores)):
            raise ModelFileError(f"{name} has a damaged model header: the healthy-cell calibration of {scorer!r} "
                                 "must hold at least two scores, all numbers")
        if min(scores) == max(scores):
            raise ModelFileError(f"{name} has a damaged model header: every healthy cell of the calibration of "
                                 f"{scorer!r} scored {scores[0]:g}, so no threshold can separate anything")
