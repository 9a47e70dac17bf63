"""Stain matching (issue 12): ``giemsa-rbc`` on slides and labs it never saw, each field's stain
matched to the stain of the model's training cells (``models.data_range``) against the range
matching used before. Every number is the pipeline's default detection (``intensity="auto"``,
the slide's self-calibration) on the cells the package finds.

    python benchmarks/stain_matching.py --models giemsa-rbc runs/stain/models/giemsa-fast-noaug-s0.safetensors \
        runs/stain/models/giemsa-fast-noaug-s2.safetensors --jobs 2

Sources: MalariaNet selection slides and training slides (where the matching was chosen), the
MalariaNet test slides and 40 Chula fields (chose nothing). Writes ``docs/benchmarks/stain.md``.
``--scorer NAME`` scores with another calibrated scorer of the models (``supn``, ``diag``,
``ensemble``, ...) instead of each model's default.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generalisation import field_source, saturation_metrics  # noqa: E402
from page_block import replace_above  # noqa: E402

from napari_supn_anomaly.evaluation.generalisation import detect_field, summarise  # noqa: E402
from napari_supn_anomaly.models import load_model  # noqa: E402
from napari_supn_anomaly.scoring import resolve  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
PAGE = REPO / "docs" / "benchmarks" / "stain.md"
KEPT_FROM = "<!-- written by hand below -->"
SOURCES = {"selection": "MalariaNet selection slides Trip_064, Trip_065 (chose the matching)",
           "train": "MalariaNet slides Trip_038, Trip_062, Trip_083 (chose the matching; no model here learnt them)",
           "test": "MalariaNet test slides Trip_022, Trip_053, Trip_073, Trip_804 (chose nothing)",
           "chula": "Chula, 40 uninfected fields, each field alone (chose nothing; every candidate is false)"}
ARMS = ("range", "stain")
KEYS = ("auroc", "ap", "false_per_100", "parasites_on_candidate", "parasites_on_candidate_at_2",
        "pixel_ap_cells", "pixel_ap_field")
HEADS = ("cell AUROC", "AP", "false candidates per 100 healthy cells (default)", "parasites on a candidate (default)",
         "parasites on a candidate at 2 false/100", "pixel AP in cells", "pixel AP, whole field")


def arm_model(path: str, arm: str):
    """The model as it is (``stain``) or with its stain taken out, so detection matches the range only."""
    model = load_model(path)
    if model.data_range.stain is None:
        raise SystemExit(f"{path}: the model carries no stain (benchmarks/build/stain_reference.py)")
    if arm == "range":
        model = model.copy()
        data_range = model.data_range
        data_range.stain = None
        model.metadata["data_range"] = data_range.to_dict()
    return model


def run_one(job: tuple[str, str, str, str, str | None]) -> tuple[tuple[str, str, str], dict]:
    path, source_name, arm, cells, scorer_name = job
    import torch
    torch.set_num_threads(1)
    source = field_source(DATA, source_name, Path(cells))
    scorer = resolve(arm_model(path, arm), scorer_name)
    runs = [detect_field(scorer, f, c) for f, c in source]
    out = {"all": summarise(runs)}
    for slide in sorted({r.slide for r in runs if r is not None}):
        out[slide] = summarise([r for r in runs if r is not None and r.slide == slide])
    matching = [r.provenance for r in runs if r is not None]
    out["fields"] = len(matching)
    return (path, source_name, arm), out


def _fmt(values, pct: bool) -> str:
    values = [v for v in values if v is not None and np.isfinite(v)]
    if not values:
        return "-"
    scale = 100.0 if pct else 1.0
    digits = 1 if pct else 3
    mean = scale * float(np.mean(values))
    if len(values) == 1:
        return f"{mean:.{digits}f}"
    return f"{mean:.{digits}f} +- {scale * float(np.std(values, ddof=1)):.{digits}f}"


def page(results: dict, saturation: dict, models: list[str], arms: list[str], seconds: float, command: str) -> str:
    pct = {"parasites_on_candidate", "parasites_on_candidate_at_2"}
    lines = [
        "# Stain matching: other labs' smears in the model's colours (issue 12)", "",
        f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: {platform.machine()}, "
        f"{os.cpu_count()}-core CPU, no GPU; load average {os.getloadavg()[0]:.1f} at the end; {seconds / 60:.0f} min.",
        "", f"Command: `{command}`", "",
        "Models (the `fast` network, Plymouth slide 57546 only, no augmentation; seed 1 is the shipped "
        "`giemsa-rbc`): " + ", ".join(f"`{Path(m).name}`" for m in models) + ".", "",
        "Each model is measured twice with the pipeline's default detection: **range** matches a field's "
        "intensity range to the model's when it does not fit (what detection did before), **stain** "
        "matches its stain to the model's training cells in optical density when the stain does not fit "
        "(now the default of stained models). Mean +- sd over the models (seeds); parasites in %.", ""]
    for source, title in SOURCES.items():
        if not any(k[1] == source for k in results):
            continue
        lines += [f"## {title}", "", "| matching | " + " | ".join(HEADS) + " |", "| --- " * (len(HEADS) + 1) + "|"]
        for arm in arms:
            cells = [_fmt([results[(m, source, arm)]["all"].get(k) for m in models], k in pct) for k in KEYS]
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        if source in saturation:
            s = saturation[source]
            lines.append("| hand-made: HSV saturation | " + " | ".join(
                _fmt([s.get(k)], k in pct) if k not in ("false_per_100", "parasites_on_candidate") else "-"
                for k in KEYS) + " |")
        slides = sorted(k for k in results[(models[0], source, arms[-1])] if k not in ("all", "fields"))
        if len(slides) > 1 and len(arms) == 2:
            lines += ["", "Per slide (cell AUROC / parasites on a candidate at 2 false per 100 healthy cells of that "
                      "slide / pixel AP in cells), range -> stain, mean over the models:", ""]
            for slide in slides:
                parts = []
                for key, p in (("auroc", False), ("parasites_on_candidate_at_2", True), ("pixel_ap_cells", False)):
                    a = _fmt([results[(m, source, "range")][slide].get(key) for m in models], p).split(" +- ")[0]
                    b = _fmt([results[(m, source, "stain")][slide].get(key) for m in models], p).split(" +- ")[0]
                    parts.append(f"{a} -> {b}")
                lines.append(f"- {slide}: " + " / ".join(parts))
        lines.append("")
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["giemsa-rbc"], help="model names or files (one per seed)")
    p.add_argument("--sources", default=",".join(SOURCES))
    p.add_argument("--cells", type=Path, default=REPO / "runs" / "stain" / "cells")
    p.add_argument("--arms", default=",".join(ARMS), help="which matchings to measure (comma-separated)")
    p.add_argument("--scorer", default=None, help="a calibrated scorer of the models (default: each model's own)")
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--json", type=Path, default=REPO / "runs" / "stain" / "results.json")
    p.add_argument("--write", type=Path, default=PAGE)
    args = p.parse_args(argv)
    started = time.time()
    sources = [s for s in args.sources.split(",") if s]
    for s in sources:  # find every field's cells once, before the workers read them
        field_source(DATA, s, args.cells)
    arms = [a for a in args.arms.split(",") if a in ARMS]
    jobs = [(m, s, arm, str(args.cells), args.scorer) for s in sources for m in args.models for arm in arms]
    with multiprocessing.get_context("spawn").Pool(args.jobs) as pool:
        results = dict(pool.imap_unordered(run_one, jobs))
    saturation = {s: saturation_metrics(field_source(DATA, s, args.cells)) for s in sources if s != "chula"}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"|".join(k): v for k, v in results.items()} | {"saturation": saturation},
                                    indent=1, default=float))
    command = "python benchmarks/stain_matching.py " + " ".join(sys.argv[1:] if argv is None else argv)
    replace_above(args.write, KEPT_FROM, page(results, saturation, args.models, arms, time.time() - started, command))
    print(args.write.read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
