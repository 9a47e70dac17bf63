"""Plugin benchmark: time for a 2048x2048 fluorescence field with about 300 cells (segmentation,
scoring, paste-back), and parasites found on the synthetic samples.

    python benchmarks/field_timing.py --model fluorescence-rbc [--write docs/benchmarks/plugin.md]

Everything is synthetic and seeded, so the numbers can be re-measured on a quiet machine.
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

from napari_supn_anomaly.evaluation.handmade import bright_spot_map
from napari_supn_anomaly.models import load_model
from napari_supn_anomaly.pipeline.candidates import candidate_regions
from napari_supn_anomaly.pipeline.stacks import DetectSettings, detect
from napari_supn_anomaly.sample_data import SAMPLES, load_sample
from napari_supn_anomaly.scoring import resolve
from napari_supn_anomaly.synthetic import make_field, match_parasites


def load_average() -> list[float]:
    """1, 5 and 15 minute load averages ([] where /proc/loadavg is missing)."""
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def time_field(model, n_cells: int, size: int, diameter: float, repeats: int, batch_size: int):
    field = make_field((size, size), "fluorescence", cell_diameter=diameter, n_cells=n_cells,
                       infected_fraction=0.15, seed=2048)
    scorer = resolve(model)
    settings = DetectSettings(device="cpu", batch_size=batch_size, cell_diameter=None)
    rows = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        result = detect(field.image, "YX", scorer, settings=settings)
        total = time.perf_counter() - t0
        t = result.provenance["timings_s"]
        rows.append({"segmentation": t["segmentation_s"], "rescale": t["rescale_s"], "scoring": t["score_s"],
                     "paste-back": t["paste_s"], "tables": t["tables_s"], "total": total,
                     "cells": len(result.cell_table)})
    match = match_parasites(result.candidate_mask(), field)
    return rows, result, match, field


def match_sample(sample, heatmaps: np.ndarray, cells: np.ndarray, threshold: float):
    total = None
    for plane in range(sample.n_planes):
        heat, lab = (heatmaps[plane], cells[plane]) if sample.n_planes > 1 else (heatmaps, cells)
        m = match_parasites(candidate_regions(heat, lab, threshold), sample.truth(plane))
        total = m if total is None else total + m
    return total


def false_regions_per_20(m) -> float:
    """False candidate regions per 20 healthy cells: this page's yardstick (the target's "1 false
    candidate per 20 healthy cells"), counted in regions as ``best_trade_off`` counts them."""
    return 20 * m.n_false / m.n_healthy_cells if m.n_healthy_cells else float("nan")


def best_trade_off(sample, heatmaps: np.ndarray, cells: np.ndarray):
    """The most parasites found with at most one false candidate per 20 healthy cells, over every
    threshold (chosen with hindsight: an upper bound for any way of setting it)."""
    values = heatmaps[cells > 0]
    best = None
    for threshold in np.unique(np.quantile(values, 1 - np.logspace(-5.5, -0.5, 300))):
        m = match_sample(sample, heatmaps, cells, threshold)
        if 20 * m.n_false <= m.n_healthy_cells and (best is None or m.n_found > best[1].n_found):
            best = (float(threshold), m)
    return best


def sample_detection(model, key: str, fprs):
    sample = load_sample(key)
    base = detect(sample.image, sample.axes, resolve(model), settings=DetectSettings(device="cpu"))
    out = []
    for fpr in fprs:
        scorer = base.provenance["scorer"]
        result = base.with_threshold(model.threshold_for_fpr(fpr, scorer))
        total = match_sample(sample, result.heatmap, result.cells, result.threshold)
        out.append((fpr, result.threshold, total, int(result.cell_table["candidate"].sum()), len(result.cell_table)))
    return sample, out, base


def large_plane_lines(model, size: int, fpr: float = 0.10) -> list[str]:
    """One plane above the tiling limit: time, peak memory (ru_maxrss) and parasites found."""
    import resource

    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1) as pool:  # the generator's own peak memory stays in its process
        field = pool.submit(make_field, (size, size), "fluorescence", cell_diameter=40,
                            n_cells=int(6500 * (size / 6144) ** 2), seed=5).result()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    t0 = time.perf_counter()
    result = detect(field.image, "YX", resolve(model), settings=DetectSettings(device="cpu", fpr=fpr))
    seconds = time.perf_counter() - t0
    rss_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    m = match_parasites(result.candidate_mask(), field)
    t = result.provenance["timings_s"]
    return [f"## A {size}x{size} plane (processed in tiles)", "",
            f"`synthetic.make_field` seed 5, cells of 40 px, model `{model.name}`, target healthy FPR {fpr:g}: "
            f"{len(result.cell_table)} cells in {seconds:.1f} s (segmentation {t['segmentation_s']:.1f} s, scoring "
            f"{t['score_s']:.1f} s, tables {t['tables_s']:.1f} s); peak memory of the process "
            f"{rss_after / 2**20:.2f} GB (it held {rss_before / 2**20:.2f} GB before detection); {m.summary()}.", ""]


def other_camera_lines(model, fpr: float = 0.10) -> list[str]:
    """The fluorescence sample as a 12-bit camera would record it (x16 + 300), with and without
    intensity matching, against the 8-bit original."""
    sample = load_sample("fluorescence")
    wide = sample.image.astype(np.uint16) * 16 + 300
    lines = [f"### The fluorescence sample as a 12-bit camera would record it (x16 + 300), model `{model.name}`, "
             f"target healthy FPR {fpr:g}", "",
             "| image | intensity matching | matched | parasites found | false candidates | false per 20 healthy |",
             "| --- | --- | --- | ---: | ---: | ---: |"]
    for name, image, mode in (("8-bit original", sample.image, "auto"), ("12-bit copy", wide, "off"),
                              ("12-bit copy", wide, "auto")):
        r = detect(image, sample.axes, resolve(model), settings=DetectSettings(device="cpu", fpr=fpr, intensity=mode))
        m = match_sample(sample, r.heatmap, r.cells, r.threshold)
        applied = any(p["applied"] for p in r.provenance["intensity_matching"]["planes"])
        lines.append(f"| {name} | {mode} | {'yes' if applied else 'no'} | {m.n_found}/{m.n_parasites} | {m.n_false} | "
                     f"{false_regions_per_20(m):.2f} |")
    return lines + [""]


def trade_off_lines(sample, base, model_name: str) -> list[str]:
    """Best trade-off of the model and of the hand-made spot detector of TARGETS.md, same cells."""
    planes = sample.image if sample.n_planes > 1 else sample.image[None]
    dog = np.stack([bright_spot_map(p) for p in planes]).reshape(base.heatmap.shape)
    lines = ["Best trade-off within the target (at most 1 false candidate per 20 healthy cells), threshold "
             "chosen with hindsight, on the pipeline's own cells:", "",
             "| detector | threshold | parasites found | recall | false candidates | false per 20 healthy |",
             "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for name, heat in ((f"`{model_name}` ({base.provenance['scorer']})", base.heatmap),
                       ("hand-made: max of `gaussian(x, 1) - gaussian(x, 4)` in the cell (TARGETS.md)", dog)):
        best = best_trade_off(sample, heat, base.cells)
        if best is None:
            lines.append(f"| {name} | - | none within the target | | | |")
            continue
        thr, m = best
        lines.append(f"| {name} | {thr:.3g} | {m.n_found}/{m.n_parasites} | {100 * m.recall:.0f}% | {m.n_false} | "
                     f"{false_regions_per_20(m):.2f} |")
    return lines + [""]


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", required=True, help="fluorescence model (built-in name or file)")
    p.add_argument("--giemsa-model", default=None, help="optional Giemsa model for the Giemsa sample")
    p.add_argument("--also-model", default=None, help="a second fluorescence model for the sample table")
    p.add_argument("--cells", type=int, default=300)
    p.add_argument("--size", type=int, default=2048)
    p.add_argument("--diameter", type=float, default=64.0, help="cell diameter in the field, px")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--large-size", type=int, default=0,
                   help="also time one plane of this size, processed in tiles (e.g. 6144; 0: skip)")
    p.add_argument("--write", default=None, help="write the Markdown report here")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    model = load_model(args.model)
    load_before = load_average()
    rows, result, match, field = time_field(model, args.cells, args.size, args.diameter, args.repeats, args.batch_size)
    load_after = load_average()
    best = min(rows, key=lambda r: r["total"])
    lines = [
        "# Plugin benchmarks: whole fields",
        "",
        f"Date {date.today().isoformat()}. Machine: 2-core x86_64 CPU, 24 GB, no GPU ({platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} logical CPUs, torch {torch.__version__}, {torch.get_num_threads()} torch threads).",
        f"Load average before / after: {load_before} / {load_after}"
        + (" (the machine was shared with other jobs: re-run on a quiet machine for clean timings)."
           if load_before and load_before[0] > 1.5 else "."),
        "",
        "Command:",
        "",
        "```bash",
        f"python benchmarks/field_timing.py --model {args.model} --cells {args.cells} --size {args.size} "
        f"--diameter {args.diameter:g} --repeats {args.repeats}" + (f" --giemsa-model {args.giemsa_model}" if args.giemsa_model else "")
        + (f" --also-model {args.also_model}" if args.also_model else "")
        + (f" --large-size {args.large_size}" if args.large_size else "")
        + (f" --threads {args.threads}" if args.threads else "") + (f" --write {args.write}" if args.write else ""),
        "```",
        "",
        f"## A {args.size}x{args.size} fluorescence field with {args.cells} cells",
        "",
        f"Synthetic field (`synthetic.make_field`, seed 2048, cells of {args.diameter:g} px, rescaled by "
        f"{result.provenance['scale']:.3f} to the model's {model.cell_diameter_px:.0f} px cells in "
        f"{model.crop_size} px crops), model `{model.name}`, scorer `{result.provenance['scorer']}`, CPU, "
        f"batch {args.batch_size}. {best['cells']} cells were analysed (cells cut by the field edge are left out). "
        f"Best of {args.repeats} runs, seconds:",
        "",
        "| step | seconds |",
        "| --- | ---: |",
    ]
    for key in ("segmentation", "rescale", "scoring", "paste-back", "tables", "total"):
        lines.append(f"| {key} | {best[key]:.2f} |")
    totals = ", ".join(f"{r['total']:.2f}" for r in rows)
    lines += ["", f"All runs (total s): {totals}; "
              f"{best['cells'] / best['scoring']:.0f} cells per second in scoring.",
              "", f"On this field: {match.summary()}.", ""]
    if args.large_size:
        lines += large_plane_lines(model, args.large_size)
    lines += ["## Parasites found on the built-in synthetic samples", "",
              "A true parasite is found when a candidate region touches it (2 px tolerance); a false candidate is "
              "a region that touches no true parasite (extra regions inside infected cells count as false too). "
              "Healthy cells cut by the field edge are not counted (the pipeline leaves them out).", ""]
    targets = [("fluorescence", model)]
    if args.also_model:
        targets.append(("fluorescence", load_model(args.also_model)))
    if args.giemsa_model:
        targets.append(("giemsa", load_model(args.giemsa_model)))
    for key, m in targets:
        sample, out, base = sample_detection(m, key, (0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.2, 0.3))
        lines += [f"### `{sample.path.name}` ({SAMPLES[key][3]}), model `{m.name}`", "",
                  "| target healthy FPR | threshold | parasites found | recall | false candidates | healthy cells | "
                  "false per 20 healthy | cells flagged |", "| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |"]
        for fpr, thr, t, flagged, n_cells in out:
            lines.append(f"| {fpr:.3f} | {thr:.3g} | {t.n_found}/{t.n_parasites} | {100 * t.recall:.0f}% | {t.n_false} | "
                         f"{t.n_healthy_cells} | {false_regions_per_20(t):.2f} | {flagged}/{n_cells} |")
        lines.append("")
        if key == "fluorescence":
            lines += trade_off_lines(sample, base, m.name)
            if m is model:
                lines += other_camera_lines(m)
    text = "\n".join(lines)
    print(text)
    if args.write:
        Path(args.write).parent.mkdir(parents=True, exist_ok=True)
        Path(args.write).write_text(text + "\n")


if __name__ == "__main__":
    main()
