"""ROC curves of several scorers on one test set, as a PNG."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from sklearn.metrics import roc_auc_score, roc_curve

from ..files import atomic_outputs


def plot_roc(labels: np.ndarray, scores: dict[str, np.ndarray], path: str | Path, title: str = "") -> Path:
    """One curve per scorer (name -> per-cell scores), AUROC in the legend."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = np.asarray(labels).astype(int)
    fig, ax = plt.subplots(figsize=(5.5, 5.0), dpi=120)
    ax.plot([0, 1], [0, 1], color="0.7", lw=1, ls="--")
    for name, s in scores.items():
        s = np.asarray(s, np.float64)
        if len(np.unique(labels)) < 2 or not np.isfinite(s).all():
            continue
        fpr, tpr, _ = roc_curve(labels, s)
        ax.plot(fpr, tpr, lw=1.5, label=f"{name} ({roc_auc_score(labels, s):.3f})")
    ax.set_xlabel("false-positive rate (healthy cells flagged)")
    ax.set_ylabel("true-positive rate (anomalous cells found)")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="lower right")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    fig.tight_layout()
    path = Path(path)
    try:
        with atomic_outputs([path]) as (tmp,):
            fig.savefig(tmp, format="png")
    finally:
        plt.close(fig)
    return path
