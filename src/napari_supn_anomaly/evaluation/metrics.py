"""Per-cell and per-pixel anomaly metrics.

Per cell: AUROC and AUPRC (average precision, step-wise as sklearn computes it, never the
optimistic trapezoid) with 95% bootstrap intervals over cells, and the TPR at a fixed FPR.
Per pixel, restricted to the cell masks (background pixels are free true negatives that would
inflate every number): AUROC, AP, AUPRO up to 30% FPR (each anomalous region counts equally,
whatever its size), Dice at the best threshold (an oracle upper bound) and Dice at a threshold
fixed beforehand on healthy validation cells.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from scipy.stats import rankdata
from sklearn.metrics import precision_recall_curve, roc_curve


@dataclass
class Interval:
    value: float
    low: float
    high: float

    def __str__(self) -> str:
        if not np.isfinite(self.value):
            return "n/a"
        return f"{self.value:.3f} [{self.low:.3f}, {self.high:.3f}]"


def _check_binary(labels: np.ndarray) -> np.ndarray:
    labels = np.asarray(labels).astype(int).ravel()
    if not set(np.unique(labels)) <= {0, 1}:
        raise ValueError("labels must be 0 (healthy) or 1 (anomalous)")
    return labels


def _both_classes(labels: np.ndarray) -> bool:
    return 0 < labels.sum() < len(labels)


def _fast_auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Mann-Whitney U with mid-ranks for ties (equals sklearn's roc_auc_score, far cheaper to bootstrap)."""
    ranks = rankdata(scores)
    n_pos = labels.sum()
    n_neg = len(labels) - n_pos
    return float((ranks[labels == 1].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def _fast_ap(labels: np.ndarray, scores: np.ndarray) -> float:
    """Step-wise average precision over distinct thresholds (as sklearn's average_precision_score)."""
    order = np.argsort(-scores, kind="mergesort")
    s, y = scores[order], labels[order]
    last = np.r_[s[1:] != s[:-1], True]
    tps = np.cumsum(y)[last]
    fps = np.cumsum(1 - y)[last]
    precision = tps / (tps + fps)
    recall = tps / y.sum()
    return float(np.sum(np.diff(np.r_[0.0, recall]) * precision))


def auroc(labels, scores) -> float:
    labels = _check_binary(labels)
    return _fast_auroc(labels, np.asarray(scores, np.float64).ravel()) if _both_classes(labels) else float("nan")


def auprc(labels, scores) -> float:
    labels = _check_binary(labels)
    return _fast_ap(labels, np.asarray(scores, np.float64).ravel()) if _both_classes(labels) else float("nan")


def bootstrap_interval(metric, labels, scores, n_boot: int = 1000, seed: int = 0, level: float = 0.95) -> Interval:
    """metric(labels, scores) with a percentile bootstrap interval over resampled cells."""
    labels = _check_binary(labels)
    scores = np.asarray(scores, np.float64).ravel()
    value = metric(labels, scores)
    rng = np.random.default_rng(seed)
    stats = []
    for _ in range(n_boot):
        idx = rng.integers(0, len(labels), len(labels))
        if _both_classes(labels[idx]):
            stats.append(metric(labels[idx], scores[idx]))
    if not stats:
        return Interval(value, float("nan"), float("nan"))
    lo, hi = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
    return Interval(value, float(lo), float(hi))


def tpr_at_fpr(labels, scores, fpr: float) -> float:
    """Largest TPR reachable without exceeding the given FPR."""
    labels = _check_binary(labels)
    if not _both_classes(labels):
        return float("nan")
    f, t, _ = roc_curve(labels, np.ravel(scores))
    return float(t[f <= fpr + 1e-12].max())


# -- pixel metrics ---------------------------------------------------------------------------

def _pixels(maps, truth, masks):
    maps, truth = np.asarray(maps, np.float64), np.asarray(truth, bool)
    masks = np.ones(truth.shape, bool) if masks is None else np.asarray(masks, bool)
    return maps[masks], truth[masks], masks


def pixel_auroc(maps, truth, masks=None) -> float:
    s, y, _ = _pixels(maps, truth, masks)
    return auroc(y, s)


def pixel_ap(maps, truth, masks=None) -> float:
    s, y, _ = _pixels(maps, truth, masks)
    return auprc(y, s)


def best_dice(maps, truth, masks=None) -> tuple[float, float]:
    """(max Dice over thresholds, that threshold): the oracle upper bound, the max F1 of the PR curve."""
    s, y, _ = _pixels(maps, truth, masks)
    if not y.any():
        return float("nan"), float("nan")
    p, r, t = precision_recall_curve(y, s)
    f1 = np.where(p + r > 0, 2 * p * r / np.maximum(p + r, 1e-12), 0.0)[:-1]
    k = int(np.argmax(f1))
    return float(f1[k]), float(t[k])


def dice_at(maps, truth, threshold: float, masks=None) -> float:
    s, y, _ = _pixels(maps, truth, masks)
    pred = s >= threshold
    denom = pred.sum() + y.sum()
    return float(2 * (pred & y).sum() / denom) if denom else 1.0


def healthy_pixel_threshold(healthy_maps, healthy_masks, pixel_fpr: float = 0.01) -> float:
    """Threshold that a fraction ``pixel_fpr`` of healthy cell pixels exceed (fixed before testing)."""
    values = np.asarray(healthy_maps, np.float64)[np.asarray(healthy_masks, bool)]
    return float(np.quantile(values, 1.0 - pixel_fpr))


def aupro(maps, truth, masks=None, fpr_limit: float = 0.3) -> float:
    """Area under the per-region-overlap curve up to ``fpr_limit``, divided by it (MVTec AD).

    Regions are the 8-connected components of the truth in each image; FPR is over the
    non-anomalous pixels (inside the masks). PRO(t) is the mean over regions of the fraction of
    the region at or above t.
    """
    maps = np.asarray(maps, np.float64)
    truth = np.asarray(truth, bool)
    masks = np.ones(truth.shape, bool) if masks is None else np.asarray(masks, bool)
    truth = truth & masks
    if maps.ndim == 2:
        maps, truth, masks = maps[None], truth[None], masks[None]
    region = np.zeros(truth.shape, np.int64)
    n_regions = 0
    for i in range(len(truth)):
        lab, n = ndi.label(truth[i], structure=np.ones((3, 3)))
        region[i] = np.where(lab > 0, lab + n_regions, 0)
        n_regions += n
    if n_regions == 0:
        return float("nan")
    s = maps[masks]
    reg = region[masks]
    negatives = reg == 0
    if not negatives.any():
        return float("nan")
    sizes = np.bincount(reg, minlength=n_regions + 1).astype(np.float64)
    weight = np.where(negatives, 0.0, 1.0 / (n_regions * sizes[reg]))
    order = np.argsort(-s, kind="stable")
    s, weight, negatives = s[order], weight[order], negatives[order]
    pro = np.cumsum(weight)
    fpr = np.cumsum(negatives) / negatives.sum()
    last_of_tie = np.r_[s[1:] != s[:-1], True]
    fpr = np.r_[0.0, fpr[last_of_tie]]
    pro = np.r_[0.0, pro[last_of_tie]]
    keep = fpr <= fpr_limit
    x, y = fpr[keep], pro[keep]
    if x[-1] < fpr_limit and len(fpr) > len(x):
        j = len(x)
        frac = (fpr_limit - fpr[j - 1]) / max(fpr[j] - fpr[j - 1], 1e-12)
        x = np.r_[x, fpr_limit]
        y = np.r_[y, pro[j - 1] + frac * (pro[j] - pro[j - 1])]
    return float(np.trapezoid(y, x) / fpr_limit) if hasattr(np, "trapezoid") else float(np.trapz(y, x) / fpr_limit)


@dataclass
class CellMetrics:
    auroc: Interval
    auprc: Interval
    tpr: dict[float, float]
    n_healthy: int
    n_infected: int


def cell_metrics(labels, scores, fprs=(0.05, 0.1), n_boot: int = 1000, seed: int = 0) -> CellMetrics:
    labels = _check_binary(labels)
    return CellMetrics(bootstrap_interval(auroc, labels, scores, n_boot, seed),
                       bootstrap_interval(auprc, labels, scores, n_boot, seed),
                       {f: tpr_at_fpr(labels, scores, f) for f in fprs},
                       int((labels == 0).sum()), int((labels == 1).sum()))


@dataclass
class PixelMetrics:
    auroc: float
    ap: float
    prevalence: float
    aupro: float
    dice_best: float
    dice_fixed: float
    threshold: float


def pixel_metrics(maps, truth, masks, threshold: float) -> PixelMetrics:
    s, y, _ = _pixels(maps, truth, masks)
    return PixelMetrics(pixel_auroc(maps, truth, masks), pixel_ap(maps, truth, masks), float(y.mean()),
                        aupro(maps, truth, masks), best_dice(maps, truth, masks)[0],
                        dice_at(maps, truth, threshold, masks), threshold)
