"""A scorer bound to a model (and, for ssl-* scorers, to its network): what the pipeline calls.

``Scorer.iter_batches`` turns standardised single-cell crops (raw intensities [N, C, S, S], at
the model's crop size and scale) and cell masks [N, S, S] into per-pixel maps and per-cell scores
(the max of the map inside the cell), one batch at a time. Get one with :func:`scoring.resolve`.
"""
from __future__ import annotations

from typing import Callable, Iterator

import numpy as np
import torch

from ..cells import loss_weight
from ..errors import Cancelled, InputError, ModelFileError, ScorerUnavailable
from ..models import AnomalyModel, CropScores
from ..supn import SCORE_RULES, cell_scores
from ..supn.devices import exact_float32
from ..supn.ensemble import MemberScale, combine_calibrated
from ..supn.self_supervised import TrainedSegmenter
from ..supn.vae_scorers import gradient_map, projection_map, reconstruction_error_map
from .calibration import Calibration
from .cell_terms import CellTerm, term_for
from .registry import ScorerInfo, scorer_info


class Scorer:
    """``options``: ``sigma`` (gradient smoothing, px), ``steps``/``step_size``/``lam`` (projection)."""

    def __init__(self, model: AnomalyModel, info: ScorerInfo, network: TrainedSegmenter | None = None,
                 **options):
        self.model = model
        self.info = info
        self.network = network
        self.options = options

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def score_rule(self) -> str | None:
        """The per-cell rule of a likelihood scorer (stored with the model); None for the others."""
        return self.model.score_rule(self.name) if self.info.likelihood else None

    @property
    def units(self) -> str:
        """What a value of this scorer's maps is, in words (the heatmap's units)."""
        term = self.cell_term
        if term is not None:
            return term.units
        if self.score_rule is None:
            return f"{self.name} score (its own scale; the threshold is set on healthy cells)"
        units = SCORE_RULES[self.score_rule].units
        turns = self.model.rotations
        return units if turns == 1 else f"{units}, mean of {turns} orientations"

    def __repr__(self) -> str:
        return f"Scorer({self.name!r} of model {self.model.name!r})"

    # -- calibration -----------------------------------------------------------------------
    @property
    def calibration(self) -> Calibration | None:
        entry = self.model.metadata.get("calibration", {}).get(self.name)
        return Calibration.from_dict(entry) if entry else None

    @property
    def calibrated(self) -> bool:
        cal = self.calibration
        return bool(cal and cal.healthy_scores)

    def threshold_for_fpr(self, fpr: float) -> float:
        return self.model.threshold_for_fpr(fpr, self.name)

    def healthy_fpr(self, score: float) -> float:
        return self.model.healthy_fpr(score, self.name)

    def _normalisation(self, key: str) -> dict:
        cal = self.calibration
        value = getattr(cal, key, None) if cal else None
        if not value:
            raise ScorerUnavailable(f"scorer {self.name!r} must first be calibrated on healthy cells of the model "
                                    f"{self.model.name!r} (scoring.calibrate, or `supn-anomaly evaluate`)")
        return value

    # -- scoring ---------------------------------------------------------------------------
    @property
    def cell_term(self) -> CellTerm | None:
        """The term this scorer adds per cell to supn's map, with the settings its calibration was made
        with (None: it adds none)."""
        return term_for(self.name, self.model.metadata.get("calibration", {}).get(self.name))

    def iter_batches(self, crops: np.ndarray, masks: np.ndarray, batch_size: int = 32,
                     cell_values: np.ndarray | None = None) -> Iterator[tuple[int, CropScores]]:
        """Yield (start index, scores of the batch), so callers can report progress and stop between batches.
        ``cell_values``: the cell term of each crop measured on its field (``CellTerm.field_values``);
        where absent or NaN it is measured on the crop."""
        if not np.isfinite(np.asarray(crops, np.float32)).all():
            raise InputError("the crops contain NaN or infinite values; fill or remove them first")
        for start, part in self._iter_batches(crops, masks, batch_size, cell_values):
            if np.isnan(part.scores).any() or np.isnan(part.maps).any():
                raise ModelFileError(f"the model {self.model.name!r} gives scores that are not numbers (NaN) with "
                                     f"the scorer {self.name!r}; it is damaged and cannot tell healthy cells from "
                                     "parasites: retrain it or use another model")
            yield start, part

    def _iter_batches(self, crops: np.ndarray, masks: np.ndarray, batch_size: int,
                      cell_values: np.ndarray | None = None) -> Iterator[tuple[int, CropScores]]:
        model = self.model
        if self.info.likelihood:
            yield from model.iter_score_batches(crops, masks, scorer=self.name, batch_size=batch_size)
            return
        if self.name == "ensemble":
            yield 0, self._ensemble(crops, masks, batch_size)
            return
        term = self.cell_term  # read once: it comes with the settings of the model's calibration
        if term is not None:
            yield from self._supn_with_cell_term(term, crops, masks, batch_size, cell_values)
            return
        model.check_crops(crops)
        for start in range(0, len(crops), batch_size):
            x = torch.from_numpy(model.normalise(crops[start:start + batch_size])).to(model.device)
            m = np.asarray(masks[start:start + batch_size], bool)
            with exact_float32():
                maps = self._maps(x, m).detach().float()
            scores = cell_scores(maps, torch.from_numpy(m).to(maps.device))
            yield start, CropScores(maps.cpu().numpy(), scores.cpu().numpy())

    def score(self, crops: np.ndarray, masks: np.ndarray, *, batch_size: int = 32,
              should_stop: Callable[[], bool] | None = None,
              on_progress: Callable[[int, int], None] | None = None,
              cell_values: np.ndarray | None = None) -> CropScores:
        """Maps [N, S, S] and scores [N] of all crops; ``should_stop`` is polled between batches;
        ``cell_values`` as for :meth:`iter_batches`."""
        crops = np.asarray(crops, np.float32)
        masks = np.asarray(masks, bool)
        if masks.shape != (len(crops),) + crops.shape[-2:]:
            raise InputError(f"masks must be [N, S, S] matching the crops, got {masks.shape} for crops {crops.shape}")
        parts = []
        for start, part in self.iter_batches(crops, masks, batch_size, cell_values):
            parts.append(part)
            if on_progress is not None:
                on_progress(start + len(part.scores), len(crops))
            if should_stop is not None and should_stop():
                raise Cancelled("scoring was cancelled")
        if not parts:
            s = crops.shape[-1] if crops.ndim == 4 else self.model.crop_size
            return CropScores(np.zeros((0, s, s), np.float32), np.zeros(0, np.float32))
        return CropScores(np.concatenate([p.maps for p in parts]), np.concatenate([p.scores for p in parts]))

    def member(self, name: str) -> "Scorer":
        """Another scorer of the same model with the same options (for the ensemble and combi scorers)."""
        return Scorer(self.model, scorer_info(name), None, **self.options)

    def _maps(self, x: torch.Tensor, masks: np.ndarray) -> torch.Tensor:
        net, name, options = self.model.net, self.name, self.options
        if name == "recon":
            return reconstruction_error_map(net, x)
        if name in ("grad-kl", "grad-rec", "grad-elbo"):
            weight = torch.from_numpy(loss_weight(masks)).to(x.device)
            return gradient_map(net, x, name.split("-")[1], weight=weight, sigma=options.get("sigma"))
        if name in ("combi", "combi-add"):
            norm = self._normalisation("normalisation")
            kl = _minmax(gradient_map(net, x, "kl", sigma=options.get("sigma")), norm["grad-kl"])
            rec = reconstruction_error_map(net, x)
            return kl * rec if name == "combi" else kl + _minmax(rec, norm["recon"])
        if name == "projection":
            weight = torch.from_numpy(loss_weight(masks)).to(x.device)
            keep = {k: options[k] for k in ("steps", "step_size", "lam") if k in options}
            return projection_map(net, x, weight=weight, **keep)
        if self.info.needs_network:
            return torch.from_numpy(self.network.anomaly_map(x.cpu().numpy(), x.device))
        raise ValueError(f"scorer {name!r} has no map function")  # pragma: no cover

    def _ensemble(self, crops: np.ndarray, masks: np.ndarray, batch_size: int) -> CropScores:
        members = self._normalisation("members")
        maps = [self.member(n).score(crops, masks, batch_size=batch_size).maps for n in members]
        combined = combine_calibrated(maps, [MemberScale.from_dict(members[n]) for n in members])
        scores = cell_scores(torch.from_numpy(combined), torch.from_numpy(np.asarray(masks, bool))).numpy()
        return CropScores(combined, scores)

    def _supn_with_cell_term(self, term: CellTerm, crops: np.ndarray, masks: np.ndarray, batch_size: int,
                             cell_values: np.ndarray | None = None) -> Iterator[tuple[int, CropScores]]:
        """supn's maps plus one term per cell (``cell_terms``: the stain's saturation, or the brightest small spot)."""
        scales = {n: MemberScale.from_dict(v) for n, v in self._normalisation("members").items()}
        for start, part in self.member("supn").iter_batches(crops, masks, batch_size):
            batch = slice(start, start + len(part.scores))
            c, m = crops[batch], np.asarray(masks[batch], bool)
            values = term.values(c, m, self.model.geometry.cell_diameter_px,
                                 None if cell_values is None else cell_values[batch])
            maps = term.add(part.maps, values, scales["supn"], scales[term.member])
            yield start, CropScores(maps, cell_scores(torch.from_numpy(maps), torch.from_numpy(m)).numpy())


def _minmax(maps: torch.Tensor, lo_hi) -> torch.Tensor:
    lo, hi = float(lo_hi[0]), float(lo_hi[1])
    return (maps - lo) / max(hi - lo, 1e-12)
