"""Calibration on healthy cells, as a typed post-processing step (as anomalib calibrates).

A calibration holds the healthy per-cell score distribution of one scorer (a candidate threshold
is a quantile of it) and, for scorers that combine maps, the normalisation of each map. It is
stored in the model's metadata under ``calibration[<scorer>]``, so it travels with the model file.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from ..supn import stain_saturation
from ..supn.ensemble import MemberScale
from .cell_terms import CELL_TERMS, SETTINGS_KEY
from .registry import ENSEMBLE_MEMBERS

if TYPE_CHECKING:
    from .scorer import Scorer

QUANTILES = (0.5, 0.9, 0.95, 0.99)


@dataclass
class Calibration:
    healthy_scores: list[float]
    normalisation: dict | None = None  # combi scorers: {map name: [low, high]} over healthy cell pixels
    members: dict | None = None        # ensemble: {member: MemberScale as a dict}
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_scores(cls, scores, **kwargs) -> "Calibration":
        return cls([float(s) for s in np.sort(np.asarray(scores, np.float64))], **kwargs)

    @property
    def n_cells(self) -> int:
        return len(self.healthy_scores)

    def to_dict(self) -> dict:
        scores = np.asarray(self.healthy_scores, np.float64)
        out = {"healthy_scores": list(self.healthy_scores), "n_cells": self.n_cells,
               "quantiles": {str(q): float(np.quantile(scores, q)) for q in QUANTILES} if len(scores) else {},
               **self.extra}
        if self.normalisation is not None:
            out["normalisation"] = self.normalisation
        if self.members is not None:
            out["members"] = self.members
        return out

    @classmethod
    def from_dict(cls, data: dict) -> "Calibration":
        known = {"healthy_scores", "n_cells", "quantiles", "normalisation", "members"}
        return cls(list(data.get("healthy_scores", [])), data.get("normalisation"), data.get("members"),
                   {k: v for k, v in data.items() if k not in known})

    def portable(self) -> dict:
        """What a network file carries: the scores, not the normalisation of another model's maps."""
        out = self.to_dict()
        out.pop("normalisation", None)
        return out


def calibrate(scorer: "Scorer", healthy_crops: np.ndarray, healthy_masks: np.ndarray, *, batch_size: int = 32,
              members: tuple[str, ...] = ENSEMBLE_MEMBERS, cell_values: np.ndarray | None = None) -> Calibration:
    """Measure ``scorer`` on healthy cells and store the result in its model's metadata.

    ``cell_values``: a supn-plus-a-cell-term scorer's term of each cell as detection measures it on
    its field (``CellTerm.field_values``); where absent or NaN it is measured on the crop.

    Combined scorers first store their map normalisation (combi: min and 99.9th percentile of
    each map over healthy cell pixels; ensemble: each member's healthy median and spread).
    Works on the model in place; use ``model.copy()`` to keep a built-in model untouched.
    """
    healthy_masks = np.asarray(healthy_masks, bool)
    if len(healthy_crops) < 2:
        raise ValueError("at least two healthy cells are needed for calibration")
    table = scorer.model.metadata.setdefault("calibration", {})
    kwargs = {}
    if scorer.name in ("combi", "combi-add"):
        kl = scorer.member("grad-kl").score(healthy_crops, healthy_masks, batch_size=batch_size).maps
        rec = scorer.member("recon").score(healthy_crops, healthy_masks, batch_size=batch_size).maps
        kwargs["normalisation"] = {"grad-kl": _foreground_range(kl, healthy_masks),
                                   "recon": _foreground_range(rec, healthy_masks)}
    elif scorer.name == "ensemble":
        scales = {}
        for name in members:
            member = scorer.member(name)
            if member.info.needs_network or name == "ensemble":
                raise ValueError(f"{name!r} cannot be an ensemble member")
            if member.info.needs_calibration:
                calibrate(member, healthy_crops, healthy_masks, batch_size=batch_size)
            scores = member.score(healthy_crops, healthy_masks, batch_size=batch_size).scores
            scales[name] = MemberScale.from_healthy_scores(scores).to_dict()
        kwargs["members"] = scales
    elif scorer.name in CELL_TERMS:  # supn plus one term per cell, with today's settings (recorded)
        term = CELL_TERMS[scorer.name]
        supn = scorer.member("supn").score(healthy_crops, healthy_masks, batch_size=batch_size).scores
        # measured once: the scale below and the scores after it use the same values
        cell_values = term.values(healthy_crops, healthy_masks, scorer.model.geometry.cell_diameter_px, cell_values)
        kwargs["members"] = {"supn": stain_saturation.log_scale(supn).to_dict(),
                             term.member: term.scale(cell_values).to_dict()}
        kwargs["extra"] = {SETTINGS_KEY: term.current()}
    if kwargs:  # the maps of a combined scorer need their normalisation before they can be scored
        table[scorer.name] = Calibration([], **kwargs).to_dict()
    scores = scorer.score(healthy_crops, healthy_masks, batch_size=batch_size, cell_values=cell_values).scores
    result = Calibration.from_scores(scores, **kwargs)
    table[scorer.name] = result.to_dict()
    return result


def _foreground_range(maps: np.ndarray, masks: np.ndarray, upper: float = 0.999) -> list[float]:
    values = maps[masks] if masks.any() else maps.ravel()
    return [float(values.min()), float(np.quantile(values, upper))]
