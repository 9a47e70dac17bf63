"""The Giemsa network's architecture: the shipped full-resolution decoders against the fast ones (issue 14),
several seeds each, on every source, and how fast each scores on a CPU.

    python benchmarks/build/giemsa_model.py --arch full-resolution --seed 1 2 --out-dir runs/g14/models
    python benchmarks/build/giemsa_model.py --arch fast --seed 0 1 2 --out-dir runs/g14/models
    python benchmarks/giemsa_arch.py --models runs/g14/models --write docs/benchmarks/giemsa_arch.md

Model files ``giemsa-<arch>-<aug|noaug>-s<seed>`` in ``--models``, one row per file and one per recipe (``giemsa-full-resolution-noaug-s0`` is a
copy of the file shipped before, which that build's seed 0 made). Each is measured with its default scorer (SUPN) and
rule (purple) and the pipeline's default detection, on cells found by the package's segmenter (cached in
``--cells``): the Plymouth validation fields (training slide, fields held out), the MalariaNet selection
slides, the MalariaNet test slides and the Chula fields of benchmarks/generalisation.py (no parasites:
every candidate is false). Speed: crops per CPU second on one thread, interleaved repetitions.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
from pathlib import Path

import numpy as np
import torch

from generalisation import DATA, _table_row, field_source, plymouth_cells
from napari_supn_anomaly.models import AnomalyModel
from napari_supn_anomaly.scoring import resolve
from page_block import replace_block
from scorer_speed import crop_rates, real_crops

REPO = Path(__file__).resolve().parents[1]
SOURCES = ("selection", "test", "chula")


def cpu_rates(paths: list[Path], repeats: int) -> dict[str, list[float]]:
    """Crops per CPU second of each file's default scorer, one thread, batch 32, runs interleaved."""
    torch.set_num_threads(1)
    models = {p.stem: AnomalyModel.from_file(p) for p in paths}
    crops, masks, _ = real_crops(next(iter(models.values())), 512)
    times = crop_rates({k: resolve(m) for k, m in models.items()}, crops, masks, [32], repeats)
    return {k: [len(crops) / cpu for _, cpu in times[(k, 32)]] for k in models}


COLUMNS = (("plymouth", "auroc", "Plymouth AUROC"), ("plymouth", "ap", "Plymouth AP"),
           ("selection", "auroc", "MN selection AUROC"), ("selection", "parasites_on_candidate_at_2",
                                                           "MN selection parasites at 2 false/100"),
           ("test", "auroc", "MN test AUROC"), ("test", "ap", "MN test AP"),
           ("test", "parasites_on_candidate_at_2", "MN test parasites at 2 false/100"),
           ("test", "false_per_100", "MN test false/100 at the default"),
           ("test", "pixel_ap_cells", "MN test pixel AP in cells"),
           ("chula", "false_per_100", "Chula false/100 at the default"),
           ("speed", "median", "crops per CPU s"))


def _value(row: dict, source: str, metric: str):
    part = row["crops_per_cpu_s"] if source == "speed" else row[source]
    return part.get(metric)


def _digits(source: str, metric: str) -> int:
    return 0 if source == "speed" else 1 if metric == "false_per_100" else 3


def page_lines(out: dict, shipped: str) -> list[str]:
    head = "| recipe | seed | " + " | ".join(c[2] for c in COLUMNS) + " |"
    lines = [head, "| --- | --- |" + " ---: |" * len(COLUMNS)]
    recipes = sorted({k.rsplit("-s", 1)[0] for k in out}, key=lambda r: ("fast" in r, r))
    for recipe in recipes:
        arch = recipe.removeprefix("giemsa-")
        keys = sorted(k for k in out if k.rsplit("-s", 1)[0] == recipe)
        for key in keys:
            cells = []
            for source, metric, _ in COLUMNS:
                v = _value(out[key], source, metric)
                cells.append("n/a" if v is None else f"{v:.{_digits(source, metric)}f}")
            name = f"**{arch}** (shipped)" if key == shipped else arch
            lines.append(f"| {name} | {key.rsplit('-s', 1)[1]} | " + " | ".join(cells) + " |")
        cells = []
        for source, metric, _ in COLUMNS:
            vals = [_value(out[k], source, metric) for k in keys]
            vals = [v for v in vals if v is not None]
            digits = _digits(source, metric)
            cells.append(f"{np.mean(vals):.{digits}f} +- {np.std(vals):.{digits}f}" if vals else "n/a")
        lines.append(f"| {arch}, mean +- sd | {len(keys)} seeds | " + " | ".join(cells) + " |")
    return lines


TABLE_START, TABLE_END = "<!-- table: benchmarks/giemsa_arch.py -->", "<!-- end of table -->"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", type=Path, default=REPO / "runs" / "g14" / "models")
    p.add_argument("--cells", type=Path, default=REPO / "runs" / "g14" / "cells")
    p.add_argument("--json", type=Path, nargs="+", default=[REPO / "runs" / "g14" / "arch.json"],
                   help="where the measurements go (the first file); with --from-json, the files to tabulate")
    p.add_argument("--from-json", action="store_true", help="write the table from --json without measuring")
    p.add_argument("--shipped", default="giemsa-fast-noaug-s1", help="the file shipped as giemsa-rbc (its stem)")
    p.add_argument("--write", type=Path, default=None, help="write the table here (Markdown)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--repeats", type=int, default=7)
    args = p.parse_args(argv)
    if args.from_json:
        out = {k: v for path in args.json for k, v in json.loads(path.read_text()).items()}
    else:
        paths = sorted(args.models.glob("giemsa-*-s*.safetensors"))
        ply = plymouth_cells(DATA)
        sources = {k: field_source(DATA, k, args.cells) for k in SOURCES}
        out = {}
        # one forked process of one thread per model file (no torch operation ran before)
        with multiprocessing.get_context("fork").Pool(args.jobs) as pool:
            jobs = [(path.stem, str(path), "supn", ply, sources) for path in paths]
            for key, row in pool.starmap(_table_row, jobs):
                out[key.removesuffix("|supn")] = row
        for key, rates in cpu_rates(paths, args.repeats).items():
            out[key]["crops_per_cpu_s"] = {"median": statistics.median(rates), "best": max(rates)}
        args.json[0].parent.mkdir(parents=True, exist_ok=True)
        args.json[0].write_text(json.dumps(out, indent=1))
    lines = page_lines(out, args.shipped)
    print("\n".join(lines))
    if args.write:
        replace_block(args.write, TABLE_START, TABLE_END, "\n".join([TABLE_START, *lines, TABLE_END]))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
