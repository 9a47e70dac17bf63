"""Composed fluorescence fields of fresh draws, which no setting of the finder was chosen on (the
benchmark's own fields are seed 0; seeds 1 and 2 were looked at when ``faint_sigmas`` was set, seeds
3-5 never): cells found once at the package's default.

    nice -n 10 .venv/bin/python benchmarks/cells_fresh_draws.py [--seeds 3 4 5] [--data-root ../shared/data]

Prints a markdown table (docs/benchmarks/cells.md quotes it).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from cells_benchmark import field_counts, run_new, totals
from cells_sources import composed_fluorescence


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[3, 4, 5])
    parser.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[1].parent / "shared" / "data")
    args = parser.parse_args(argv)
    print("| draw (seed) | cells found once | split pieces | merged | objects matching no cell | infected found once |")
    print("| --- | --- | --- | --- | --- | --- |")
    shares = []
    for seed in args.seeds:
        t = totals([field_counts(f, run_new(f)) for f in composed_fluorescence(args.data_root, seed=seed)])
        shares.append(100 * t["found"] / t["cells"])
        print(f"| {seed} | {shares[-1]:.1f}% ({t['found']}/{t['cells']}) | {t['split_pieces']} | {t['merged']} | "
              f"{t.get('extra_objects', 0)} | {t['infected_found']}/{t['infected']} |")
    mean = sum(shares) / len(shares)
    spread = (sum((s - mean) ** 2 for s in shares) / max(len(shares) - 1, 1)) ** 0.5
    print(f"\nCells found once over the draws: {mean:.1f}% +- {spread:.1f} (mean +- standard deviation).")
    return 0


if __name__ == "__main__":
    sys.exit(main())
