"""Fluorescence benchmark of the built-in model: per-cell AUROC/AUPRC on supn_fl_cells/validation.

    python benchmarks/fl_cells.py [--model fluorescence-rbc] [--data-root ../shared/data] [--threads 1]
                                  [--out docs/benchmarks/fluorescence.md] [--figure docs/images/fl_residuals.png]

Rows: the SUPN scorer and the two baselines of the same network (diagonal Gaussian and
fixed-variance "L2", trained on the same latent samples with the same budget), each with the
model's score rule and the alternatives, and the hand-made spot detector of TARGETS.md.
Also: scoring throughput per scorer, and a synthetic-parasite check on the model's own
held-back healthy training cells (the validation groups differ in acquisition as well as in
infection, see TARGETS.md), and the residual figure.
"""
from __future__ import annotations

import argparse
import copy
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

from napari_supn_anomaly.cells import loss_weight, standardise_crops
from napari_supn_anomaly.evaluation.datasets import load_fl_cells
from napari_supn_anomaly.evaluation.handmade import bright_spots
from napari_supn_anomaly.evaluation.metrics import auprc, auroc, bootstrap_interval
from napari_supn_anomaly.models import load_model
from napari_supn_anomaly.training.fit import split_holdout

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DATA_ROOT = REPO.parent / "shared" / "data"
RULES = ("spot", "bright", "paper")
SPOT_AMPLITUDES = (40.0, 80.0)  # grey levels added at the spot centre in the 8-bit source crops
SPOT_SIGMA = (1.5, 2.5)          # source pixels (the source cells are ~70 px across)


def with_rule(model, rule):
    m = copy.copy(model)
    m.metadata = copy.deepcopy(model.metadata)
    m.metadata["score_rules"] = {s: rule for s in model.scorers}
    return m


def standardise(model, images, masks):
    scale = model.metadata["training"]["crop_scale"]
    crops, cell_masks, _ = standardise_crops(images, masks, model.geometry, scale=scale)
    return crops, cell_masks


def held_back_cells(model, data_root):
    """The healthy training cells that fit_anomaly_model held back (same seed, same order)."""
    train = load_fl_cells(data_root, "train")
    seed = model.metadata["training"]["settings"]["seed"]
    n_hold = model.metadata["training"]["n_held_back"]
    frac = n_hold / (n_hold + model.metadata["training"]["n_cells"])
    _, hold = split_holdout(len(train), frac, seed)
    if len(hold) != n_hold:
        raise RuntimeError("could not reproduce the model's held-back cells")
    return [train.images[i] for i in hold], [train.masks[i] for i in hold]


def add_spots(images, masks, amplitude, seed):
    """One Gaussian spot per cell, somewhere inside the cell (3 px from its edge), 8-bit clipped."""
    rng = np.random.default_rng(seed)
    out = []
    for img, mask in zip(images, masks):
        inner = ndi.binary_erosion(mask, iterations=3)
        ys, xs = np.nonzero(inner if inner.any() else mask)
        k = rng.integers(len(ys))
        sigma = rng.uniform(*SPOT_SIGMA)
        yy, xx = np.mgrid[:img.shape[1], :img.shape[2]]
        spot = amplitude * np.exp(-((yy - ys[k]) ** 2 + (xx - xs[k]) ** 2) / (2 * sigma ** 2))
        out.append(np.clip(np.round(img + spot[None]), 0, 255).astype(np.float32))
    return out


def throughput(model, crops, masks, rounds=3, min_crops=256):
    """Crops per CPU-second and per wall-second for each scorer, rounds interleaved across scorers.

    CPU time of this process is what a quiet machine would spend; wall time depends on the load.
    """
    reps = max(1, int(np.ceil(min_crops / len(crops))))
    x, m = np.concatenate([crops] * reps), np.concatenate([masks] * reps)
    cpu = {s: 0.0 for s in model.scorers}
    wall = dict(cpu)
    for scorer in model.scorers:
        model.score_crops(x[:64], m[:64], scorer)  # warm-up
    for _ in range(rounds):
        for scorer in model.scorers:
            c0, w0 = time.process_time(), time.perf_counter()
            model.score_crops(x, m, scorer)
            cpu[scorer] += time.process_time() - c0
            wall[scorer] += time.perf_counter() - w0
    n = rounds * len(x)
    return {s: (n / cpu[s], n / wall[s]) for s in model.scorers}


def residual_figure(model, crops, masks, labels, path, n_each=4):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    idx = list(np.nonzero(labels == 0)[0][:n_each]) + list(np.nonzero(labels == 1)[0][:n_each])
    x, mean, z, sample = model.reconstruct(crops[idx], "supn", seed=0)
    spot = model.score_crops(crops[idx], masks[idx], "supn").maps
    # the likelihood is trained on the cell and a 3 px margin only (loss_weight); outside it the
    # mean and precision are unconstrained, so the figure greys that part out
    modelled = loss_weight(masks[idx])[:, 0] > 0
    cols = ["input", "mean", "whitened residual z", "spot statistic", "sample from the Gaussian"]
    fig, axes = plt.subplots(len(idx), len(cols), figsize=(2.1 * len(cols), 2.1 * len(idx)))
    for r, i in enumerate(idx):
        lo, hi = float(x[r, 0].min()), float(x[r, 0].max())
        inside = modelled[r]
        panels = [(x[r, 0], "gray", lo, hi), (np.where(inside, mean[r, 0], np.nan), "gray", lo, hi),
                  (np.where(inside, z[r, 0], np.nan), "RdBu_r", -4, 4),
                  (np.where(masks[i], spot[r], np.nan), "magma", 0, 8),
                  (np.where(inside, sample[r, 0], np.nan), "gray", lo, hi)]
        for c, (img, cmap, vmin, vmax) in enumerate(panels):
            ax = axes[r, c]
            cm = matplotlib.colormaps[cmap].copy()
            cm.set_bad("#d8d8d8")
            ax.imshow(img, cmap=cm, vmin=vmin, vmax=vmax)
            ax.set_xticks([])
            ax.set_yticks([])
            if r == 0:
                ax.set_title(cols[c], fontsize=9)
        axes[r, 0].set_ylabel("infected" if labels[i] else "healthy", fontsize=9)
    fig.suptitle(f"{model.name}: validation cells. z in [-4, 4], spot statistic in [0, 8] inside the cell; "
                 "grey: outside the modelled region (cell + 3 px)", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80)
    plt.close(fig)


def fmt_ci(labels, scores, metric):
    ci = bootstrap_interval(metric, labels, scores, n_boot=1000, seed=0)
    return f"{metric(labels, scores):.3f} ({ci.low:.2f}-{ci.high:.2f})"


START, END = "<!-- generated by benchmarks/fl_cells.py: start -->", "<!-- generated by benchmarks/fl_cells.py: end -->"


def write_generated(path: Path, text: str) -> None:
    """Replace the generated block of ``path`` and keep the hand-written notes around it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    block = f"{START}\n{text}\n{END}"
    old = path.read_text() if path.exists() else ""
    if START in old and END in old:
        block = old[:old.index(START)] + block + old[old.index(END) + len(END):]
    path.write_text(block + ("" if block.endswith("\n") else "\n"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="fluorescence-rbc")
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks" / "fluorescence.md")
    p.add_argument("--figure", type=Path, default=REPO / "docs" / "images" / "fl_residuals.png")
    p.add_argument("--other-seeds", nargs="*", default=[], metavar="MODEL",
                   help="models built with other seeds (build/fluorescence_model.py --seed N --out FILE): "
                        "their default-rule AUROC/AUPRC are tabulated to show the spread between runs")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    val = load_fl_cells(args.data_root, "validation")
    crops, masks = standardise(model, val.images, val.masks)
    y = val.labels

    rows = []
    for scorer in model.scorers:
        for rule in RULES:
            s = with_rule(model, rule).score_crops(crops, masks, scorer).scores
            rows.append((scorer, rule, rule == model.score_rule(scorer), fmt_ci(y, s, auroc), fmt_ci(y, s, auprc)))
    handmade = bright_spots(val.images, val.masks)
    rows.append(("hand-made spot detector", "max of DoG(1, 4) in the cell", False, fmt_ci(y, handmade, auroc),
                 fmt_ci(y, handmade, auprc)))

    hold_images, hold_masks = held_back_cells(model, args.data_root)
    clean, clean_masks = standardise(model, hold_images, hold_masks)
    synth = []
    for amp in SPOT_AMPLITUDES:
        spotted = add_spots(hold_images, hold_masks, amp, seed=int(amp))
        sp, sp_masks = standardise(model, spotted, hold_masks)
        yy = np.r_[np.zeros(len(clean)), np.ones(len(sp))]
        row = {"amplitude": amp}
        for scorer in model.scorers:
            a = model.score_crops(clean, clean_masks, scorer).scores
            b = model.score_crops(sp, sp_masks, scorer).scores
            row[scorer] = auroc(yy, np.r_[a, b])
        row["hand-made"] = auroc(yy, np.r_[bright_spots(hold_images, hold_masks), bright_spots(spotted, hold_masks)])
        synth.append(row)

    seeds = []
    for other in [args.model] + list(args.other_seeds):
        m = load_model(other)
        oc, om = standardise(m, val.images, val.masks)
        for scorer in m.scorers:
            sc = m.score_crops(oc, om, scorer).scores
            seeds.append((m.metadata["training"]["settings"]["seed"], scorer, m.score_rule(scorer),
                          auroc(y, sc), auprc(y, sc), m.metadata["training"]["seconds"]))

    load_before = os.getloadavg()
    speed = throughput(model, crops, masks)
    load_after = os.getloadavg()
    residual_figure(model, crops, masks, y, args.figure)

    train = model.metadata["training"]
    machine = train.get("machine", {})
    lines = [
        "# Fluorescence cells (supn_fl_cells/validation)", "",
        (f"Date {datetime.now(timezone.utc):%Y-%m-%d}; machine: 2-core x86_64 CPU, 24 GB, no GPU "
        f"({platform.processor() or platform.machine()}); torch {torch.__version__}."), "",
        f"Command: `python benchmarks/fl_cells.py --model {args.model} --threads {args.threads}"
        + "".join(f" --other-seeds {o}" if i == 0 else f" {o}" for i, o in enumerate(args.other_seeds)) + "` "
        "(the model built by `python benchmarks/build/fluorescence_model.py`; other seeds by "
        "`python benchmarks/build/fluorescence_model.py --threads 1 --seed N --out FILE`).", "",
        (f"Model `{model.name}`: crop {model.crop_size} px, cell diameter {model.cell_diameter_px:.0f} px, "
        f"stencil radius {model.net.cfg.radius}, latent {model.net.cfg.latent_dim}, widths "
        f"{'-'.join(map(str, model.net.cfg.widths))} / precision heads {'-'.join(map(str, model.net.cfg.head_widths))}"
        f"{', decoders ending at half resolution (direct outputs)' if model.net.cfg.direct_output else ''}, "
        f"{sum(p.numel() for p in model.net.parameters()) / 1e6:.2f} M parameters; trained from scratch on "
        f"{train['n_cells']} healthy crops, {train['n_held_back']} held back for calibration."), "",
        "## Per-cell detection (50 healthy, 50 infected; 95% bootstrap intervals)", "",
        "| scorer | score rule | default | AUROC | AUPRC |", "| --- | --- | --- | --- | --- |",
    ]
    lines += [f"| {s} | {r} | {'yes' if d else ''} | {a} | {ap} |" for s, r, d, a, ap in rows]
    lines += ["", ("All three scorers come from one network: shared encoder and mean decoder, and two precision "
              "heads (SUPN and diagonal) trained on the same latent samples for the same iterations; L2 uses the "
              "mean with one fixed standard deviation measured on the training residuals."), "",
              "## Training", "",
              (f"- iterations: mean stage {train['settings']['stage1_iters']}, precision stage "
              f"{train['settings']['stage2_iters']}, batch {train['settings']['batch_size']}, seed "
              f"{train['settings']['seed']}"),
              (f"- wall time of training: {train['seconds']:.0f} s ({train['seconds'] / 60:.1f} min); whole build "
              f"{machine.get('build_seconds', float('nan')):.0f} s with {machine.get('threads', '?')} thread(s); "
              f"load average before/after {machine.get('loadavg_before')} / {machine.get('loadavg_after')} "
              "(the CPU was shared with other jobs: the time on a quiet machine is lower)"), "",
              f"## Scoring throughput ({args.threads} thread(s), batch 64, at the encoder mean)", "",
              ("Whole scoring path per crop: normalise, encode, decode the mean, precision head, score map, "
              "cell score. CPU time is what the process spent (a quiet machine's wall time with one thread); "
              "three rounds, interleaved across scorers."), "",
              "| scorer | crops per CPU-second | crops per wall-second | CPU cost relative to diag |",
              "| --- | --- | --- | --- |"]
    lines += [f"| {s} | {c:.0f} | {w:.0f} | {speed['diag'][0] / c:.2f}x |" for s, (c, w) in speed.items()]
    lines += ["", (f"Load average before/after: {[round(v, 2) for v in load_before]} / "
              f"{[round(v, 2) for v in load_after]}."), "",
              "## Synthetic parasites on held-back healthy training cells", "",
              (f"One Gaussian spot (sigma {SPOT_SIGMA[0]}-{SPOT_SIGMA[1]} source px) added inside each of the "
              f"{len(clean)} held-back healthy cells; AUROC of spotted against the same cells unchanged. Unlike the "
              "validation split this has no acquisition difference between the groups."), "",
              "| spot amplitude (grey levels) | " + " | ".join(model.scorers) + " | hand-made |",
              "| --- |" + " --- |" * (len(model.scorers) + 1)]
    lines += [f"| {r['amplitude']:.0f} | " + " | ".join(f"{r[s]:.3f}" for s in model.scorers)
              + f" | {r['hand-made']:.3f} |" for r in synth]
    lines += ["", "## Runs with different seeds (default score rules)", "",
              "| seed | scorer | rule | AUROC | AUPRC | training s |", "| --- | --- | --- | --- | --- | --- |"]
    lines += [f"| {sd} | {sc} | {r} | {a:.3f} | {ap:.3f} | {t:.0f} |" for sd, sc, r, a, ap, t in seeds]
    lines += ["", f"![residuals](../images/{args.figure.name})", ""]
    write_generated(args.out, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
