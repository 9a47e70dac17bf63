"""Fine-tuning on another lab's Giemsa slides: never worse than the zero-shot model on the slides left out.

MalariaNet (``malarianet_giemsa_fields``: 9 slides, parasite masks). The package's own segmentation
finds the cells of every field (as it is at run time); a cell is infected when at least
``INFECTED_PX`` of its pixels are parasite, healthy when none is (cells in between are left out).
Half of the healthy cells of the training slides, drawn at random, play the cells a person marks;
the fields' other cells are what the fine-tuning check (``training.guard``) sees unlabelled. The
fine-tuned model (or the base, when the check keeps it) then runs detection on the test slides,
and per-cell AUROC is compared with the zero-shot base on the same cells.

    python benchmarks/malarianet_finetune.py --train Trip_022 Trip_053 --test Trip_062 Trip_064 --seeds 0 1 2
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch
from skimage.io import imread

from napari_supn_anomaly.cells import segment_cells
from napari_supn_anomaly.evaluation.metrics import auroc
from napari_supn_anomaly.models import load_model
from napari_supn_anomaly.pipeline.stacks import DetectSettings, detect
from napari_supn_anomaly.progress import Progress
from napari_supn_anomaly.scoring import resolve
from napari_supn_anomaly.training.finetune import FinetuneSettings, finetune
from napari_supn_anomaly.training.fit import split_holdout
from napari_supn_anomaly.training.guard import compare_with_base
from napari_supn_anomaly.training.regions import TrainingCells, cells_from_labels

DATA = Path(os.environ.get("SUPN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
INFECTED_PX = 10
MODALITY = "brightfield-stained"


def slide_of(name: str) -> str:
    return name.split("_Image")[0]


def load_fields(slides: list[str], max_per_slide: int | None) -> dict:
    """{field name: (plane [3, Y, X] float32, parasite mask [Y, X] bool)} of the given slides (prefixes)."""
    root = DATA / "malarianet_giemsa_fields"
    out = {}
    for prefix in slides:
        paths = sorted(p for p in (root / "images").glob("*.jpg") if slide_of(p.stem).startswith(prefix))
        if not paths:
            raise SystemExit(f"no MalariaNet slide starts with {prefix!r}")
        for p in paths[:max_per_slide]:
            image = np.moveaxis(imread(p)[..., :3], -1, 0).astype(np.float32)
            out[p.stem] = (image, imread(root / "masks" / (p.stem + ".png")) > 127)
    return out


def cell_labels(fields: dict, cache: Path | None = None) -> dict:
    """{field: (labels, {cell id: 1 infected / 0 healthy})}: the package's segmentation, cells in between left out.

    With ``cache`` the labels are kept there (one .npy per field) and reused: delete it after changing
    the segmentation."""
    out = {}
    for name, (plane, mask) in fields.items():
        cached = cache / f"{name}.npy" if cache else None
        if cached is not None and cached.exists():
            labels = np.load(cached)
        else:
            labels = segment_cells(plane, MODALITY).labels
            if cached is not None:
                cache.mkdir(parents=True, exist_ok=True)
                np.save(cached, labels)
        ids, area = np.unique(labels[labels > 0], return_counts=True)
        parasite = np.bincount(labels[mask & (labels > 0)].ravel(), minlength=int(labels.max()) + 1)
        truth = {int(i): int(parasite[i] >= INFECTED_PX) for i in ids if parasite[i] == 0 or parasite[i] >= INFECTED_PX}
        out[name] = (labels, truth)
    return out


def evaluate(model, fields: dict, seg: dict) -> tuple[float, int, int]:
    """Per-cell AUROC of detection with its defaults (cells given: the same cells for every model)."""
    scorer = resolve(model)
    y, s = [], []
    for name, (plane, _) in fields.items():
        labels, truth = seg[name]
        result = detect(np.moveaxis(plane, 0, -1), "YXS", scorer, labels=labels, settings=DetectSettings(device="cpu"))
        score = dict(zip(result.cell_table["cell_id"].astype(int), result.cell_table["score"]))
        for cid, t in truth.items():
            if cid in score:
                y.append(t)
                s.append(score[cid])
    y, s = np.asarray(y), np.asarray(s)
    return auroc(y, s), int(y.sum()), int((1 - y).sum())


def marked_cells(fields: dict, seg: dict, share: float, seed: int) -> TrainingCells:
    """A random ``share`` of each training field's healthy cells: what a person marks."""
    rng = np.random.default_rng(seed)
    out = TrainingCells()
    for name, (plane, _) in fields.items():
        labels, truth = seg[name]
        healthy = [c for c, t in truth.items() if t == 0]
        chosen = sorted(rng.choice(healthy, int(round(share * len(healthy))), replace=False).tolist()) if healthy else []
        out.extend(cells_from_labels(plane, labels, name, chosen, how="benchmark mark"))
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="giemsa-rbc")
    ap.add_argument("--train", nargs="+", required=True, help="slide name prefixes to fine-tune on")
    ap.add_argument("--test", nargs="+", required=True, help="slide name prefixes to test on")
    ap.add_argument("--max-fields", type=int, default=4, help="fields per slide (default 4)")
    ap.add_argument("--share", type=float, default=0.5, help="share of healthy training cells marked")
    ap.add_argument("--minutes", type=float, default=2.0)
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--lr-mean", type=float, default=FinetuneSettings.lr_mean)
    ap.add_argument("--lr-precision", type=float, default=FinetuneSettings.lr_precision)
    ap.add_argument("--mean-iters", type=int, default=FinetuneSettings.mean_iters, help="0: keep the base's image model")
    ap.add_argument("--precision-iters", type=int, default=FinetuneSettings.precision_iters,
                    help="0: keep the base's noise model")
    ap.add_argument("--colour-augment", action="store_true", help="stain, lamp and focus jitter while fine-tuning")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--json", type=Path, default=None, help="append one JSON line per seed here")
    ap.add_argument("--cache", type=Path, default=None, help="keep each field's segmentation here and reuse it")
    ap.add_argument("--segment-only", action="store_true", help="segment (into --cache) and stop")
    ap.add_argument("--skip-memory-check", action="store_true",
                    help="do not refuse a field when other jobs hold the memory (a shared benchmark machine)")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.skip_memory_check:
        import napari_supn_anomaly.pipeline.stacks as stacks

        stacks.check_plane_fits = lambda *a, **k: None

    base = load_model(args.base)
    train_fields, test_fields = load_fields(args.train, args.max_fields), load_fields(args.test, args.max_fields)
    t0 = time.perf_counter()
    train_seg, test_seg = cell_labels(train_fields, args.cache), cell_labels(test_fields, args.cache)
    if args.segment_only:
        return 0
    print(f"segmented {len(train_fields)} + {len(test_fields)} fields in {time.perf_counter() - t0:.0f} s", flush=True)
    zero, n_inf, n_healthy = evaluate(base, test_fields, test_seg)
    print(f"zero-shot {args.base}: AUROC {zero:.3f} on {n_inf} infected / {n_healthy} healthy test cells", flush=True)
    train_auc_base = evaluate(base, train_fields, train_seg)[0]
    planes = {n: f[0] for n, f in train_fields.items()}
    labels = {n: s[0] for n, s in train_seg.items()}
    for seed in args.seeds:
        cells = marked_cells(train_fields, train_seg, args.share, seed)
        settings = FinetuneSettings(minutes=args.minutes, seed=seed, device="cpu", lr_mean=args.lr_mean,
                                    lr_precision=args.lr_precision, mean_iters=args.mean_iters,
                                    precision_iters=args.precision_iters, colour_augment=args.colour_augment)
        load = open("/proc/loadavg").read().split()[0]
        t1 = time.perf_counter()
        tuned = None
        for event in finetune(base, cells, settings, name="mn-finetuned", fields=planes, field_labels=labels,
                              compare=False):
            if not isinstance(event, Progress):
                tuned = event
        train_s = time.perf_counter() - t1
        # the check finetune() runs when given the fields, run here on the same held-back cells so that the
        # fine-tuned model is measured whatever the check decides
        hold = cells.subset(split_holdout(len(cells), settings.holdout_fraction, seed)[1])
        check = compare_with_base(base, tuned, hold, cells, planes, labels, seed).to_dict()
        print(f"  check: {check['verdict']}: {check['reason']}", flush=True)
        ft_auc = evaluate(tuned, test_fields, test_seg)[0]
        train_auc_ft = evaluate(tuned, train_fields, train_seg)[0]
        shipped = zero if check["verdict"] == "base" else ft_auc
        row = {"seed": seed, "train": args.train, "test": args.test, "n_marked": len(cells),
               "lr_mean": args.lr_mean, "minutes": args.minutes, "load": load,
               "mean_iters": args.mean_iters, "precision_iters": args.precision_iters,
               "colour_augment": args.colour_augment,
               "zero_shot": round(zero, 4), "fine_tuned": round(ft_auc, 4), "shipped": round(shipped, 4),
               "verdict": check["verdict"], "reason": check["reason"], "flagged_difference": check["flagged_difference"], "u_base": (check["base"] or {}).get("u"), "u_tuned": (check["tuned"] or {}).get("u"),
               "train_fields_auroc_base": round(train_auc_base, 4), "train_fields_auroc_tuned": round(train_auc_ft, 4),
               "train_s": round(train_s, 1), "iterations": tuned.metadata["training"].get("iterations"),
               "cpu_s": tuned.metadata["training"].get("cpu_seconds"), "n_held_back": len(hold), "n_field_cells": check["n_field_cells"],
               "flagged_base": (check["base"] or {}).get("flagged"), "flagged_tuned": (check["tuned"] or {}).get("flagged")}
        print(json.dumps(row), flush=True)
        if args.json:
            with open(args.json, "a") as fh:
                fh.write(json.dumps(row) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
