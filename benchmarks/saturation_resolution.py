"""Where `supn+saturation` measures a cell's stain saturation: on the model's crops, or on the field.

    python benchmarks/saturation_resolution.py [--models giemsa-rbc FILE ...] [--cells runs/gen/cells] [--jobs 2]

``--models``: the shipped file and other builds of its recipe (``benchmarks/build/giemsa_model.py
--arch fast --seed 0 2``, their stain stored by ``benchmarks/build/stain_reference.py --model FILE``),
for the spread between seeds. A file without a `supn+saturation` calibration is calibrated here, in
memory, on its own held-back healthy cells (``giemsa_held_back``, as the shipped file was).

The crops the model scores are resampled so a cell is the model's size (36 px for `giemsa-rbc`);
on the field the saturation is measured at the field's own resolution and before the stain
matching. Both variants run the package's own detection (default settings: 1%, the slide's
self-calibration, stain matching) on the same found cells; only where the saturation is measured
differs (the "crops" variant is the scorer with its field measurement switched off). Writes
runs/generalisation/saturation_resolution.json and the block of docs/benchmarks/generalisation.md
between its markers.

Settings were chosen nowhere here: the weight and percentile are the ones shipped before this
comparison (chosen on the MalariaNet training and selection slides with the crop measurement).
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import multiprocessing
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import torch
from generalisation import (
    DATA,
    PAGE,
    WORK,
    _load,
    _machine,
    cell_text,
    field_metrics,
    field_source,
    spread_text,
)
from page_block import replace_block

from napari_supn_anomaly.evaluation.builtin_splits import giemsa_held_back
from napari_supn_anomaly.scoring import calibrate, cell_terms, resolve
from napari_supn_anomaly.scoring.registry import SUPN_SATURATION

SOURCES = {"train": "MalariaNet Trip_038, Trip_062, Trip_083",
           "selection": "MalariaNet Trip_064, Trip_065",
           "test": "MalariaNet test slides Trip_022, Trip_053, Trip_073, Trip_804",
           "chula": "Chula, 40 fields (no parasites)"}
VARIANTS = ("crops", "field")
SHIPPED_TERM = cell_terms.CELL_TERMS[SUPN_SATURATION]
START, END = "<!-- saturation-resolution -->", "<!-- /saturation-resolution -->"


def _measure(model_name: str, variant: str, source_key: str, cache: str) -> tuple[str, str, str, dict]:
    torch.set_num_threads(1)
    # in this process only: with "crops" the term is measured on the crops, as before
    cell_terms.CELL_TERMS[SUPN_SATURATION] = dataclasses.replace(
        SHIPPED_TERM, measure_field=None if variant == "crops" else SHIPPED_TERM.measure_field)
    source = field_source(DATA, source_key, Path(cache))
    model = _load(model_name)
    if SUPN_SATURATION not in model.metadata.get("calibration", {}):
        crops, masks = giemsa_held_back(model, DATA)
        calibrate(resolve(model, SUPN_SATURATION, require_calibration=False), crops, masks)
    metrics = field_metrics(model, SUPN_SATURATION, source)
    print(model_name, variant, source_key, round(metrics.get("auroc", float("nan")), 4), flush=True)
    return model_name, variant, source_key, metrics


def block(results: dict, run: dict) -> str:
    lines = [START, "### The saturation term at the field's resolution (`supn+saturation`)", "",
             f"{run['date']}, {run['machine']}, {run['minutes']:.0f} min. Command: `{run['command']}`.", "",
             "Both rows of a model run the package's detection with default settings on the same found cells; "
             "'crops': the saturation measured on the crops the model scores (resampled to its cell size, after "
             "the stain matching), as before 2026-12-04; 'field': measured on the field as recorded, at its own "
             "resolution (what `detect` does since). Nothing was tuned on these slides for this comparison.", "",
             "| model, where the saturation is measured | " + " | ".join(SOURCES.values()) + " |",
             "| --- |" + " --- |" * len(SOURCES)]
    for model_name, per_variant in results.items():
        for variant in VARIANTS:
            row = per_variant.get(variant, {})
            lines.append(f"| {model_name}, {variant} | "
                         + " | ".join(cell_text(row[s]) if s in row else "" for s in SOURCES) + " |")
    if len(results) > 1:
        for variant in VARIANTS:
            rows = [per_variant[variant] for per_variant in results.values() if variant in per_variant]
            lines.append(f"| **mean +- sd over the {len(rows)} files, {variant}** | "
                         + " | ".join(spread_text([r[s] for r in rows if s in r]) for s in SOURCES) + " |")
    return "\n".join(lines + [END])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", nargs="+", default=["giemsa-rbc"])
    p.add_argument("--cells", type=Path, default=Path("runs/gen/cells"))
    p.add_argument("--jobs", type=int, default=2)
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    started = time.perf_counter()
    jobs = [(m, v, s, str(args.cells)) for m in args.models for v in VARIANTS for s in SOURCES]
    results: dict = {}
    with multiprocessing.get_context("fork").Pool(min(len(jobs), args.jobs), maxtasksperchild=1) as pool:
        for model_name, variant, source_key, metrics in pool.starmap(_measure, jobs, chunksize=1):
            results.setdefault(model_name, {}).setdefault(variant, {})[source_key] = metrics
    run = {"date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "machine": _machine(),
           "minutes": (time.perf_counter() - started) / 60,
           "command": "python benchmarks/saturation_resolution.py " + " ".join(argv)}
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "saturation_resolution.json").write_text(json.dumps({"run": run, "results": results}, indent=1))
    text = block(results, run)
    replace_block(PAGE, START, END, text)
    print(text)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
