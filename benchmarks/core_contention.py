"""Does a second busy process slow this machine's cores? CPU seconds of the same cell-finder work (4 Chula
fields, twice) in one process alone, then in two processes at once, repeated.

    python benchmarks/core_contention.py [--data-root ../shared/data] [--repeats 2]

Dask's 2-worker speed-up (docs/benchmarks/scale.md) can only be as good as the cores stay when both are busy.
"""
from __future__ import annotations

import argparse
import multiprocessing as mp
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
REPO = Path(__file__).resolve().parents[1]


def finder_cpu_seconds(data_root: Path, out) -> None:
    from cells_sources import load_source

    from napari_supn_anomaly.cells.segmentation import segment_cells

    fields = load_source("chula_rbc_fields", data_root, every=40)[:4]
    segment_cells(fields[0].plane, fields[0].modality)  # warm-up
    start = time.process_time()
    for _ in range(2):
        for f in fields:
            segment_cells(f.plane, f.modality)
    out.put(time.process_time() - start)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    p.add_argument("--repeats", type=int, default=2)
    args = p.parse_args(argv)
    ctx = mp.get_context("spawn")
    for _ in range(args.repeats):
        for n in (1, 2):
            out = ctx.Queue()
            procs = [ctx.Process(target=finder_cpu_seconds, args=(args.data_root, out)) for _ in range(n)]
            wall = time.perf_counter()
            for proc in procs:
                proc.start()
            cpu = sorted(out.get() for _ in procs)
            for proc in procs:
                proc.join()
            print(f"{n} process(es) at once: CPU s each {', '.join(f'{c:.2f}' for c in cpu)}; "
                  f"wall {time.perf_counter() - wall:.1f} s", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
