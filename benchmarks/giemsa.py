"""Giemsa benchmark: falciparum vs healthy per cell on held-back fields of view.

    python benchmarks/build/giemsa_model.py --grayscale     # once: runs/giemsa-gray.safetensors
    python benchmarks/giemsa.py [--data-root ../shared/data] [--model giemsa-rbc]
                                [--gray-model runs/giemsa-gray.safetensors]

Rows: the colour SUPN model (the shipped ``giemsa-rbc``), its diagonal and L2 heads, a grayscale
SUPN model trained on the same cells with the same recipe (``benchmarks/build/giemsa_model.py
--grayscale``), and the hand-made saturation detector of TARGETS.md, all on the validation fields
of giemsa-rbc's split (napari_supn_anomaly.evaluation.builtin_splits).
Writes docs/benchmarks/giemsa.md and docs/images/giemsa_residuals.png.
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from skimage.color import rgb2hsv  # noqa: E402

from napari_supn_anomaly.cells import loss_weight  # noqa: E402
from napari_supn_anomaly.evaluation.builtin_splits import (as_grayscale, load_giemsa_split,  # noqa: E402
                                                           model_crops, with_masks)
from napari_supn_anomaly.evaluation.datasets import CellSet, load_giemsa_cells  # noqa: E402
from napari_supn_anomaly.evaluation.metrics import auprc, auroc  # noqa: E402
from napari_supn_anomaly.models import AnomalyModel, load_model  # noqa: E402
from napari_supn_anomaly.supn import SCORE_RULES, cell_scores, pixel_map, whitened_residual  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = REPO.parent / "shared" / "data"
DOC = REPO / "docs" / "benchmarks" / "giemsa.md"
PICTURE = REPO / "docs" / "images" / "giemsa_residuals.png"
FPR_TARGETS = (0.01, 0.05)


def per_cell_metrics(labels: np.ndarray, scores: np.ndarray) -> dict:
    return {"auroc": auroc(labels, scores), "ap": auprc(labels, scores)}


def saturation_score(image: np.ndarray) -> float:
    """TARGETS.md detector: 99.5th percentile of HSV saturation in the central 2/3 of the crop."""
    h, w = image.shape[1:]
    hsv = rgb2hsv(np.clip(image.transpose(1, 2, 0) / 255.0, 0, 1))
    centre = hsv[h // 6: h - h // 6, w // 6: w - w // 6, 1]
    return float(np.percentile(centre, 99.5))


def threshold_rates(model: AnomalyModel, scorer: str, labels: np.ndarray, scores: np.ndarray) -> dict:
    """Healthy false-positive and infected detection rates at the model's calibrated thresholds."""
    out = {}
    for fpr in FPR_TARGETS:
        t = model.threshold_for_fpr(fpr, scorer)
        out[fpr] = (float((scores[labels == 0] >= t).mean()), float((scores[labels == 1] >= t).mean()))
    return out


@torch.no_grad()
def other_rule_scores(model: AnomalyModel, crops, masks, scorer: str, rules: list[str], batch_size: int = 64) -> dict:
    """Per-cell scores under other score rules, from one pass of whitened residuals."""
    out = {rule: [] for rule in rules}
    for start in range(0, len(crops), batch_size):
        x = torch.from_numpy(model.normalise(crops[start:start + batch_size]))
        m = torch.from_numpy(masks[start:start + batch_size])
        z = whitened_residual(model.net, x, scorer)[0][0]
        for rule in rules:
            out[rule].append(cell_scores(pixel_map(z, SCORE_RULES[rule]), m).numpy())
    return {rule: np.concatenate(v) for rule, v in out.items()}


def score_model(model: AnomalyModel, crops, masks, labels, rules: list[str]) -> dict:
    """Per scorer and score rule: AUROC/AP; for the model's own rule also throughput and threshold rates."""
    rows = {}
    for scorer in model.scorers:
        own = model.score_rule(scorer)
        started = time.perf_counter()
        scores = model.score_crops(crops, masks, scorer=scorer, batch_size=64).scores
        seconds = time.perf_counter() - started
        rows[(scorer, own)] = dict(per_cell_metrics(labels, scores), cells_per_s=len(scores) / seconds,
                                   rates=threshold_rates(model, scorer, labels, scores))
        others = other_rule_scores(model, crops, masks, scorer, [r for r in rules if r != own])
        for rule, values in others.items():
            rows[(scorer, rule)] = per_cell_metrics(labels, values)
    return rows


def residual_picture(model: AnomalyModel, crops, masks, labels, scores, path: Path) -> None:
    """Infected and healthy validation cells: image, mean, whitened residual per channel, a sample."""
    order = np.argsort(scores)
    infected = [i for i in order[::-1] if labels[i] == 1]
    healthy = [i for i in order if labels[i] == 0]
    # the two best-scoring and the median infected cell; a median and the highest-scoring healthy cell
    picks = [("infected, top score", infected[0]), ("infected, 2nd", infected[1]),
             ("infected, median", infected[len(infected) // 2]),
             ("healthy, median", healthy[len(healthy) // 2]), ("healthy, top score", healthy[-1])]
    idx = np.array([i for _, i in picks])
    x, mean, z, sample = model.reconstruct(crops[idx])
    maps = model.score_crops(crops[idx], masks[idx]).maps
    lo = np.asarray(model.intensity.low)[:, None, None]
    hi = np.asarray(model.intensity.high)[:, None, None]

    def to_rgb(a):  # normalised [-1, 1] -> displayable RGB in [0, 1]
        return np.clip(((a + 1) / 2 * (hi - lo) + lo) / 255.0, 0, 1).transpose(1, 2, 0)

    threshold = model.threshold_for_fpr(0.01, "supn")
    trained_region = loss_weight(masks[idx])[:, 0] > 0  # the cell + 3 px: where the likelihood was fitted
    cols = ["image", "VAE mean", "sample from the\nlearned Gaussian", "z red", "z green", "z blue",
            f"cell map ({model.score_rule('supn')})"]
    z_cmap = plt.get_cmap("RdBu_r").copy()
    z_cmap.set_bad("0.85")
    map_cmap = plt.get_cmap("magma").copy()
    map_cmap.set_bad("0.85")
    fig, axes = plt.subplots(len(picks), len(cols), figsize=(2.1 * len(cols), 2.2 * len(picks)))
    for r, (label, i) in enumerate(picks):
        panels = [to_rgb(x[r]), to_rgb(mean[r]), to_rgb(sample[r])]
        for c, img in enumerate(panels):
            axes[r, c].imshow(img)
        for k in range(3):
            im = axes[r, 3 + k].imshow(np.where(trained_region[r], z[r, k], np.nan), cmap=z_cmap, vmin=-6, vmax=6)
        mp = np.where(masks[idx[r]], maps[r], np.nan)
        im2 = axes[r, 6].imshow(mp, cmap=map_cmap, vmin=0, vmax=2 * threshold)
        axes[r, 0].set_ylabel(f"{label}\nscore {scores[i]:.0f}", fontsize=8)
        for c in range(len(cols)):
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(cols[c], fontsize=9)
    fig.colorbar(im, ax=axes[:, 3:6], shrink=0.5, label="whitened residual z (N(0,1) if healthy)")
    bar = fig.colorbar(im2, ax=axes[:, 6], shrink=0.5, label="cell score map (cyan: threshold at 1% FPR)")
    bar.ax.axhline(threshold, color="cyan", lw=2)
    fig.suptitle("giemsa-rbc on held-back fields: colour whitened residuals (SUPN head; grey = outside the cell)",
                 fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=90, bbox_inches="tight")
    plt.close(fig)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    parser.add_argument("--model", default="giemsa-rbc")
    parser.add_argument("--gray-model", type=Path, default=REPO / "runs" / "giemsa-gray.safetensors")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--doc", type=Path, default=DOC)
    parser.add_argument("--figure", type=Path, default=PICTURE)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)

    if not args.gray_model.exists():
        parser.error(f"no grayscale comparison model at {args.gray_model}: build it first with "
                     f"`python benchmarks/build/giemsa_model.py --grayscale --out {args.gray_model}`")
    split = load_giemsa_split(args.data_root)
    validation = with_masks(split.validation)
    labels = validation.labels
    colour = load_model(args.model)
    gray = AnomalyModel.from_file(args.gray_model)

    rule = colour.score_rule("supn")
    rules = [rule] + [r for r in ("dark-channel", "dark", "paper") if r != rule]
    crops, masks = model_crops(colour, validation)
    colour_rows = score_model(colour, crops, masks, labels, rules)
    gcrops, gmasks = model_crops(gray, as_grayscale(validation))
    gray_rows = score_model(gray, gcrops, gmasks, labels, [r for r in rules if r != "purple"])
    saturation = np.array([saturation_score(img) for img in validation.images])
    sat = per_cell_metrics(labels, saturation)
    # the cells the score rule was chosen on: training fields' infected cells vs the calibration cells
    selection = with_masks(load_giemsa_cells(args.data_root, fields=split.training_fields, infected=True))
    selection = CellSet(selection.images + split.calibration.images,
                        selection.masks + with_masks(split.calibration).masks,
                        np.concatenate([selection.labels, split.calibration.labels]), [], [])
    scrops, smasks = model_crops(colour, selection)
    selection_rows = {rule: per_cell_metrics(selection.labels, values) for rule, values in
                      other_rule_scores(colour, scrops, smasks, "supn", ["purple", "dark-channel", "dark", "paper"]).items()}
    supn_scores = colour.score_crops(crops, masks, scorer="supn").scores
    residual_picture(colour, crops, masks, labels, supn_scores, args.figure)

    load = open("/proc/loadavg").read().split()[:3] if os.path.exists("/proc/loadavg") else ["?"] * 3
    tr = colour.metadata["training"]
    lines = [
        "# Giemsa bright-field: falciparum vs healthy per cell",
        "",
        "Date 2026-11-22; machine: 2-core x86_64 CPU, 24 GB, no GPU (shared with other jobs; load average "
        f"{' '.join(load)} when scoring finished).",
        "",
        "Command: `python benchmarks/build/giemsa_model.py && python benchmarks/build/giemsa_model.py --grayscale "
        "&& python benchmarks/giemsa.py`",
        "",
        f"Data: `plymouth_pf_giemsa_cells`, slide 57546. Validation = all cells of the {len(split.validation_fields)} "
        f"held-back fields {', '.join(split.validation_fields)} ({int((labels == 0).sum())} healthy, "
        f"{int(labels.sum())} falciparum). The models learned {len(split.train)} healthy cells of the other "
        f"{len(split.training_fields)} fields; {len(split.calibration)} further healthy cells of those fields "
        "calibrate the thresholds. No validation cell was seen in training or calibration.",
        "",
        f"Model: {colour.crop_size}x{colour.crop_size} crops, cell diameter {colour.cell_diameter_px:.0f} px, "
        f"stencil radius {colour.net.cfg.radius}, latent {colour.net.cfg.latent_dim}; trained "
        f"{tr['settings']['stage1_iters']} + {tr['settings']['stage2_iters']} iterations (batch "
        f"{tr['settings']['batch_size']}) in {tr['seconds']:.0f} s (whole build {tr.get('build_seconds', '?')} s). "
        "Score = max inside the cell of the pixel map; per-cell AUROC and average precision (AP).",
        "",
        "| detector | score rule | AUROC | AP | cells/s |",
        "| --- | --- | --- | --- | --- |",
    ]
    names = {"supn": "SUPN", "diag": "diagonal", "l2": "L2 (fixed variance)"}
    for tag, rows in (("colour (RGB)", colour_rows), ("grayscale", gray_rows)):
        for (scorer, r), row in rows.items():
            bold = "**" if (tag.startswith("colour") and scorer == "supn" and r == rule) else ""
            speed = f"{row['cells_per_s']:.0f}" if "cells_per_s" in row else ""
            lines.append(f"| {bold}{tag} {names[scorer]}{bold} | {r} | {bold}{row['auroc']:.3f}{bold} | "
                         f"{row['ap']:.3f} | {speed} |")
    lines.append(f"| saturation heuristic (TARGETS.md), same cells | 99.5th pct HSV saturation, central 2/3 | "
                 f"{sat['auroc']:.3f} | {sat['ap']:.3f} | |")
    lines += [
        "",
        "Score rules: " + "; ".join(f"`{r}` = {SCORE_RULES[r].description}" for r in rules) + ".",
        "cells/s: scoring throughput of the standardised crops, one pass at the encoder mean, batch 64, "
        f"{args.threads} thread(s) (crop standardisation not included); one pass scores with every rule at "
        "once, so only each head's own rule has a timing. The grayscale model (same split, settings and "
        f"masks) trained in {gray.metadata['training']['seconds']:.0f} s.",
        "",
        "## Choosing the score rule without the validation fields",
        "",
        f"The rule was chosen on the training fields' {int(selection.labels.sum())} falciparum cells (never "
        f"used for training) against the {len(split.calibration)} calibration cells. Colour SUPN on these cells:",
        "",
        "| score rule | AUROC | AP |",
        "| --- | --- | --- |",
        *[f"| {r} | {m['auroc']:.3f} | {m['ap']:.3f} |" for r, m in selection_rows.items()],
        "",
        "## The calibrated threshold on held-back fields",
        "",
        "The model's threshold for a target healthy false-positive rate is a quantile of its calibration "
        "scores (healthy cells of the training fields). On the validation fields:",
        "",
        "| detector | target FPR | healthy flagged | falciparum flagged |",
        "| --- | --- | --- | --- |",
    ]
    for tag, model, rows in (("colour SUPN", colour, colour_rows), ("colour diagonal", colour, colour_rows),
                             ("grayscale SUPN", gray, gray_rows)):
        scorer = "diag" if "diagonal" in tag else "supn"
        rates = rows[(scorer, model.score_rule(scorer))]["rates"]
        for fpr, (h, i) in rates.items():
            lines.append(f"| {tag} | {fpr:.0%} | {h:.1%} | {i:.1%} |")
    lines += [
        "",
        "![colour whitened residuals](../images/giemsa_residuals.png)",
        "",
        "Picture: validation cells (rows) with the image, the VAE mean, one sample from the learned "
        "Gaussian (mean + U^-1 eps), the whitened residual z of each channel (blue = darker than the model "
        "expects), and the per-pixel score map inside the cell. Rows: the two best-scoring and the median "
        "falciparum cell, a median and the best-scoring healthy cell of the validation fields.",
    ]
    args.doc.parent.mkdir(parents=True, exist_ok=True)
    args.doc.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
