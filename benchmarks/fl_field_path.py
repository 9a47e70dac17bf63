"""Does the whole-field pipeline rank fluorescence cells as well as scoring their crops? (issue 12)

    python benchmarks/fl_field_path.py [MODEL ...] [--layouts 3] [--write docs/benchmarks/fluorescence.md]

The 100 cells of ``supn_fl_cells/validation`` (50 infected, 50 healthy) are scored by each model's
default scorer twice:

- **crop path**: each crop alone at the model's scale (``generalisation.model_crops``), as the
  per-cell AUROC of fluorescence.md and generalisation.md is measured;
- **field path**: the crops laid out as fields, 6 x 6 crops of 128 px side by side, and ``detect``
  run on each field with its defaults (cells found by the package's finder, the field's own cell
  size, the slide's self-calibration). A cell's score is the score of the found cell under the
  deepest point of its mask; a cell whose point lies in no found cell is not counted.

Layouts of a field:

- ``whole``: each crop whole, shifted so that its background (the median outside its mask) is the
  crops' median background: each cell with its own surroundings, as a microscope shows it;
- ``masked``: only the mask's pixels, on Gaussian noise at that background level and the crops'
  noise: how ``cells_sources.composed_fluorescence`` pastes cells (the mask's edge becomes a hard rim);
- ``whole, own masks``: ``whole`` with the crops' masks given as the cell labels (no cell finding).

Each layout is drawn ``--layouts`` times (seeded shuffles of the 100 cells); mean +- sd over the
draws. Last, the 8 fields composed from real crops that docs/benchmarks/cells.md measures the
finder on (healthy *training* crops and the infected validation crops, touching and overlapping):
AUROC of their infected against their healthy cells, and at detect's default setting (each field
calibrated on its own cells) the healthy cells flagged per 100 and the infected cells on a candidate.
"""
from __future__ import annotations

import argparse
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generalisation as g  # noqa: E402
from cells_sources import composed_fluorescence, deepest_point  # noqa: E402
from page_block import replace_block  # noqa: E402

from napari_supn_anomaly.evaluation.metrics import auroc  # noqa: E402
from napari_supn_anomaly.models import load_model  # noqa: E402
from napari_supn_anomaly.pipeline.stacks import DetectSettings, detect  # noqa: E402
from napari_supn_anomaly.scoring import resolve  # noqa: E402

START, END = "<!-- fl-field-path -->", "<!-- /fl-field-path -->"
SIDE = 6          # crops per side of a field
CROP = 128        # the crops' size in supn_fl_cells
LAYOUTS = ("whole", "masked", "whole, own masks")


def field_scores(scorer, images, masks, layout: str, rng) -> np.ndarray:
    """[N] the field path's score of each cell (NaN: not found), the cells laid out in ``layout``."""
    backgrounds = np.array([np.median(img[~m]) for img, m in zip(images, masks)])
    level = float(np.median(backgrounds))
    noise = float(np.median([np.std(img[:12, :12]) for img in images]))
    scores = np.full(len(images), np.nan)
    per_field = SIDE * SIDE
    for start in range(0, len(images), per_field):
        idx = range(start, min(start + per_field, len(images)))
        field = rng.normal(level, noise, (SIDE * CROP, SIDE * CROP)).astype(np.float32)
        own = np.zeros(field.shape, np.int32)
        points = []
        for j, i in enumerate(idx):
            y, x = (j // SIDE) * CROP, (j % SIDE) * CROP
            window = field[y:y + CROP, x:x + CROP]
            shifted = images[i] - backgrounds[i] + level
            if layout == "masked":
                window[masks[i]] = shifted[masks[i]]
            else:
                window[:] = shifted
            own[y:y + CROP, x:x + CROP][masks[i]] = j + 1
            py, px = deepest_point(masks[i])
            points.append((y + py, x + px))
        result = detect(field, "YX", scorer, labels=own if layout == "whole, own masks" else None,
                        settings=DetectSettings(device="cpu"))
        labels = np.asarray(result.cells).reshape(field.shape)
        score_of = dict(zip(result.cell_table["cell_id"], result.cell_table["score"]))
        for i, (py, px) in zip(idx, points):
            scores[i] = score_of.get(int(labels[py, px]), np.nan)
    return scores


def composed_fields(scorer, data_root: Path) -> str:
    """On the 8 composed fields, at detect's defaults (each field its own slide): AUROC of infected
    against healthy labelled cells found once, healthy cells flagged per 100, infected on a candidate."""
    y, s, flagged = [], [], []
    for f in composed_fluorescence(data_root):
        result = detect(f.plane[0], "YX", scorer, settings=DetectSettings(device="cpu"))
        labels = np.asarray(result.cells).reshape(f.plane.shape[1:])
        score_of = dict(zip(result.cell_table["cell_id"], result.cell_table["score"]))
        candidate = dict(zip(result.cell_table["cell_id"], result.cell_table["candidate"]))
        infected = {tuple(p) for p in np.rint(f.infected).astype(int)}
        at = labels[tuple(np.rint(f.cells).astype(int).T)]
        once = np.bincount(at, minlength=int(labels.max()) + 1) == 1
        for point, cell in zip(np.rint(f.cells).astype(int), at):
            if cell > 0 and once[cell] and cell in score_of:
                y.append(tuple(point) in infected)
                s.append(score_of[cell])
                flagged.append(bool(candidate[cell]))
    y, flagged = np.array(y), np.array(flagged)
    return (f"{auroc(y, np.array(s)):.3f}; default setting: {100 * flagged[~y].mean():.1f} of 100 healthy flagged, "
            f"{100 * flagged[y].mean():.0f}% of infected ({int(y.sum())} infected, {int((~y).sum())} healthy)")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("models", nargs="*", default=["fluorescence-rbc"])
    p.add_argument("--layouts", type=int, default=3, help="seeded shuffles of the cells per layout")
    p.add_argument("--data-root", type=Path, default=g.DATA)
    p.add_argument("--write", type=Path, default=None, help="put the table into this page")
    args = p.parse_args(argv)
    started = time.time()
    val = g.load_fl_cells(args.data_root, "validation")
    labels = np.asarray(val.labels)
    images = [np.asarray(img, np.float32).reshape(img.shape[-2:]) for img in val.images]
    masks = [np.asarray(m, bool) for m in val.masks]
    rows = []
    for name in args.models:
        model = load_model(name)
        scorer = resolve(model)
        crops, crop_masks = g.model_crops(model, val)
        crop = np.asarray(scorer.score(crops, crop_masks).scores, float)
        cells = [f"{auroc(labels, crop):.3f}"]
        for layout in LAYOUTS:
            field_auc, crop_auc, found = [], [], []
            for draw in range(1, args.layouts + 1):
                order = np.random.default_rng(draw).permutation(len(images))
                scores = np.full(len(images), np.nan)
                scores[order] = field_scores(scorer, [images[i] for i in order], [masks[i] for i in order],
                                             layout, np.random.default_rng(draw))
                ok = ~np.isnan(scores)
                field_auc.append(auroc(labels[ok], scores[ok]))
                crop_auc.append(auroc(labels[ok], crop[ok]))
                found.append(int(ok.sum()))
            cells.append(f"{np.mean(field_auc):.3f} +- {np.std(field_auc):.3f} (crops of the same cells "
                         f"{np.mean(crop_auc):.3f}; {min(found)}-{max(found)} found)")
            print(name, layout, cells[-1], flush=True)
        cells.append(composed_fields(scorer, args.data_root))
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
        print(rows[-1], flush=True)
    block = "\n".join([
        START,
        "## The whole-field pipeline against the crop path (issue 12)",
        "",
        f"Date {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; machine: {platform.machine()}, 2-core CPU, no GPU. "
        f"Command: `python benchmarks/fl_field_path.py {' '.join(args.models)} --layouts {args.layouts}` "
        f"({time.time() - started:.0f} s). AUROC of the 50 infected against the 50 healthy validation cells, "
        "each model's default scorer; the field path is `detect` at its defaults on fields of 6 x 6 crops "
        "(see the script's docstring for the layouts); mean +- sd over "
        f"{args.layouts} seeded layouts of the cells.",
        "",
        "| model | crop path | field path, whole crops | field path, masks pasted on noise | field path, whole crops, "
        "their own masks as labels | 8 composed fields (training healthy crops, touching and overlapping) |",
        "| --- | --- | --- | --- | --- | --- |",
        *rows,
        END,
    ])
    print(block)
    if args.write:
        replace_block(args.write, START, END, block)
        print(f"wrote {args.write}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
