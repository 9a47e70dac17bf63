"""Composed fluorescence fields of fresh draws, which no setting of the finder was chosen on (the
benchmark's own fields are seed 0): cells found once, with and without ``fill_notches``.

    nice -n 10 .venv/bin/python benchmarks/cells_fresh_draws.py [--seeds 1 2] [--data-root ../shared/data]

Prints a markdown table (docs/benchmarks/cells.md quotes it).
"""
from __future__ import annotations

import argparse
import sys
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from cells_benchmark import field_counts, run_new, totals
from cells_sources import composed_fluorescence

from napari_supn_anomaly.cells.finder import DEFAULT_SETTINGS


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    args = parser.parse_args(argv)
    print("| draw (seed) | fill_notches | cells found once | split pieces | merged | infected found once |")
    print("| --- | --- | --- | --- | --- | --- |")
    for seed in args.seeds:
        fields = composed_fluorescence(args.data_root, seed=seed)
        for fill in (True, False):
            t = totals([field_counts(f, run_new(f, replace(DEFAULT_SETTINGS, fill_notches=fill))) for f in fields])
            print(f"| {seed} | {fill} | {100 * t['found'] / t['cells']:.1f}% ({t['found']}/{t['cells']}) | "
                  f"{t['split_pieces']} | {t['merged']} | {t['infected_found']}/{t['infected']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
