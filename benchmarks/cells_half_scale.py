"""Experiment, not shipped: finding red cells at half scale when they are large (issues 11 and 14).

The finder's time goes to full-resolution morphology (h-maxima, openings, distance transforms,
convex hulls). This finds the cells of a half-size copy of the field (anti-aliased linear
resize) and scales the labels back by nearest neighbour; when the cells measured there are under
``--min-diameter`` px (24 by default: the half-size cell still spans 24 px, chosen by reasoning,
not tuned) it finds them again at full size. It prints, per source of benchmarks/cells_benchmark.py,
the target share (cells found once; MalariaNet: parasites inside a found red cell) and the
seconds, full size against half size.

    python benchmarks/cells_half_scale.py [--every 12] [--min-diameter 24]
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import cells_benchmark as cb  # noqa: E402

from napari_supn_anomaly.cells.resize import resize_linear, resize_nearest  # noqa: E402
from napari_supn_anomaly.cells.segmentation import segment_cells  # noqa: E402
from napari_supn_anomaly.errors import NoCellsFound  # noqa: E402


def find_at_half_scale(f, min_diameter: float) -> cb.Outcome:
    t0 = time.perf_counter()
    c, h, w = f.plane.shape
    small = np.stack([resize_linear(f.plane[i].astype(np.float32), (h // 2, w // 2), anti_aliasing=True)
                      for i in range(c)])
    try:
        seg = segment_cells(small, f.modality)
        if seg.diameter_px >= min_diameter:
            others = None if seg.others is None else resize_nearest(seg.others, (h, w))
            return cb.Outcome(resize_nearest(seg.labels, (h, w)), others, time.perf_counter() - t0,
                              kinds=seg.kind_counts())
    except NoCellsFound:
        pass
    seg = segment_cells(f.plane, f.modality)  # small cells: found again at full size
    return cb.Outcome(seg.labels, seg.others, time.perf_counter() - t0, kinds=seg.kind_counts())


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    p.add_argument("--every", type=int, default=12, help="every n-th Chula and MalariaNet field")
    p.add_argument("--min-diameter", type=float, default=24.0)
    args = p.parse_args(argv)
    if not (args.data_root / "chula_rbc_fields").exists():
        print(f"no data under {args.data_root}", file=sys.stderr)
        return 2
    every = {"chula_rbc_fields": args.every, "malarianet_giemsa_fields": args.every,
             "remoscope_pf_unstained": 1, "composed_fluorescence": 1}
    print("| source | full size: target share | seconds | half size: target share | seconds |")
    print("| --- | --- | --- | --- | --- |")
    for source in cb.SOURCES:
        fields = cb.load_source(source, args.data_root, every[source])
        t = time.perf_counter()
        full = cb.evaluate(fields, lambda f: cb.run_new(f, cb.DEFAULT_SETTINGS), {})
        t_full = time.perf_counter() - t
        t = time.perf_counter()
        half = cb.evaluate(fields, lambda f: find_at_half_scale(f, args.min_diameter), {})
        t_half = time.perf_counter() - t
        print(f"| {source} | {100 * cb.target_share(source, full):.1f}% | {t_full:.0f} | "
              f"{100 * cb.target_share(source, half):.1f}% | {t_half:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
