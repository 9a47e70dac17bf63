"""Run a list of scorers over test sets and collect one table (per-cell and pixel metrics, speed).

For each scorer: train it first if it needs its own network (on healthy training cells), then
calibrate it on healthy calibration cells (combined scorers' map normalisation; the pixel
threshold for "Dice at a fixed threshold" = the value that 1% of healthy cell pixels exceed),
then score every test set, timing the scoring alone (seconds per 100 cells).
"""
from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from ..files import atomic_outputs
from ..models import AnomalyModel
from ..progress import Progress
from ..scoring import calibrate, resolve, scorer_info, train_network
from .eval_sets import EvalData
from .metrics import CellMetrics, PixelMetrics, cell_metrics, healthy_pixel_threshold, pixel_metrics

PIXEL_FPR = 0.01


@dataclass
class ScorerRow:
    dataset: str
    test_set: str
    scorer: str
    cost: str
    cells: CellMetrics
    pixel: PixelMetrics | None = None
    seconds_per_100: float | None = None
    train_seconds: float | None = None
    model: str = ""


@dataclass
class Evaluation:
    rows: list[ScorerRow] = field(default_factory=list)
    scores: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)  # test set -> scorer -> cell scores
    labels: dict[str, np.ndarray] = field(default_factory=dict)


def _train(name, model, data, iterations, pool_size, log, should_stop):
    started = time.perf_counter()
    segmenter = None
    for event in train_network(name, model, *data.training, iterations=iterations, pool_size=pool_size,
                               should_stop=should_stop):
        if isinstance(event, Progress):
            if event.done == event.total or event.done % 100 == 0:
                log(f"  {name}: {event.stage} {event.done}/{event.total}"
                    + ("" if event.loss is None else f" loss {event.loss:.4f}"))
        else:
            segmenter = event
    return segmenter, time.perf_counter() - started


def evaluate_scorers(model: AnomalyModel, data: EvalData, names: list[str], *, ssl_iterations: int = 300,
                     ssl_pool: int = 512, n_boot: int = 1000, fprs=(0.05, 0.1), batch_size: int = 32,
                     segmenters: dict | None = None, calibrations: dict | None = None,
                     log: Callable[[str], None] = print,
                     should_stop: Callable[[], bool] | None = None, scorer_options: dict | None = None,
                     label: str | None = None) -> Evaluation:
    """Every scorer in ``names`` on every set of ``data``; the model itself is left unchanged.

    ``segmenters`` (name -> TrainedSegmenter) re-uses trained self-supervised networks and is
    filled with the ones trained here; ``calibrations`` (name -> Calibration) receives their healthy
    calibrations, so a network can be saved with its thresholds. ``label`` names the scorer rows
    (default: the scorer name).
    """
    for name in names:
        scorer_info(name)
    model = model.copy()
    segmenters = {} if segmenters is None else segmenters
    options = scorer_options or {}
    out = Evaluation()
    for s in data.sets:
        out.labels[s.name] = s.labels
        out.scores.setdefault(s.name, {})
        if s.handmade_scores is not None:
            row_name = f"hand-made: {s.handmade_name}"
            out.rows.append(ScorerRow(data.dataset, s.name, row_name, "instant",
                                      cell_metrics(s.labels, s.handmade_scores, fprs, n_boot)))
            out.scores[s.name][row_name] = s.handmade_scores
    cal_crops, cal_masks = data.calibration
    for name in names:
        info = scorer_info(name)
        row_name = label.format(name=name) if label else name
        train_seconds = None
        segmenter = segmenters.get(name)
        if info.needs_network and segmenter is None:
            log(f"{name}: training its segmentation network on {len(data.training[0])} healthy cells")
            segmenter, train_seconds = _train(name, model, data, ssl_iterations, ssl_pool, log, should_stop)
            segmenters[name] = segmenter
        scorer = resolve(model, name, segmenter, require_calibration=False, **options)
        run = dict(batch_size=batch_size, should_stop=should_stop)
        if info.needs_calibration or info.needs_network:
            entry = calibrate(scorer, cal_crops, cal_masks, batch_size=batch_size)
            if info.needs_network and calibrations is not None:
                calibrations[name] = entry
        needs_pixels = any(s.truth is not None for s in data.sets)
        threshold = float("nan")
        if needs_pixels:
            cal = scorer.score(cal_crops, cal_masks, **run)
            threshold = healthy_pixel_threshold(cal.maps, cal_masks, PIXEL_FPR)
        for s in data.sets:
            started = time.perf_counter()
            result = scorer.score(s.crops, s.masks, **run)
            seconds = time.perf_counter() - started
            cm = cell_metrics(s.labels, result.scores, fprs, n_boot)
            pm = pixel_metrics(result.maps, s.truth, s.masks, threshold) if s.truth is not None else None
            out.rows.append(ScorerRow(data.dataset, s.name, row_name, info.cost, cm, pm,
                                      100.0 * seconds / max(len(s.crops), 1), train_seconds, model.name))
            out.scores[s.name][row_name] = result.scores
            log(f"{row_name:>14} on {s.name}: AUROC {cm.auroc} ({100.0 * seconds / max(len(s.crops), 1):.2f} s/100 cells)")
    return out


# -- tables ------------------------------------------------------------------------------------

def _fmt(v, digits=3) -> str:
    return "" if v is None or (isinstance(v, float) and not np.isfinite(v)) else f"{v:.{digits}f}"


def row_dict(r: ScorerRow) -> dict:
    d = {"dataset": r.dataset, "test_set": r.test_set, "scorer": r.scorer, "cost": r.cost, "model": r.model,
         "n_healthy": r.cells.n_healthy, "n_anomalous": r.cells.n_infected,
         "auroc": _fmt(r.cells.auroc.value), "auroc_low": _fmt(r.cells.auroc.low), "auroc_high": _fmt(r.cells.auroc.high),
         "auprc": _fmt(r.cells.auprc.value), "auprc_low": _fmt(r.cells.auprc.low), "auprc_high": _fmt(r.cells.auprc.high)}
    for f, t in r.cells.tpr.items():
        d[f"tpr_at_fpr_{f:g}"] = _fmt(t)
    p = r.pixel
    d.update({"pixel_auroc": _fmt(p.auroc) if p else "", "pixel_ap": _fmt(p.ap) if p else "",
              "pixel_prevalence": _fmt(p.prevalence, 4) if p else "", "aupro_0.3": _fmt(p.aupro) if p else "",
              "dice_best": _fmt(p.dice_best) if p else "", "dice_fixed": _fmt(p.dice_fixed) if p else "",
              "seconds_per_100_cells": _fmt(r.seconds_per_100, 2), "train_seconds": _fmt(r.train_seconds, 0)})
    return d


def write_csv(rows: list[ScorerRow], path: str | Path) -> Path:
    path = Path(path)
    dicts = [row_dict(r) for r in rows]
    keys = list(dict.fromkeys(k for d in dicts for k in d))
    with atomic_outputs([path]) as (tmp,), open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(dicts)
    return path


def markdown_table(rows: list[ScorerRow], fprs=(0.05,)) -> str:
    head = ["data", "test set", "scorer", "cost", "AUROC [95% CI]", "AUPRC [95% CI]"]
    head += [f"TPR@{100 * f:g}%FPR" for f in fprs]
    head += ["pixel AUROC", "pixel AP (prev.)", "AUPRO@0.3", "Dice best", "Dice fixed", "s / 100 cells"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for r in rows:
        p = r.pixel
        cells = [r.dataset, r.test_set, r.scorer, r.cost, str(r.cells.auroc), str(r.cells.auprc)]
        cells += [_fmt(r.cells.tpr.get(f)) for f in fprs]
        cells += [_fmt(p.auroc) if p else "", f"{_fmt(p.ap)} ({_fmt(p.prevalence, 3)})" if p else "",
                  _fmt(p.aupro) if p else "", _fmt(p.dice_best) if p else "", _fmt(p.dice_fixed) if p else "",
                  _fmt(r.seconds_per_100, 2)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _num(text: str) -> float | None:
    return float(text) if text not in ("", None) else None


def read_csv(path: str | Path) -> list[ScorerRow]:
    """Rows written by :func:`write_csv` (to assemble tables from separate runs)."""
    from .metrics import Interval

    rows = []
    with open(path, newline="") as fh:
        for d in csv.DictReader(fh):
            nan = float("nan")
            iv = lambda k: Interval(*(_num(d[x]) if _num(d[x]) is not None else nan  # noqa: E731
                                      for x in (k, f"{k}_low", f"{k}_high")))
            tpr = {float(k[len("tpr_at_fpr_"):]): (_num(v) if _num(v) is not None else nan)
                   for k, v in d.items() if k.startswith("tpr_at_fpr_")}
            cells = CellMetrics(iv("auroc"), iv("auprc"), tpr, int(d["n_healthy"]), int(d["n_anomalous"]))
            pixel = None
            if d.get("pixel_auroc"):
                pixel = PixelMetrics(float(d["pixel_auroc"]), float(d["pixel_ap"]), float(d["pixel_prevalence"]),
                                     _num(d["aupro_0.3"]) or nan, _num(d["dice_best"]) or nan,
                                     _num(d["dice_fixed"]) or nan, nan)
            rows.append(ScorerRow(d["dataset"], d["test_set"], d["scorer"], d["cost"], cells, pixel,
                                  _num(d["seconds_per_100_cells"]), _num(d["train_seconds"]), d.get("model", "")))
    return rows
