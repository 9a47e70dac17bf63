"""Scale benchmark: a whole-slide fluorescence mosaic and a folder of fields on 1 and 2 Dask workers.

    python benchmarks/scale.py --work /tmp/supn-scale --write docs/benchmarks/scale.md
    python benchmarks/scale.py --sizes 5000 10000 --fields 50 --work /tmp/supn-scale   # a shorter run

The mosaic is composed from real cells of ``supn_fl_cells`` (128 px crops of single cells: the masked
pixels of healthy training cells and, for one cell in seven, an infected validation cell), placed on
a jittered grid over a dark background with the crops' own noise, and written as OME-Zarr (1024 px
chunks, uint8) band by band, so composing it never holds the slide. The fields are 512 x 512 TIFFs
composed the same way. Each configuration runs the same code as ``supn-anomaly detect --workers N``
(``cluster.detect_run.run_detect`` on a fresh ``distributed.LocalCluster``) and records the wall time
and each worker's peak resident memory (``ru_maxrss`` read inside the worker after the run), and
the CPU seconds of the workers and of the process that runs ``run_detect`` (the client: it plans
the run, measures a big plane's cell size on one window, and gathers the tables; the workers write
the images and cut the candidates).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("SUPN_SHARED_DATA", ROOT.parent / "shared" / "data"))
SPACING = 96     # px between cell centres on the grid (the crops' cells are about 60-70 px wide)
JITTER = 10
BAND = 1024


def load_average() -> list[float]:
    try:
        return [float(v) for v in Path("/proc/loadavg").read_text().split()[:3]]
    except OSError:
        return []


def _crops(sub: str, limit: int | None = None):
    import imageio.v3 as iio

    folder = DATA / "supn_fl_cells" / sub
    out = []
    for p in sorted((folder / "raw").glob("*.png"))[:limit]:
        crop = iio.imread(p).astype(np.float32)
        mask = iio.imread(folder / "mask" / p.name) > 0
        if mask.sum() >= 300 and not (mask[0].any() or mask[-1].any() or mask[:, 0].any() or mask[:, -1].any()):
            out.append((crop, mask))
    return out


class Composer:
    """Cells of supn_fl_cells on a jittered grid; every cell is drawn from its grid position's seed."""

    def __init__(self, seed: int = 0):
        self.healthy = _crops("healthy_train", 400)
        self.infected = _crops("validation/infected")
        self.background = float(np.median([np.median(c[~m]) for c, m in self.healthy[:200]]))
        self.noise = float(np.median([np.std(c[:12, :12]) for c, m in self.healthy[:200]]))
        self.seed = seed

    def _row(self, row: int, n_cols: int):
        rng = np.random.default_rng([self.seed, row])
        infected = rng.random(n_cols) < 1 / 7
        picks = rng.integers(0, 1 << 30, n_cols)
        turns = rng.integers(0, 4, n_cols)
        jitter = rng.integers(-JITTER, JITTER + 1, (n_cols, 2))
        for col in range(n_cols):
            pool = self.infected if infected[col] else self.healthy
            crop, mask = pool[picks[col] % len(pool)]
            yield (row * SPACING + SPACING // 2 + jitter[col, 0], col * SPACING + SPACING // 2 + jitter[col, 1],
                   np.rot90(crop, turns[col]), np.rot90(mask, turns[col]))

    def band(self, y0: int, y1: int, width: int, band_seed: int) -> np.ndarray:
        rng = np.random.default_rng([self.seed, 10**6 + band_seed])
        out = rng.normal(self.background, self.noise, (y1 - y0, width)).astype(np.float32)
        n_cols = width // SPACING
        for row in range(max(0, (y0 - 128) // SPACING), min((y1 + 128) // SPACING + 1, self.n_rows)):
            for cy, cx, crop, mask in self._row(row, n_cols):
                top, left = cy - 64 - y0, cx - 64
                ys, xs = np.nonzero(mask)
                yy, xx = ys + top, xs + left
                inside = (yy >= 0) & (yy < y1 - y0) & (xx >= 0) & (xx < width)
                out[yy[inside], xx[inside]] = crop[ys[inside], xs[inside]]
        return np.clip(out, 0, 255).astype(np.uint8)

    def write_mosaic(self, path: Path, size: int) -> int:
        from napari_supn_anomaly.io import create_ome_zarr

        self.n_rows = size // SPACING
        array = create_ome_zarr(path, (size, size), np.uint8, "YX", None)
        for k, y0 in enumerate(range(0, size, BAND)):
            array[y0:min(size, y0 + BAND), :] = self.band(y0, min(size, y0 + BAND), size, k)
        return self.n_rows * (size // SPACING)

    def write_fields(self, folder: Path, n: int, size: int = 512) -> list[Path]:
        import tifffile

        folder.mkdir(parents=True, exist_ok=True)
        paths = []
        for i in range(n):
            self.seed, keep = 1000 + i, self.seed
            self.n_rows = size // SPACING
            path = folder / f"field{i:03d}.tif"
            tifffile.imwrite(path, self.band(0, size, size, 0))
            self.seed = keep
            paths.append(path)
        return paths


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _warm(model: str) -> None:
    from napari_supn_anomaly.cluster.scorers import ScorerSpec, load_scorer

    load_scorer(ScorerSpec(model))


def run(paths: list[Path], workers: int, out: Path, model: str) -> dict:
    from napari_supn_anomaly.cluster.detect_run import run_detect
    from napari_supn_anomaly.cluster.runners import DaskRunner
    from napari_supn_anomaly.cluster.scorers import ScorerSpec
    from napari_supn_anomaly.pipeline.stacks import DetectSettings

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    runner = DaskRunner(workers=workers)
    try:
        runner.client.run(_warm, model)  # each worker loads the model before the clock starts
        cpu_before = runner.client.run(_cpu_seconds)
        load_before = load_average()
        client_before = _cpu_seconds()
        t0 = time.perf_counter()
        stems = [p.name.split(".")[0] for p in paths]
        report = run_detect(paths, stems, ScorerSpec(model), DetectSettings(), str(out), runner, quiet=True)
        wall = time.perf_counter() - t0
        client_cpu = _cpu_seconds() - client_before
        peaks = runner.client.run(lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
        cpu = runner.client.run(_cpu_seconds)
    finally:
        runner.close()
    cells = sum(len(o.cell_table) for o in report.outcomes if o.ok)
    return {"workers": workers, "inputs": len(paths), "failed": len(report.failed), "tasks": report.tasks,
            "cells": int(cells), "wall_s": round(wall, 1), "cells_per_s": round(cells / wall, 1),
            "worker_peak_gb": sorted(round(v, 2) for v in peaks.values()),
            # CPU seconds the workers spent during the run: with 2 cores free, about workers x wall
            "worker_cpu_s": round(sum(cpu[w] - cpu_before.get(w, 0.0) for w in cpu), 1),
            # CPU seconds of this process (it plans the run, gathers the results and finishes each input)
            "client_cpu_s": round(client_cpu, 1),
            "client_peak_gb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            "load_before": load_before, "load_after": load_average()}


def write_page(path: Path, rows: list[dict], args, started: str) -> None:
    lines = [
        "# Scale: whole-slide mosaics and folders of fields on Dask workers (issue 14)",
        "",
        (f"Measured {started} on the development machine: {os.cpu_count()}-core {platform.machine()} CPU, no GPU, "
        f"Python {platform.python_version()}. Command:"),
        "",
        f"    python benchmarks/scale.py {' '.join(sys.argv[1:])}",
        "",
        "Model `" + args.model + "` with its default scorer and settings. Load averages before/after each run "
        "are in the table (2 means the two cores were busy); 'worker CPU s' is the CPU time the workers spent "
        "during the run, which is about workers x wall time when they had the cores to themselves; 'client "
        "CPU s' that of the process that plans the run (a big plane's cell size is measured on one 2048 px "
        "window there, before its blocks start) and gathers the tables. Peak memory is the largest resident "
        "set of each worker process (`ru_maxrss`), and of the client. A big plane runs two tasks per block: "
        "its cells (written into the OME-Zarr images by the worker), then its candidates at the slide's "
        "threshold.",
        "",
        ("| input | workers | tasks | cells | wall s | worker CPU s | client CPU s | cells/s | peak GB per worker "
         "| client peak GB | load before -> after |"),
        "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for r in rows:
        lines.append(f"| {r['input']} | {r['workers']} | {r['tasks']} | {r['cells']} | {r['wall_s']} | {r.get('worker_cpu_s', '?')} | "
                     f"{r.get('client_cpu_s', '?')} | "
                     f"{r['cells_per_s']} | {', '.join(map(str, r['worker_peak_gb']))} | {r['client_peak_gb']} | "
                     f"{r['load_before'][0] if r['load_before'] else '?'} -> "
                     f"{r['load_after'][0] if r['load_after'] else '?'} |")
    mosaics = sorted({(r["size"], r["workers"]): r for r in rows if r.get("size")}.values(),
                     key=lambda r: (r["workers"], r["size"]))
    if mosaics:
        lines += ["", ("Time against area (mosaics; seconds per megapixel should stay flat if time is linear in "
                  "area):"), "", "| workers | side px | megapixels | wall s | s per megapixel |", "| --- | --- | --- | --- | --- |"]
        for r in mosaics:
            mp = r["size"] ** 2 / 1e6
            lines.append(f"| {r['workers']} | {r['size']} | {mp:.0f} | {r['wall_s']} | {r['wall_s'] / mp:.3f} |")
    pairs = {}
    for r in rows:
        pairs.setdefault(r["input"], {})[r["workers"]] = r["wall_s"]
    speedups = [(k, v[1] / v[2]) for k, v in pairs.items() if 1 in v and 2 in v]
    if speedups:
        lines += ["", "Speed-up of 2 workers over 1 (target >= 1.7x): " + "; ".join(f"{k}: {s:.2f}x" for k, s in speedups)
                  + "."]
    lines += ["", ("Targets (issue 14): peak memory per worker <= 2 GB at any size; time linear in area; 2 workers "
              ">= 1.7x faster than 1 on this 2-core machine. See the report of the run for which were met.")]
    path.write_text("\n".join(lines) + "\n")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--sizes", type=int, nargs="*", default=[5000, 10000, 20000], help="mosaic sides, px (none: the fields only)")
    p.add_argument("--fields", type=int, default=200, help="fields in the folder (0: none)")
    p.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    p.add_argument("--model", default="fluorescence-rbc")
    p.add_argument("--work", type=Path, default=Path("/tmp/supn-scale"), help="folder for inputs and outputs")
    p.add_argument("--write", type=Path, default=None, help="write the page here (e.g. docs/benchmarks/scale.md)")
    args = p.parse_args(argv)
    started = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    composer = Composer()
    args.work.mkdir(parents=True, exist_ok=True)
    rows = []
    jobs = []
    if args.fields:
        paths = composer.write_fields(args.work / "fields", args.fields)
        jobs.append((f"{args.fields} fields of 512 x 512", paths, None))
    for size in args.sizes:
        path = args.work / f"mosaic_{size}.ome.zarr"
        if not path.exists():
            t0 = time.perf_counter()
            composer.write_mosaic(path, size)
            print(f"composed {path.name} in {time.perf_counter() - t0:.0f} s", file=sys.stderr)
        jobs.append((f"mosaic {size} x {size}", [path], size))
    for name, paths, size in jobs:
        for workers in args.workers:
            row = dict(run(paths, workers, args.work / "out", args.model), input=name, size=size)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
            (args.work / "results.json").write_text(json.dumps(rows, indent=1))
    if args.write:
        write_page(args.write, rows, args, started)
    return 0


if __name__ == "__main__":
    sys.exit(main())
