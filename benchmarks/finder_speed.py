"""The cell finder's speed before and after a change, on real fields of the four sources, and
whether it finds the same cells (issue 11, part 5).

    python benchmarks/finder_speed.py --before-ref ce9b664 [--every 24] [--rounds 3] [--write docs/benchmarks/cells.md]

"Before" is the package at ``--before-ref`` (``scorer_speed.load_before``: a ``git archive`` of it,
imported under another name), so both run in this one process on the same fields, interleaved
field by field and round by round: the machine's drifting speed hits both alike. Time is CPU
time of ``segment_cells`` (one thread: the finder uses one core). Accuracy is
``cells_benchmark.field_counts`` on the same fields for both.
"""
from __future__ import annotations

import argparse
import importlib
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from cells_benchmark import Outcome, field_counts, target_share, totals  # noqa: E402
from cells_sources import SOURCES, load_source  # noqa: E402
from page_block import replace_block  # noqa: E402
from scorer_speed import load_average, load_before  # noqa: E402

from napari_supn_anomaly.cells.segmentation import segment_cells  # noqa: E402

START, END = "<!-- finder-speed -->", "<!-- /finder-speed -->"


def run(segment, f) -> tuple[Outcome, float]:
    cpu = time.process_time()
    seg = segment(f.plane, f.modality)
    return Outcome(seg.labels, seg.others, 0.0), time.process_time() - cpu


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--before-ref", required=True, help="git commit of the 'before' code")
    p.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    p.add_argument("--every", type=int, default=24, help="every n-th Chula and MalariaNet field")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--write", type=Path, help="put the table into this page (between the finder-speed markers)")
    args = p.parse_args(argv)
    if not (args.data_root / "chula_rbc_fields").exists():
        print(f"no data under {args.data_root}", file=sys.stderr)
        return 2
    every = {"chula_rbc_fields": args.every, "malarianet_giemsa_fields": args.every,
             "remoscope_pf_unstained": 1, "composed_fluorescence": 1}
    with tempfile.TemporaryDirectory() as tmp:
        before = load_before(args.before_ref, Path(tmp))
        before_segmentation = importlib.import_module(f"{before.__name__}.cells.segmentation")
        variants = {"before": before_segmentation.segment_cells, "after": segment_cells}
        rows = []
        for source in SOURCES:
            fields = load_source(source, args.data_root, every[source])
            cpu = {v: [0.0] * args.rounds for v in variants}
            counts = {v: [] for v in variants}
            same = 0
            for f in fields:
                labels = {}
                for r in range(args.rounds):
                    for v, segment in (variants.items() if r % 2 == 0 else reversed(variants.items())):
                        out, seconds = run(segment, f)
                        cpu[v][r] += seconds
                        if r == 0:
                            counts[v].append(field_counts(f, out))
                            labels[v] = out.labels
                same += int(np.array_equal(labels["before"], labels["after"]))
            mp = sum(f.megapixels for f in fields)
            rate = {v: statistics.median(cpu[v]) / mp for v in variants}
            share = {v: target_share(source, totals(counts[v])) for v in variants}
            rows.append(f"| {source} | {len(fields)} | {rate['before']:.2f} | {rate['after']:.2f} | "
                        f"{rate['before'] / rate['after']:.2f}x | {same}/{len(fields)} | "
                        f"{100 * share['before']:.1f}% | {100 * share['after']:.1f}% |")
            print(rows[-1], flush=True)
    when = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    cmd = f"python benchmarks/finder_speed.py --before-ref {args.before_ref} --every {args.every} --rounds {args.rounds}"
    block = "\n".join([
        START,
        "## The finder's speed, before and after",
        "",
        f"`{cmd}`, {when}, {platform.machine()} ({os.cpu_count()}-core CPU, no GPU), load average {load_average()} at the "
        f"end. 'Before' is commit `{args.before_ref}`, run in the same process on the same fields, interleaved. "
        "CPU seconds of `segment_cells` per megapixel, the median of the rounds; every Chula and MalariaNet "
        f"field {args.every}. apart, all Remoscope and composed fluorescence fields. Target share as in the "
        "tables above (cells found once; MalariaNet: parasites inside a found red cell).",
        "",
        "| source | fields | CPU s / MP before | after | speed-up | fields with identical labels | target share before | after |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
        *rows,
        END,
    ])
    if args.write:
        replace_block(args.write, START, END, block)
        print(f"wrote {args.write}")
    else:
        print(block)
    return 0


if __name__ == "__main__":
    sys.exit(main())
