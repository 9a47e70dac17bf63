"""The "new microscope" benchmark: fine-tune on healthy cells of some Remoscope fields, detect on the others.

Unstained bright-field fields (dark cells on a light background) that no built-in model has
seen. The healthy boxes of the training fields play the rectangles a person would draw; the
fine-tuned model then runs the full detection pipeline on the other fields (cells found by
segmentation, not handed the boxes), and each labelled box is matched to the segmented cell
that covers most of it. Per-cell AUROC: infected boxes (ring, trophozoite, schizont,
gametocyte) against healthy boxes.

    python benchmarks/remoscope_finetune.py --base fluorescence-rbc --minutes 2 \
        --out docs/benchmarks/finetune.md
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_supn_anomaly.evaluation.datasets import load_remoscope_fields
from napari_supn_anomaly.evaluation.handmade import bright_spots_in_box
from napari_supn_anomaly.evaluation.metrics import Interval, auprc, auroc, bootstrap_interval
from napari_supn_anomaly.models import load_model
from napari_supn_anomaly.pipeline.self_calibration import pooled_scores
from napari_supn_anomaly.pipeline.stacks import DetectSettings, choose_run_threshold, detect
from napari_supn_anomaly.progress import Progress
from napari_supn_anomaly.scoring import default_scorer_name, resolve
from napari_supn_anomaly.training import fit_anomaly_model
from napari_supn_anomaly.training.finetune import FinetuneSettings, finetune
from napari_supn_anomaly.training.regions import as_channels_first, cells_from_fields, rectangle

DATA = Path(os.environ.get("SUPN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
KEEP = ("healthy", "ring", "trophozoite", "schizont", "gametocyte")


def healthy_regions(fields):
    return [rectangle(f.name, b.y0, b.x0, b.y1, b.x1, f"{f.name} box {i}")
            for f in fields for i, b in enumerate(f.boxes) if b.cls == "healthy"]


def box_object(labels: np.ndarray, box) -> int | None:
    """The object covering most of ``box``, or None when none covers at least 30% of it."""
    h, w = labels.shape
    window = labels[max(0, box.y0):min(h, box.y1), max(0, box.x0):min(w, box.x1)]
    ids, counts = np.unique(window[window > 0], return_counts=True)
    if len(ids) == 0 or counts.max() < 0.3 * window.size:
        return None
    return int(ids[np.argmax(counts)])


def match_boxes(field, labels: np.ndarray, score_of: dict[int, float]):
    """(labels 1 = infected, scores, n unmatched, matched boxes): each box takes the segmented cell covering
    most of it. Boxes without one (cells the segmentation missed or merged, or, with
    --exclude-edge-cells, cells cut by the field's edge) are counted as unmatched."""
    y_true, scores, missed, matched = [], [], 0, []
    for b in field.boxes:
        if b.cls not in KEEP:
            continue
        cell = box_object(labels, b)
        if cell is None:
            missed += 1
            continue
        scores.append(score_of[cell])
        y_true.append(int(b.infected))
        matched.append(b)
    return np.asarray(y_true), np.asarray(scores, float), missed, matched


def evaluate_model(model, fields, scorer: str, exclude_edge_cells: bool = False, results: dict | None = None):
    """Detection as a user runs it (the package's defaults: cells cut by the field's edge are found and
    scored with the outside masked), then box matching. Returns (y, scores, n unmatched, seconds,
    {field name: matched boxes}); ``results``, when given, receives each field's DetectionResult."""
    y, s, missed, matched = [], [], 0, {}
    t0 = time.perf_counter()
    resolved = resolve(model, scorer)
    settings = DetectSettings(device="cpu", exclude_edge_cells=exclude_edge_cells)
    for f in fields:
        result = detect(f.image, "YX", resolved, settings=settings)
        if results is not None:
            results[f.name] = result
        table = result.cell_table
        yy, ss, mm, boxes = match_boxes(f, result.cells, dict(zip(table["cell_id"].astype(int), table["score"])))
        y.append(yy)
        s.append(ss)
        missed += mm
        matched[f.name] = boxes
    return np.concatenate(y), np.concatenate(s), missed, time.perf_counter() - t0, matched


def matched_on_edge(fields, results: dict, matched: dict) -> np.ndarray:
    """Whether the cell matched to each box (in ``evaluate_model``'s order) is cut by the field's
    edge, as the detection's cell table says (``edge``)."""
    flags = []
    for f in fields:
        result = results[f.name]
        edge = dict(zip(result.cell_table["cell_id"].astype(int), result.cell_table["edge"].astype(bool)))
        flags += [edge[box_object(result.cells, b)] for b in matched[f.name]]
    return np.asarray(flags, bool)


def candidates_at_default(fields, results: dict) -> dict:
    """At the default setting (``results``: each field's DetectionResult, from ``evaluate_model``):
    healthy boxes on a candidate (false candidates), infected boxes on a candidate, and the "misc"
    boxes (debris and other objects that are not red cells) that ended up in a red-cell object and
    on a candidate: what issue 11 asks to count of the objects that are not red cells."""
    counts = dict.fromkeys(("healthy", "healthy_on_candidate", "infected", "infected_on_candidate", "misc",
                            "misc_in_red_cell", "misc_on_candidate"), 0)
    for f in fields:
        result = results[f.name]
        table = result.cell_table
        flagged = dict(zip(table["cell_id"].astype(int), table["candidate"].astype(bool)))
        for b in f.boxes:
            kind = "misc" if b.cls == "misc" else "infected" if b.cls in KEEP and b.infected else \
                "healthy" if b.cls == "healthy" else None
            if kind is None:
                continue
            counts[kind] += 1
            cell = box_object(result.cells, b)
            if cell is None:
                continue
            if kind == "misc":
                counts["misc_in_red_cell"] += 1
            counts[f"{kind}_on_candidate"] += int(flagged.get(cell, False))
    return counts


def pooled_as_one_slide(scorer, results: dict) -> tuple[dict, str]:
    """Every field's result cut at one threshold from all the fields' cells, as ``detect`` does with
    several inputs (fields of one slide); and where that threshold came from."""
    choice = choose_run_threshold(scorer, DetectSettings(), pooled_scores([r.cell_table for r in results.values()]))
    return {name: r.with_choice(choice) for name, r in results.items()}, choice.method


def handmade_on_boxes(fields, only: dict | None = None):
    """TARGETS.md's detector on the true boxes (all kept boxes, or only those in ``only[field name]``)."""
    crops, y = [], []
    for f in fields:
        for b in (only[f.name] if only is not None else f.boxes):
            if b.cls in KEEP:
                crops.append(f.image[None, max(0, b.y0):b.y1, max(0, b.x0):b.x1])
                y.append(int(b.infected))
    return np.asarray(y), bright_spots_in_box(crops)


def with_calibration(model, name: str, hold):
    """``model`` able to score with ``name``: a scorer that needs a healthy calibration (the ensemble)
    is calibrated on the fine-tune's held-back cells, as the model's own scorers were."""
    from napari_supn_anomaly.scoring import calibrate as calibrate_scorer
    from napari_supn_anomaly.cells import standardise_crops

    if name in model.scorers or name in model.metadata.get("calibration", {}):
        return model
    model = model.copy()
    crops, masks, _ = standardise_crops(hold.images, hold.masks, model.geometry,
                                        scale=model.metadata["training"]["crop_scale"])
    calibrate_scorer(resolve(model, name, require_calibration=False), crops, masks)
    return model


def scratch_model(base, cells, settings: FinetuneSettings, iterations: int):
    """The base's architecture trained from random weights on the same cells for the same minutes, with
    iteration caps so high that the time ends it: does starting from the base help?"""
    torch.manual_seed(settings.seed)
    cfg = dataclasses.replace(settings.train_config(), stage1_iters=iterations, stage2_iters=iterations)
    model = None
    for event in fit_anomaly_model(cells.images, cells.masks, name="scratch", modality="brightfield",
                                   arch=base.net.cfg, cfg=cfg, holdout_fraction=settings.holdout_fraction,
                                   device="cpu"):
        if not isinstance(event, Progress):
            model = event
    return model


def scratch_row(base, cells, settings, test_fields, iterations: int, exclude_edge_cells: bool) -> str:
    model = scratch_model(base, cells, settings, iterations)
    y, s, missed, _, _ = evaluate_model(model, test_fields, "supn", exclude_edge_cells)
    return row(f"same architecture from scratch, same cells, scorer `supn` (rule `{model.score_rule('supn')}`)", y, s,
               f"{model.metadata['training']['seconds']} s of training; {missed} boxes unmatched")


def row(name, y, s, extra=""):
    iv = bootstrap_interval(auroc, y, s)
    return f"| {name} | {iv} | {auprc(y, s):.3f} | {int(y.sum())} / {int((1 - y).sum())} | {extra} |"


SPLITS = {"A": (0, 1, 2, 3), "B": (3, 4, 5, 6), "C": (0, 2, 4, 6)}  # fields to train on; the others test


def finetune_settings(args, seed: int) -> FinetuneSettings:
    """The recipe the command line asks for."""
    return FinetuneSettings(minutes=args.minutes, seed=seed, modality="auto", device="cpu",
                            mean_iters=args.mean_iters, precision_iters=args.precision_iters,
                            lr_mean=args.lr_mean, lr_precision=args.lr_precision,
                            colour_augment=args.colour_augment, early_stopping=not args.no_early_stop)


def finetune_on_fields(base, train_fields, settings: FinetuneSettings, base_source: str):
    """``base`` fine-tuned on ALL healthy boxes of ``train_fields`` (regions holding no whole cell are
    skipped by the package), the fields and their cells handed over as the Fine-tune widget does.
    Returns (the fine-tuned model, the marked cells, the fields' planes, their cell labels, the regions)."""
    planes = {f.name: as_channels_first(f.image) for f in train_fields}
    labels: dict = {}
    regions = healthy_regions(train_fields)
    cells = cells_from_fields(planes, regions, "brightfield", labels_out=labels)
    tuned = None
    for event in finetune(base, cells, settings, name=f"{base.name}-remoscope", base_source=base_source,
                          fields=planes, field_labels=labels, compare=False):
        if not isinstance(event, Progress):
            tuned = event
    return tuned, cells, planes, labels, regions


def run_split(base, fields, train_ids, seed: int, args) -> dict:
    """Fine-tune from ALL healthy boxes of the training fields (edge boxes too: regions holding no whole
    cell are skipped by the package), run the fine-tuning check on those fields, detect on the others."""
    from napari_supn_anomaly.training.fit import split_holdout
    from napari_supn_anomaly.training.guard import compare_with_base
    from napari_supn_anomaly.training.regions import skipped_warning

    train_fields = [f for i, f in enumerate(fields) if i in train_ids]
    test_fields = [f for i, f in enumerate(fields) if i not in train_ids]
    settings = finetune_settings(args, seed)
    load = open("/proc/loadavg").read().split()[0]
    tuned, cells, planes, labels, regions = finetune_on_fields(base, train_fields, settings, str(args.base))
    print(f"  {skipped_warning(cells, len(regions)) or 'no region skipped'}", flush=True)
    hold = cells.subset(split_holdout(len(cells), settings.holdout_fraction, seed)[1])
    check = compare_with_base(base, tuned, hold, cells, planes, labels, seed,
                              base_usable=not tuned.metadata["training"]["finetune"]["intensity_inverted"])
    out = {"split": "".join(str(i) for i in train_ids), "seed": seed, "lr_mean": args.lr_mean,
           "mean_iters": args.mean_iters, "precision_iters": args.precision_iters, "colour_augment": args.colour_augment,
           "early_stopping": not args.no_early_stop,
           "minutes": args.minutes, "n_cells": len(cells),
           "n_regions": len(regions), "n_skipped": len(cells.skipped), "load": load,
           "train_s": tuned.metadata["training"]["seconds"],
           "iterations": tuned.metadata["training"].get("iterations"), "cpu_s": tuned.metadata["training"].get("cpu_seconds"),
           "verdict": check.verdict,
           "u_base": check.base.u if check.base else None, "u_tuned": check.tuned.u if check.tuned else None,
           "flagged_base": check.base.flagged if check.base else None,
           "flagged_tuned": check.tuned.flagged if check.tuned else None}
    edges = args.exclude_edge_cells
    out["exclude_edge_cells"] = edges
    scorer = default_scorer_name(tuned)
    detected = {}
    y, s, missed, _, matched = evaluate_model(tuned, test_fields, scorer, edges, detected)
    out["auroc_tuned"], out["n_tuned"] = round(auroc(y, s), 4), [int(y.sum()), int((1 - y).sum()), missed]
    out["cells"] = {"box": [f"{name} {b.y0},{b.x0}" for name, boxes in matched.items() for b in boxes],
                    "infected": y.astype(int).tolist(), "score": [float(v) for v in s]}
    # where the AUROC is lost: cells cut by the field's edge (mostly caps, less than half a cell in
    # the field) against the others (docs/benchmarks/finetune.md, 2026-12-05)
    on_edge = matched_on_edge(test_fields, detected, matched)
    out["auroc_tuned_interior"] = round(auroc(y[~on_edge], s[~on_edge]), 4)
    out["n_on_edge"] = [int(y[on_edge].sum()), int((1 - y[on_edge]).sum())]
    out["auroc_handmade_same_cells"] = round(auroc(*handmade_on_boxes(test_fields, matched)), 4)
    out["at_default"] = candidates_at_default(test_fields, detected)
    pooled, method = pooled_as_one_slide(resolve(tuned, scorer), detected)
    out["at_default_pooled"] = dict(candidates_at_default(test_fields, pooled), threshold_from=method)
    y, s, _, _, _ = evaluate_model(tuned, train_fields, scorer, edges)
    out["auroc_tuned_on_training_fields"] = round(auroc(y, s), 4)
    if args.rotations_too:
        turned = tuned.copy()
        turned.metadata["rotations"] = args.rotations_too
        y, s, _, _, _ = evaluate_model(turned, test_fields, scorer, edges)
        out[f"auroc_tuned_rotations{args.rotations_too}"] = round(auroc(y, s), 4)
    for name in args.scorers_too or ():
        scored = with_calibration(tuned, name, hold)
        y, s, _, _, _ = evaluate_model(scored, test_fields, name, edges)
        out[f"auroc_tuned_{name}"] = round(auroc(y, s), 4)
    if args.scratch:
        model = scratch_model(base, cells, settings, args.scratch_iters)
        y, s, missed, _, _ = evaluate_model(model, test_fields, default_scorer_name(model), edges)
        out["auroc_scratch"], out["n_scratch"] = round(auroc(y, s), 4), [int(y.sum()), int((1 - y).sum()), missed]
        out["scratch_train_s"] = model.metadata["training"]["seconds"]
        out["scratch_iterations"] = model.metadata["training"].get("iterations")
        out["scratch_rule"] = model.score_rule("supn")
    # the fluorescence base cannot even find these dark cells (its segmentation looks for bright ones):
    # no zero-shot AUROC here; the check scores it on the fine-tuned model's cells
    print(json.dumps(out), flush=True)
    return out


def mean_auroc_interval(outcomes: list[dict], n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> Interval:
    """The runs' mean AUROC with a percentile bootstrap interval over the test cells: each draw resamples
    the boxes of each split's test fields once and scores every run of that split (its seeds) on them.
    Seeds share a split's cells, so this is the spread that more test cells, not more seeds, would shrink."""
    rng = np.random.default_rng(seed)
    by_split: dict[str, list[dict]] = {}
    for o in outcomes:
        by_split.setdefault(o["split"], []).append(o)
    value = float(np.mean([auroc(o["cells"]["infected"], o["cells"]["score"]) for o in outcomes]))
    tables = {}
    for split, runs in by_split.items():
        boxes = sorted(set.intersection(*(set(r["cells"]["box"]) for r in runs)))
        infected = dict(zip(runs[0]["cells"]["box"], runs[0]["cells"]["infected"]))
        score_of = [dict(zip(r["cells"]["box"], r["cells"]["score"])) for r in runs]
        scores = np.array([[run[b] for b in boxes] for run in score_of])
        tables[split] = (np.array([infected[b] for b in boxes]), scores)
    means = []
    for _ in range(n_boot):
        draw = []
        for y, scores in tables.values():
            idx = rng.integers(0, len(y), len(y))
            if y[idx].min() == y[idx].max():
                break
            draw += [auroc(y[idx], run[idx]) for run in scores]
        else:
            means.append(np.mean(draw))
    low, high = np.quantile(means, [(1 - level) / 2, 1 - (1 - level) / 2])
    return Interval(value, float(low), float(high))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="fluorescence-rbc", help="built-in model name or model file")
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-train-fields", type=int, default=4, help="the first N fields train, the rest test")
    ap.add_argument("--mean-iters", type=int, default=FinetuneSettings.mean_iters)
    ap.add_argument("--precision-iters", type=int, default=FinetuneSettings.precision_iters)
    ap.add_argument("--lr-mean", type=float, default=FinetuneSettings.lr_mean)
    ap.add_argument("--lr-precision", type=float, default=FinetuneSettings.lr_precision)
    ap.add_argument("--colour-augment", action="store_true", help="stain, lamp and focus jitter of the marked cells")
    ap.add_argument("--no-early-stop", action="store_true", help="run every stage to its iteration cap")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    ap.add_argument("--scratch", action="store_true",
                    help="also train the same architecture from scratch on the same cells for the same time")
    ap.add_argument("--scratch-iters", type=int, default=3000,
                    help="--scratch: iteration cap of each stage, high enough that the time ends the training")
    ap.add_argument("--exclude-edge-cells", action="store_true",
                    help="leave cells cut by the field's edge out of detection (the package scores them by default; "
                         "the runs before 2026-12-01 left them out)")
    ap.add_argument("--rotations-too", type=int, choices=(2, 4), default=None,
                    help="with --splits: also the fine-tuned model's AUROC with each cell scored in this many "
                         "orientations (the same model; AUROC needs no calibration)")
    ap.add_argument("--scorers-too", nargs="+", default=None,
                    help="also score the fine-tuned model with these scorers (e.g. diag ensemble): AUROC only")
    ap.add_argument("--save", type=Path, default=None, help="also write the fine-tuned model here")
    ap.add_argument("--out", type=Path, default=None, help="markdown report (default: print only)")
    ap.add_argument("--splits", nargs="+", choices=sorted(SPLITS), default=None,
                    help="leave-fields-out runs instead of the single run: the fields each split trains on")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--json", type=Path, default=None, help="with --splits: append one JSON line per run here")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.splits:
        fields = load_remoscope_fields(DATA)
        base = load_model(args.base)
        outcomes = []
        for split in args.splits:
            for seed in args.seeds:
                outcomes.append(run_split(base, fields, SPLITS[split], seed, args))
                if args.json:
                    with open(args.json, "a") as fh:
                        fh.write(json.dumps(outcomes[-1]) + "\n")
        aurocs = [o["auroc_tuned"] for o in outcomes]
        print(f"{len(outcomes)} runs: AUROC {np.mean(aurocs):.3f} +- {np.std(aurocs, ddof=1) if len(aurocs) > 1 else 0:.3f} "
              f"(sd over runs); the mean with a 95% bootstrap interval over the test cells: "
              f"{mean_auroc_interval(outcomes)}", flush=True)
        return 0

    fields = load_remoscope_fields(DATA)
    train_fields, test_fields = fields[:args.n_train_fields], fields[args.n_train_fields:]
    base = load_model(args.base)
    planes = {f.name: as_channels_first(f.image) for f in train_fields}
    cells = cells_from_fields(planes, healthy_regions(train_fields), "brightfield")
    settings = finetune_settings(args, args.seed)
    load_before = open("/proc/loadavg").read().split()[:3]
    t0 = time.perf_counter()
    model, last = None, None
    for event in finetune(base, cells, settings, name=f"{base.name}-remoscope", base_source=str(args.base)):
        if isinstance(event, Progress):
            last = event if event.stage in ("mean", "precision", "done") else last
            if event.message:
                print(f"[{event.stage}] {event.message}", flush=True)
        else:
            model = event
    wall = time.perf_counter() - t0
    load_after = open("/proc/loadavg").read().split()[:3]
    train_s = model.metadata["training"]["seconds"]
    iters = last.done if last else 0
    print(f"fine-tuned in {wall:.1f} s (training {train_s} s, {iters} iterations); "
          f"rules {model.metadata['score_rules']}", flush=True)
    if args.save:
        model.save(args.save)

    lines, matched = [], None
    for scorer in model.scorers:
        y, s, missed, det_s, matched = evaluate_model(model, test_fields, scorer, args.exclude_edge_cells)
        lines.append(row(f"fine-tuned `{args.base}`, scorer `{scorer}` (rule `{model.score_rule(scorer)}`)", y, s,
                         f"cells found by segmentation; {missed} boxes unmatched; detection {det_s:.1f} s"))
        print(lines[-1], flush=True)
    if args.scratch:
        lines.append(scratch_row(base, cells, settings, test_fields, args.scratch_iters, args.exclude_edge_cells))
        print(lines[-1], flush=True)
    y, s = handmade_on_boxes(test_fields, matched)
    lines.append(row("hand-made bright spots (TARGETS.md), handed the true boxes, the same cells", y, s))
    y, s = handmade_on_boxes(test_fields)
    lines.append(row("hand-made bright spots (TARGETS.md), handed the true boxes, all boxes of the test fields", y, s))
    y, s = handmade_on_boxes(fields)
    lines.append(row("hand-made bright spots (TARGETS.md), handed the true boxes, all 7 fields", y, s))
    print("\n".join(lines[-3:]))

    if args.out:
        cmd = "python " + " ".join([Path(sys.argv[0]).as_posix()] + (argv if argv is not None else sys.argv[1:]))
        text = [
            "# Fine-tuning for a new microscope: Remoscope unstained bright-field",
            "",
            f"Date {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; machine: 2-core x86_64 CPU, 24 GB, no GPU ({platform.processor() or 'x86_64'}, "
            f"torch {torch.__version__}, {torch.get_num_threads()} threads).",
            f"Load average before/after training: {' '.join(load_before)} / {' '.join(load_after)} "
            "(the machine was shared; wall-clock times are upper bounds).",
            "",
            f"Command: `{cmd}`",
            "",
            f"Training: healthy boxes of {', '.join(f.name for f in train_fields)} -> {len(cells)} cells found "
            f"by segmentation inside the boxes, {model.metadata['training']['n_held_back']} of them held back for "
            f"calibration. Base model `{base.name}` ({base.modality}); the new images are "
            f"{model.modality}, intensity inversion "
            f"{'on' if model.metadata['training']['finetune']['intensity_inverted'] else 'off'}. "
            f"Training {train_s} s wall-clock ({iters} iterations, time budget {args.minutes} min), "
            f"{wall:.1f} s including preparation and calibration.",
            "",
            f"Test: {', '.join(f.name for f in test_fields)}; the full detection pipeline with its defaults "
            "(segmentation, cells cut by the field's edge "
            + ("left out" if args.exclude_edge_cells else "scored with the outside masked")
            + ", rescaling, scoring), each labelled box matched "
            "to the segmented cell covering most of it; unmatched boxes are left out of the model's rows.",
            "",
            "| method | per-cell AUROC [95% bootstrap] | AP | infected / healthy | notes |",
            "| --- | --- | --- | --- | --- |",
            *lines,
            "",
        ]
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(text))
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
