"""What each share of healthy cells asked for flags on stained slides of other labs: the choice of a
stained-smear model's default sensitivity (``pipeline/sensitivity.py``), measured with several
builds of ``giemsa-rbc``'s recipe.

    python benchmarks/default_sensitivity.py [--models giemsa-rbc FILE ...] [--rates 0.005,0.01,0.02,0.05] \
        [--write docs/benchmarks/generalisation.md]

Every field of each source is detected once as `detect` does with no options (cells found by the
package's finder, each field one run, the slide's self-calibration, stain matching); its cells'
scores do not depend on the rate, so each rate is then cut from them with the pipeline's own
``choose_run_threshold``, per field, exactly as a detection at that rate would (checked: at the rate
the fields were detected at, the cut equals the detection's own candidates). Sources as in the
generalisation table (``generalisation.field_source``): MalariaNet slides Trip_038/062/083, the
selection slides, the test slides, and 40 uninfected Chula fields (every candidate a false one).
Numbers: false candidates per 100 healthy cells, and the share of parasites (connected components of
the masks) on a candidate cell; mean +- sd over the model files.

A second block, "Fields with few cells", cuts every field down to a random 10, 20, 30 or 45 of its
cells (``FEW_DRAWS`` draws each), too few for a slide fit, and compares, at the default rate, the
model's stored calibration as it is with the pipeline's (``choose_run_threshold``: that calibration
placed on the field's own healthy cells, ``self_calibration._moved_to_slide``).

Files for --models: ``benchmarks/build/giemsa_model.py --arch fast --seed N --out-dir DIR`` then
``benchmarks/build/stain_reference.py --model FILE`` (the shipped file is seed 1).
"""
from __future__ import annotations

import argparse
import multiprocessing
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi

sys.path.insert(0, str(Path(__file__).resolve().parent))
import generalisation as gen  # noqa: E402
from page_block import replace_block  # noqa: E402

from napari_supn_anomaly.evaluation.generalisation import detect_field  # noqa: E402
from napari_supn_anomaly.pipeline.sensitivity import default_fpr  # noqa: E402
from napari_supn_anomaly.pipeline.stacks import DetectSettings, choose_run_threshold  # noqa: E402
from napari_supn_anomaly.scoring import resolve  # noqa: E402

SOURCES = {"train": "MalariaNet Trip_038/062/083", "selection": "MalariaNet selection Trip_064/065",
           "test": "MalariaNet test slides (left out of every choice)", "chula": "Chula, 40 fields (uninfected)"}
DETECTED_AT = 0.05
START, END = "<!-- default-sensitivity -->", "<!-- /default-sensitivity -->"
FEW_START, FEW_END = "<!-- few-cells -->", "<!-- /few-cells -->"
FEW_SIZES = (10, 20, 30, 45)
FEW_DRAWS = 10
_FIELDS: dict[str, list] = {}  # source -> [(field, found cells)], loaded before the workers fork


def scored_field(job: tuple[str, str, int]) -> dict | None:
    """One field detected once: its cells' scores, which are healthy, and the cells each parasite touches."""
    model, source, i = job
    torch.set_num_threads(1)
    f, cells = _FIELDS[source][i]
    r = detect_field(resolve(gen._load(model)), f, cells, DetectSettings(fpr=DETECTED_AT))
    if r is None:
        return None
    touched = []
    if f.parasites is not None:
        comps, n = ndi.label(f.parasites)
        touched = [np.setdiff1d(np.unique(r.labels[comps == k]), [0]) for k in range(1, n + 1)]
    return {"model": model, "source": source, "ids": r.ids, "scores": r.scores, "candidate": r.candidate,
            "healthy": r.healthy, "touched": touched}


def cut(scorer, fields: list[dict], rate: float) -> dict:
    """False candidates per 100 healthy cells and the share of parasites on a candidate cell at ``rate``."""
    false = healthy = hit = parasites = 0
    for f in fields:
        flagged = f["scores"] >= choose_run_threshold(scorer, DetectSettings(fpr=rate), f["scores"]).threshold
        if rate == DETECTED_AT and not np.array_equal(flagged, f["candidate"]):
            raise RuntimeError("re-cut candidates differ from the detection's own")
        false += int((flagged & f["healthy"]).sum())
        healthy += int(f["healthy"].sum())
        ids = f["ids"][flagged]
        hit += sum(bool(np.isin(t, ids).any()) for t in f["touched"])
        parasites += len(f["touched"])
    return {"false_per_100": 100.0 * false / max(healthy, 1),
            "parasites": hit / parasites if parasites else float("nan")}


def few_cells(scorer, fields: list[dict], size: int, rate: float) -> dict:
    """Every field cut down to ``size`` random cells: false candidates per 100 healthy cells and parasites
    on a candidate, with the model's stored threshold as it is ("unmoved") and as the pipeline moves it."""
    rng = np.random.default_rng(size)
    unmoved = scorer.threshold_for_fpr(rate)
    counts = {k: np.zeros(4) for k in ("unmoved", "moved")}  # false, healthy, parasites hit, parasites
    for f in fields:
        for _ in range(FEW_DRAWS):
            keep = rng.choice(len(f["scores"]), min(size, len(f["scores"])), replace=False)
            scores, ids = f["scores"][keep], f["ids"][keep]
            choice = choose_run_threshold(scorer, DetectSettings(fpr=rate), scores)
            if choice.method != "model":
                raise RuntimeError(f"{len(keep)} cells were calibrated on the slide")
            touched = [t for t in f["touched"] if np.isin(t, ids).any()]
            for key, threshold in (("unmoved", unmoved), ("moved", choice.threshold)):
                flagged = scores >= threshold
                counts[key] += [int((flagged & f["healthy"][keep]).sum()), int(f["healthy"][keep].sum()),
                                sum(bool(np.isin(t, ids[flagged]).any()) for t in touched), len(touched)]
    return {k: {"false_per_100": 100.0 * c[0] / max(c[1], 1), "parasites": c[2] / c[3] if c[3] else float("nan")}
            for k, c in counts.items()}


def few_block(results: dict, models: list[str], rate: float, header: str) -> str:
    lines = [FEW_START, "## Fields with few cells", "", header, "",
             f"Every field cut down to a random n of its cells ({FEW_DRAWS} draws per field and n), fewer than a slide "
             f"fit needs, at the default {100 * rate:g}%: the model's stored calibration as it is (before), and placed "
             "on the field's own healthy cells (the pipeline's: its healthy centre, with a spread pooled between the "
             "field's and the model's, `self_calibration.pooled_spread`). False candidates per 100 healthy cells; parasites "
             f"on a candidate cell. Mean +- sd over {len(models)} model files.", "",
             "| cells | calibration | " + " | ".join(SOURCES.values()) + " |", "| ---: | --- |" + " --- |" * len(SOURCES)]
    for size in FEW_SIZES:
        for key, name in (("unmoved", "model's, as it is"), ("moved", "model's, moved (shipped)")):
            cells = []
            for source in SOURCES:
                cells.append(_false_and_parasites([results[(m, source, size)][key] for m in models], "%"))
            lines.append(f"| {size} | {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines + [FEW_END])


def _false_and_parasites(got: list[dict], parasites_unit: str) -> str:
    """One table cell over the model files: false per 100, and the parasites' share where there are any."""
    text = f"{_mean_sd([g['false_per_100'] for g in got], 1, 1)} false"
    if np.isfinite(got[0]["parasites"]):
        text += f"; {_mean_sd([g['parasites'] for g in got], 100, 0)}{parasites_unit}"
    return text


def _mean_sd(values: list[float], scale: float, digits: int) -> str:
    v = np.array(values, float) * scale
    return f"{v.mean():.{digits}f} +- {v.std(ddof=1):.{digits}f}" if len(v) > 1 else f"{v.mean():.{digits}f}"


def block(results: dict, models: list[str], rates: list[float], header: str) -> str:
    lines = [START, "## The default sensitivity of a stained-smear model", "", header, "",
             "False candidates per 100 healthy cells; parasites on a candidate cell (MalariaNet). Mean +- sd over "
             f"{len(models)} model files. The stained-smear default is {100 * default_fpr('brightfield-stained'):g}%.",
             "", "| asked | " + " | ".join(SOURCES.values()) + " |", "| ---: |" + " --- |" * len(SOURCES)]
    for rate in rates:
        cells = []
        for source in SOURCES:
            cells.append(_false_and_parasites([results[(m, source, rate)] for m in models], "% of parasites"))
        star = " (default)" if rate == default_fpr("brightfield-stained") else ""
        lines.append(f"| {100 * rate:g}%{star} | " + " | ".join(cells) + " |")
    lines += ["", "Per file (false per 100 / parasites on a candidate):", ""]
    for m in models:
        parts = [f"{100 * r:g}%: " + ", ".join(
            f"{k} {results[(m, k, r)]['false_per_100']:.1f}"
            + (f"/{100 * results[(m, k, r)]['parasites']:.0f}%" if np.isfinite(results[(m, k, r)]["parasites"]) else "")
            for k in SOURCES) for r in rates]
        lines.append(f"- `{Path(m).name}`: " + "; ".join(parts))
    return "\n".join(lines + [END])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["giemsa-rbc"], help="model names or files")
    p.add_argument("--rates", default="0.005,0.01,0.02,0.05")
    p.add_argument("--data-root", type=Path, default=gen.DATA)
    p.add_argument("--cells", type=Path, default=gen.REPO / "runs" / "gen" / "cells", help="found cells' cache")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--write", type=Path, default=None, help="put the block into this page")
    args = p.parse_args(argv)
    if not (args.data_root / "malarianet_giemsa_fields").exists():
        print(f"no data under {args.data_root}", file=sys.stderr)
        return 2
    started = time.perf_counter()
    rates = sorted({float(r) for r in args.rates.split(",")} | {DETECTED_AT})
    for source in SOURCES:
        _FIELDS[source] = gen.field_source(args.data_root, source, args.cells)
    jobs = [(m, s, i) for m in args.models for s in SOURCES for i in range(len(_FIELDS[s]))]
    with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
        scored = [f for f in pool.imap(scored_field, jobs, chunksize=2) if f is not None]
    results, few = {}, {}
    default = default_fpr("brightfield-stained")
    for m in args.models:
        scorer = resolve(gen._load(m))
        for s in SOURCES:
            fields = [f for f in scored if f["model"] == m and f["source"] == s]
            for rate in rates:
                results[(m, s, rate)] = cut(scorer, fields, rate)
            for size in FEW_SIZES:
                few[(m, s, size)] = few_cells(scorer, fields, size, default)
    header = (f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; {platform.machine()}, {os.cpu_count()}-core CPU, "
              f"no GPU; load average {os.getloadavg()[0]:.1f} at the end; {(time.perf_counter() - started) / 60:.0f} "
              "min. Command: `python benchmarks/default_sensitivity.py "
              + " ".join(argv if argv is not None else sys.argv[1:]) + "`.")
    text = block(results, args.models, rates, header)
    few_text = few_block(few, args.models, default, header)
    print(text + "\n\n" + few_text)
    if args.write:
        replace_block(args.write, START, END, text)
        replace_block(args.write, FEW_START, FEW_END, few_text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
