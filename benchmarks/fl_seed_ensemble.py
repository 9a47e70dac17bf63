"""Does averaging the scores of several fluorescence seeds beat one seed? (issue 12, fluorescence)

    python benchmarks/fl_seed_ensemble.py fluorescence-rbc SEED1.safetensors SEED2.safetensors

Scores ``supn_fl_cells/validation`` with each model's SUPN scorer under the rules ``spot`` and
``bright``; the ensemble averages the models' log scores after centring each on its median over the
100 cells and scaling by its interquartile range (label-free). Reports AUROC on all 100 cells, the
mean over the 500 half splits of ``generalisation.py`` (a fixed rule), and the held-out estimate with
the rule chosen on one half and measured on the other.
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generalisation as g  # noqa: E402

from napari_supn_anomaly.evaluation.metrics import auroc  # noqa: E402
from napari_supn_anomaly.models.builtin import load_model  # noqa: E402

RULES = ("spot", "bright")


def robust_z(scores: np.ndarray) -> np.ndarray:
    log = np.log(np.maximum(scores, 1e-9))
    q75, q25 = np.percentile(log, [75, 25])
    return (log - np.median(log)) / (q75 - q25 + 1e-9)


def chosen_on_half(options: dict, y: np.ndarray, splits) -> tuple[float, float]:
    held_out = []
    for a, b in splits:
        best = max(options, key=lambda k: auroc(y[a], options[k][a]))
        held_out.append(auroc(y[b], options[best][b]))
    return float(np.mean(held_out)), float(np.std(held_out))


def main(argv=None) -> int:
    names = (argv if argv is not None else sys.argv[1:]) or ["fluorescence-rbc"]
    val = g.load_fl_cells(g.DATA, "validation")
    y = np.asarray(val.labels)
    splits = g._half_splits(y, 500)
    scores = {}
    for name in names:
        model = load_model(name)
        crops, masks = g.model_crops(model, val)
        for rule in RULES:
            scores[name, rule] = np.asarray(g.with_rule(model, "supn", rule).score_crops(crops, masks, scorer="supn").scores, float)
    ensemble = {rule: np.mean([robust_z(scores[n, rule]) for n in names], 0) for rule in RULES}
    print("| model | rule | AUROC, 100 cells | fixed rule, halves | rule chosen on the other half |")
    print("| --- | --- | --- | --- | --- |")
    for name in [*names, "ensemble"]:
        per_rule = {r: ensemble[r] if name == "ensemble" else scores[name, r] for r in RULES}
        mean, sd = chosen_on_half(per_rule, y, splits)
        for rule, s in per_rule.items():
            halves = np.mean([auroc(y[b], s[b]) for _, b in splits])
            print(f"| {name} | {rule} | {auroc(y, s):.3f} | {halves:.3f} | {mean:.3f} +- {sd:.3f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
