"""Does the slide's self-calibration hold its rate on fluorescence cells? (issue 12)

    python benchmarks/self_calibration_fluorescence.py [--draws 200] [--write docs/benchmarks/self_calibration.md]

The shape the slide fit assumes for healthy log scores (``pipeline.self_calibration.HEALTHY_SHAPE``,
a Student t with 6 degrees of freedom) was chosen on MalariaNet slides. Here it meets the only
fluorescence cells that ``fluorescence-rbc`` never trained on: the 50 healthy and 50 infected
``supn_fl_cells/validation`` cells and the 132 healthy cells its build held back to calibrate it.
Each simulated slide holds all 182 healthy cells plus infected cells drawn (without replacement)
from the 50, at 0-20% of the slide's cells, ``--draws`` times per rate. Cells are scored once as
crops with the model's default scorer. For each slide, the threshold is chosen as detection
chooses it (``choose_threshold``: the slide fit, or the model's stored calibration when the slide's
healthy cells score like the model's own), and with the slide fit alone; the share of healthy cells
flagged is counted separately on the 50 cells nobody used and on the 132 held-back cells, which set
the model's stored calibration (so they are flagged at the rate asked by construction when it is used).
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
from page_block import replace_block  # noqa: E402

from napari_supn_anomaly.evaluation.builtin_splits import fluorescence_split, model_crops  # noqa: E402
from napari_supn_anomaly.evaluation.datasets import load_fl_cells  # noqa: E402
from napari_supn_anomaly.models import load_model  # noqa: E402
from napari_supn_anomaly.pipeline.self_calibration import HEALTHY_DOF, choose_threshold, fit_healthy  # noqa: E402
from napari_supn_anomaly.pipeline.stacks import calibration_inputs  # noqa: E402
from napari_supn_anomaly.scoring import resolve  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
START, END = "<!-- fluorescence-rate -->", "<!-- /fluorescence-rate -->"
PARASITEMIA = (0.0, 0.05, 0.10, 0.20)
RATES = (0.05, 0.01)


def scores_of(scorer, crops, masks) -> np.ndarray:
    return np.concatenate([b.scores for _, b in scorer.iter_batches(crops, masks)]).astype(float)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="fluorescence-rbc")
    ap.add_argument("--draws", type=int, default=200)
    ap.add_argument("--write", type=Path, default=None)
    args = ap.parse_args(argv)
    t0 = time.perf_counter()
    model = load_model(args.model)
    scorer = resolve(model)
    val = load_fl_cells(DATA, "validation")
    crops, masks = model_crops(model, val)
    labels = np.asarray(val.labels)
    v = scores_of(scorer, crops, masks)
    _, (held_crops, held_masks) = fluorescence_split(model, DATA)
    held = scores_of(scorer, held_crops, held_masks)
    unseen, infected = v[labels == 0], v[labels == 1]
    healthy = np.r_[unseen, held]
    rng = np.random.default_rng(0)
    lines = ["| infected share | asked | threshold from | slides | healthy flagged: 50 unused cells | 132 held-back cells | infected flagged |",
             "| --- | --- | --- | --- | --- | --- | --- |"]
    for share in PARASITEMIA:
        k = int(round(share * len(healthy) / (1 - share)))
        draws = 1 if k == 0 else args.draws
        for fpr in RATES:
            rows = {"as detection chooses": [], "slide fit only": []}
            methods = []
            for _ in range(draws):
                pick = rng.choice(len(infected), size=min(k, len(infected)), replace=False)
                slide = np.r_[healthy, infected[pick]]
                choice = choose_threshold(slide, fpr, **calibration_inputs(scorer))
                methods.append(choice.method)
                for name, thr in (("as detection chooses", choice.threshold),
                                  ("slide fit only", fit_healthy(slide).threshold(fpr))):
                    rows[name].append(((unseen >= thr).mean(), (held >= thr).mean(),
                                       (infected[pick] >= thr).mean() if k else np.nan))
            for name, r in rows.items():
                r = np.asarray(r)
                src = name if name == "slide fit only" else \
                    f"as detection chooses (model's calibration on {methods.count('model')} of {draws})"
                inf = "-" if not k else f"{100 * np.nanmean(r[:, 2]):.0f}%"
                lines.append(f"| {100 * share:.0f}% ({k} cells) | {100 * fpr:.0f}% | {src} | {draws} | "
                             f"{100 * r[:, 0].mean():.1f}% | {100 * r[:, 1].mean():.1f}% | {inf} |")
    seconds = time.perf_counter() - t0
    head = (f"`python benchmarks/self_calibration_fluorescence.py --draws {args.draws}`, "
            f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()} (2-core CPU, no GPU), "
            f"{seconds:.0f} s. Model `{args.model}`, scorer `{scorer.name}`; healthy log scores assumed t "
            f"with {HEALTHY_DOF} degrees of freedom. Median score: 50 unused healthy cells "
            f"{np.median(unseen):.2f}, 132 held-back {np.median(held):.2f}, 50 infected {np.median(infected):.2f}.")
    text = "\n".join([head, "", *lines])
    print(text)
    if args.write:
        replace_block(args.write, START, END, "\n".join(
            [START, "## Fluorescence cells (the shape was chosen on MalariaNet)", "", text, END]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
