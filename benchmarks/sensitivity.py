"""What each sensitivity (target share of healthy cells flagged) means for the built-in models: false
candidates per 100 healthy cells and parasites found, on cells the models never trained on, and
on the built-in samples (fluorescence: synthetic; Giemsa: real cells of the model's slide). The
Detect widget's default (pipeline/sensitivity.py) is chosen from this page.

    python benchmarks/sensitivity.py --write docs/benchmarks/sensitivity.md

Real cells: `supn_fl_cells/validation` (50 healthy, 50 infected) for fluorescence-rbc and every
cell of the 6 held-out fields of `plymouth_pf_giemsa_cells` for giemsa-rbc (neither model
trained or was calibrated on them), scored as crops at the model's scale with its default scorer.
A false candidate is a region of the map at or above the threshold inside a healthy cell (as the
pipeline draws them); a cell is flagged when it holds one.
"""
from __future__ import annotations

import argparse
import os
import platform
import time
from datetime import date
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

from napari_supn_anomaly.evaluation.builtin_splits import fluorescence_split, giemsa_held_back, validation_cells
from napari_supn_anomaly.models import load_model
from napari_supn_anomaly.pipeline.sensitivity import DEFAULT_FPR, STAINED_DEFAULT_FPR, default_fpr
from napari_supn_anomaly.pipeline.stacks import DetectSettings, calibration_inputs, detect
from napari_supn_anomaly.sample_data import load_sample
from napari_supn_anomaly.scoring import resolve
from napari_supn_anomaly.synthetic import match_parasites

DATA = Path(os.environ.get("SUPN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
FPRS = tuple(sorted({0.01, 0.02, 0.05, 0.1, 0.15, 0.2, DEFAULT_FPR, STAINED_DEFAULT_FPR}))
SAMPLE_OF = {"fluorescence-rbc": "fluorescence", "giemsa-rbc": "giemsa"}
AT_DEFAULT: list[str] = []  # what the default sensitivity gives, model by model


def regions_per_cell(maps: np.ndarray, masks: np.ndarray, threshold: float) -> np.ndarray:
    """Candidate regions in each crop: 8-connected pixels of the map at or above the threshold, in the cell."""
    eight = np.ones((3, 3), bool)
    return np.array([ndi.label((m >= threshold) & k, structure=eight)[1] for m, k in zip(maps, masks)])


def held_back(model, root: Path):
    """The healthy cells the model's threshold was set on (held back from its training)."""
    return giemsa_held_back(model, root) if model.name == "giemsa-rbc" else fluorescence_split(model, root)[1]


def real_rows(model, root: Path) -> tuple[list[str], str]:
    crops, masks, labels = validation_cells(model, root)
    cal_crops, cal_masks = held_back(model, root)
    scorer = resolve(model)
    scored = scorer.score(crops, masks, batch_size=64)
    cal = scorer.score(cal_crops, cal_masks, batch_size=64)
    healthy, infected = labels == 0, labels == 1
    rows = []
    for fpr in FPRS:
        thr = scorer.threshold_for_fpr(fpr)
        regions = regions_per_cell(scored.maps[healthy], masks[healthy], thr)
        cal_regions = regions_per_cell(cal.maps, cal_masks, thr)
        found = 100 * float((scored.scores[infected] >= thr).mean())
        if fpr == default_fpr(model.modality):
            AT_DEFAULT.append(f"`{model.name}` at {100 * fpr:g}%: {100 * cal_regions.mean():.1f} false candidates per 100 held-back "
                              f"healthy cells, {100 * regions.mean():.1f} per 100 unseen ones, {found:.0f}% of "
                              "unseen infected cells found")
        rows.append(f"| {100 * fpr:g}% | {thr:.3g} | {100 * cal_regions.mean():.1f} | "
                    f"{100 * (cal_regions > 0).mean():.1f} | {100 * regions.mean():.1f} | "
                    f"{100 * (regions > 0).mean():.1f} | {found:.0f}% |")
    what = (f"{len(cal_crops)} held-back healthy cells (the threshold was set on them); unseen: "
            f"{int(healthy.sum())} healthy and {int(infected.sum())} infected cells; scorer `{scorer.name}`")
    return rows, what


def sample_rows(model) -> tuple[list[str], str, str]:
    sample = load_sample(SAMPLE_OF[model.name])
    scorer = resolve(model)
    base = detect(sample.image, sample.axes, scorer, settings=DetectSettings(device="cpu"))
    rows = []
    for fpr in FPRS:
        # as the Detect widget's slider cuts it: calibrated as detection chose (the slide's own
        # cells, or the model's calibration when they score like its healthy cells)
        result = base.recalibrated(fpr, **calibration_inputs(scorer))
        regions = result.candidate_mask()
        m = None
        for flat in range(result.n_planes):
            plane = match_parasites(regions[result.plane_index(flat)], sample.truth(flat))
            m = plane if m is None else m + plane
        rows.append(f"| {100 * fpr:g}% | {result.threshold:.3g} | {100 * m.false_per_healthy_cell:.1f} | "
                    f"{m.n_false} | {m.n_found}/{m.n_parasites} ({100 * m.recall:.0f}%) |")
        if fpr == default_fpr(model.modality):
            AT_DEFAULT.append(f"its sample: {m.n_found} of {m.n_parasites} true {sample.truth_kind} found, "
                              f"{m.n_false_cells} of {m.n_healthy_cells} healthy cells with a false candidate")
    return rows, (f"`{sample.path.name}`, {m.n_healthy_cells} healthy cells, {m.n_parasites} true {sample.truth_kind}; "
                  f"thresholds as detection and the Detect widget's slider set them ({base.calibration.describe_source()})"), \
        sample.truth_kind


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", type=Path, default=DATA)
    p.add_argument("--models", nargs="+", default=["fluorescence-rbc", "giemsa-rbc"])
    p.add_argument("--write", type=Path, default=None, help="write the Markdown page here")
    args = p.parse_args(argv)
    torch.set_num_threads(2)
    started = time.perf_counter()
    lines = ["# Sensitivity: what the share of healthy cells flagged means", "",
             f"Date {date.today()}. Machine: {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
             "CPU.", "", "Command:", "", "```bash",
             "python benchmarks/sensitivity.py --write docs/benchmarks/sensitivity.md", "```", "",
             (__doc__.split("\n\n")[2]).replace("\n", " "), "",
             "The default of the Detect widget, `detect`, `score-cells` and the demo is the model's "
             f"(`pipeline/sensitivity.py`): **{100 * STAINED_DEFAULT_FPR:g}%** for a stained-smear model "
             f"(`giemsa-rbc`), **{100 * DEFAULT_FPR:g}%** for fluorescence and unstained ones.", ""]
    for name in args.models:
        model = load_model(name)
        rows, what = real_rows(model, args.data_root)
        lines += [f"## `{name}`", "", f"Real cells: {what}.", "",
                  "| sensitivity | threshold | held back: false candidates per 100 healthy | held back: healthy "
                  "flagged (%) | unseen: false candidates per 100 healthy | unseen: healthy flagged (%) | unseen: "
                  "infected found |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: |", *rows, ""]
        rows, what, truth_kind = sample_rows(model)
        lines += [f"Built-in sample: {what}.", "",
                  f"| sensitivity | threshold | healthy cells with a false candidate, per 100 | false candidate regions "
                  f"| {truth_kind} found |", "| ---: | ---: | ---: | ---: | ---: |", *rows, ""]
    lines += ["## At the defaults", "", *(f"- {line}" for line in AT_DEFAULT), "",
              f"{100 * DEFAULT_FPR:g}% for fluorescence is chosen so that the widget's first run shows most of the "
              "sample's parasites with few false candidates, and so that what the widget says (\"about N false "
              "candidates per 100 healthy cells\", N being the setting) holds on the held-back healthy cells. A "
              "higher setting finds more faint fluorescence parasites at the price of more false candidates. "
              "Unseen cells of another acquisition (here the fluorescence validation set) can give more false "
              "candidates than the setting says.", "",
              f"{100 * STAINED_DEFAULT_FPR:g}% for stained smears (since 2026-12-02; 5% before) is the issue's \"at "
              "most 1 false candidate per 100 cells\": the stain makes parasites stand out, so on the model's own "
              "slide 1% loses few infected cells (first Giemsa table). On other labs' slides it costs more "
              "parasites, and it still flags more than 1 in 100 on another lab's uninfected smear "
              "([generalisation.md](generalisation.md), 'The default sensitivity of a stained-smear model').", "",
              ("The Giemsa sample is small (86 healthy cells): a few cells more or less flagged move its rate "
               "by several per 100. Its cells are real cells of the model's own slide, from fields it never "
               "trained on; until 2026-12-02 it was a synthetic drawing whose healthy cells `giemsa-rbc` found "
               "unusual. On real held-back cells the setting holds (first table)."), "",
              f"Run time {time.perf_counter() - started:.0f} s.", ""]
    text = "\n".join(lines)
    print(text)
    if args.write:
        args.write.write_text(text)


if __name__ == "__main__":
    main()
