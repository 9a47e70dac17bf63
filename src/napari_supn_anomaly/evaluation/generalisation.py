"""What a user gets on whole stained fields from other labs: the pipeline's default detection on
the cells the package finds, scored against parasite masks (MalariaNet) or uninfected smears (Chula).

Per source: per-cell AUROC / AP (infected vs healthy found cells), the share of parasites on a
candidate cell and false candidates per 100 healthy cells at the default setting, the same two at
the threshold that flags 2 of 100 healthy cells (an oracle operating point, for the targets), and
pixel AP of the heatmap over the whole field and inside found cells. The hand-made detector (HSV
saturation) gets the same numbers on the same cells.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

from ..errors import PlaneTooLarge
from ..supn.stain_saturation import HAND_MADE_PERCENTILE, field_cell_saturation
from .field_sets import FoundCells, StainedField, saturation_map
from .metrics import auprc, auroc

PIXEL_STRIDE = 2       # pixel AP on every 2nd pixel in each axis: a quarter of the pixels, same AP to ~1e-3
ORACLE_FALSE_RATE = 0.02


@dataclass
class ScoredField:
    """One field after detection: per found cell its score, candidate flag and truth."""

    name: str
    slide: str
    heatmap: np.ndarray
    labels: np.ndarray
    ids: np.ndarray
    scores: np.ndarray
    candidate: np.ndarray
    infected: np.ndarray
    healthy: np.ndarray
    parasites: np.ndarray | None
    provenance: dict = field(default_factory=dict)


def detect_field(scorer, f: StainedField, cells: FoundCells, settings=None, retries: int = 10) -> ScoredField | None:
    """The pipeline's own detection (its default threshold path) on the cells found beforehand."""
    from ..pipeline.stacks import DetectSettings, detect

    if len(cells.ids) == 0:
        return None
    for attempt in range(retries + 1):
        try:
            result = detect(f.image, "CYX", scorer, labels=cells.labels, settings=settings or DetectSettings())
            break
        except PlaneTooLarge:  # memory is short for a moment on a shared machine: wait, then try again
            if attempt == retries:
                raise
            time.sleep(30)
    table = result.cell_table.set_index("cell_id")
    keep = np.isin(cells.ids, table.index.to_numpy())
    ids = cells.ids[keep]
    return ScoredField(f.name, f.slide, result.heatmap, cells.labels, ids,
                       table.loc[ids, "score"].to_numpy(np.float64), table.loc[ids, "candidate"].to_numpy(bool),
                       cells.infected[keep], cells.healthy[keep], f.parasites,
                       {k: result.provenance.get(k) for k in ("threshold", "target_fpr", "scorer", "score_rule")}
                       | {k: v for k, v in result.provenance.items() if "calibrat" in k})


def saturation_field(f: StainedField, cells: FoundCells) -> ScoredField:
    """The hand-made detector on the same cells: HSV saturation map, per cell its 99.5th percentile."""
    sat = saturation_map(f.image)
    scores = field_cell_saturation(f.image, cells.labels, cells.ids, percentile=HAND_MADE_PERCENTILE)
    return ScoredField(f.name, f.slide, sat, cells.labels, cells.ids, scores, np.zeros(len(cells.ids), bool),
                       cells.infected, cells.healthy, f.parasites)


def _parasite_hits(fields: list[ScoredField], flagged: list[np.ndarray]) -> tuple[int, int, int]:
    """(parasites, parasites inside a found cell, parasites on a flagged cell) over the fields."""
    total = in_cell = hit = 0
    for f, flag in zip(fields, flagged):
        if f.parasites is None:
            continue
        comps, n = ndi.label(f.parasites)
        total += n
        if n == 0:
            continue
        in_cell += len(np.setdiff1d(np.unique(comps[f.labels > 0]), [0]))
        flagged_ids = f.ids[flag]
        on = np.isin(f.labels, flagged_ids) & (comps > 0)
        hit += len(np.setdiff1d(np.unique(comps[on]), [0]))
    return total, in_cell, hit


def _pixel_ap_cells(fields: list[ScoredField]) -> float:
    """Pixel AP inside the found cells only."""
    scores, truth = [], []
    for f in fields:
        if f.parasites is None:
            continue
        st = PIXEL_STRIDE
        inside = f.labels[::st, ::st] > 0
        scores.append(f.heatmap[::st, ::st][inside])
        truth.append(f.parasites[::st, ::st][inside])
    y = np.concatenate(truth).astype(int) if truth else np.zeros(0, int)
    return auprc(y, np.concatenate(scores)) if y.any() else float("nan")


def summarise(fields: list[ScoredField], pixel_map_everywhere: bool = False) -> dict:
    """The table's numbers for one source and one detector."""
    fields = [f for f in fields if f is not None]
    labels, scores, healthy_scores = [], [], []
    for f in fields:
        usable = f.infected | f.healthy
        labels.append(f.infected[usable].astype(int))
        scores.append(f.scores[usable])
        healthy_scores.append(f.scores[f.healthy])
    y = np.concatenate(labels) if labels else np.zeros(0, int)
    s = np.concatenate(scores) if scores else np.zeros(0)
    h = np.concatenate(healthy_scores) if healthy_scores else np.zeros(0)
    out = {"n_fields": len(fields), "n_cells": int(sum(len(f.ids) for f in fields)),
           "n_infected_cells": int(y.sum()), "n_healthy_cells": len(h)}
    if 0 < y.sum() < len(y):
        out["auroc"], out["ap"] = auroc(y, s), auprc(y, s)
    n_healthy = sum(int(f.healthy.sum()) for f in fields)
    if n_healthy:
        out["false_per_100"] = 100.0 * sum(int((f.candidate & f.healthy).sum()) for f in fields) / n_healthy
    total, in_cell, hit = _parasite_hits(fields, [f.candidate for f in fields])
    if total:
        out.update(n_parasites=total, parasites_in_found_cell=in_cell / total, parasites_on_candidate=hit / total)
        if len(h):
            thr = float(np.quantile(h, 1.0 - ORACLE_FALSE_RATE))
            _, _, hit2 = _parasite_hits(fields, [f.scores > thr for f in fields])
            out["parasites_on_candidate_at_2"] = hit2 / total
        out["pixel_ap_cells"] = _pixel_ap_cells(fields)
        out["pixel_ap_field"] = _pixel_ap_whole(fields, pixel_map_everywhere)
    return out


def _pixel_ap_whole(fields: list[ScoredField], everywhere: bool) -> float:
    """Pixel AP over whole fields. A model's map exists only inside found cells: every other pixel
    ranks below every cell pixel (a parasite outside a found cell is missed)."""
    scores, truth = [], []
    for f in fields:
        if f.parasites is None:
            continue
        st = PIXEL_STRIDE
        hm, lab, par = f.heatmap[::st, ::st].astype(np.float64), f.labels[::st, ::st], f.parasites[::st, ::st]
        if not everywhere:
            hm = np.where(lab > 0, hm, -np.inf)
        scores.append(hm.ravel())
        truth.append(par.ravel())
    if not scores:
        return float("nan")
    s = np.concatenate(scores)
    s[~np.isfinite(s)] = (s[np.isfinite(s)].min() - 1.0) if np.isfinite(s).any() else 0.0
    y = np.concatenate(truth).astype(int)
    return auprc(y, s) if y.any() else float("nan")
