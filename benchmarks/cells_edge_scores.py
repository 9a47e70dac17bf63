"""Do cells cut by the field's edge score like whole cells? And is finding cells faster than scoring them?

Runs the whole detection (new finder, edge cells kept) with the built-in Giemsa model on Chula
fields (no parasites: every candidate is a false one) and compares the scores of edge cells with
those of interior cells, and the segmentation time with the scoring time of the same fields.
Writes its block into docs/benchmarks/cells.md (between the edge-scores markers).

    nice -n 10 .venv/bin/python benchmarks/cells_edge_scores.py [--data-root ../shared/data] [--every 30]
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).parent))
from cells_sources import chula
from page_block import replace_block

from napari_supn_anomaly.models import load_model
from napari_supn_anomaly.pipeline.stacks import DetectSettings, detect
from napari_supn_anomaly.scoring import resolve

START, END = "<!-- edge-scores -->", "<!-- /edge-scores -->"


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--every", type=int, default=30)
    parser.add_argument("--model", default="giemsa-rbc")
    parser.add_argument("--page", type=Path, default=Path("docs/benchmarks/cells.md"))
    args = parser.parse_args(argv)
    if not (args.data_root / "chula_rbc_fields").exists():
        print(f"no data under {args.data_root}", file=sys.stderr)
        return 2
    scorer = resolve(load_model(args.model))
    tables, seg_s, score_s, mp = [], 0.0, 0.0, 0.0
    thresholds = []
    for f in chula(args.data_root, args.every):
        rgb = np.moveaxis(f.plane, 0, -1)
        t0 = time.perf_counter()
        result = detect(rgb, "YXS", scorer, settings=DetectSettings(device="cpu"))
        timings = result.provenance["timings_s"]
        seg_s += timings["segmentation_s"]
        score_s += timings["rescale_s"] + timings["score_s"] + timings["paste_s"]
        mp += f.megapixels
        thresholds.append(result.threshold)
        tables.append(result.cell_table.assign(field=f.name))
        print(f.name, f"{time.perf_counter() - t0:.1f}s", len(result.cell_table), flush=True)
    cells = pd.concat(tables, ignore_index=True)
    load = os.getloadavg()

    def row(name, t):
        s = t["score"].to_numpy()
        return (f"| {name} | {len(t)} | {np.median(s):.3g} | {np.percentile(s, 95):.3g} | "
                f"{100 * t['candidate'].to_numpy(bool).mean():.1f}% |")

    block = "\n".join([
        START,
        "## Cells cut by the edge, scored with the outside masked",
        "",
        (f"`nice -n 10 .venv/bin/python benchmarks/cells_edge_scores.py --every {args.every}`: the whole detection "
        f"(model `{args.model}`, default sensitivity, edge cells kept) on {len(tables)} Chula fields (no parasites, "
        f"so every candidate is false). Thresholds, set on each field (self-calibration): {min(thresholds):.4g}"
        f"-{max(thresholds):.4g}."),
        "",
        "| cells | n | median score | 95th percentile | candidates |",
        "| --- | --- | --- | --- | --- |",
        row("interior", cells[~cells["edge"]]),
        row("cut by the edge", cells[cells["edge"]]),
        "",
        (f"Time on these fields: segmentation {seg_s / mp:.2f} s per megapixel, scoring (rescale, model, paste) "
        f"{score_s / mp:.2f} s per megapixel (2-core CPU shared with other jobs, load average {load[0]:.1f})."),
        END,
    ])
    replace_block(args.page, START, END, block)
    print(block)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
