"""Cell finding on four sources, new finder against the old segmenter: writes docs/benchmarks/cells.md
and one overlay per source in docs/images/cells_<source>.png.

    nice -n 10 .venv/bin/python benchmarks/cells_benchmark.py [--data-root ../shared/data] [--every 1]

Matching (the same for every source and both segmenters). A labelled red cell is *inside the
field* when its centre lies at least half a cell diameter from the edge; the targets count those.
It is *found* when the object under its centre is a red cell holding no other labelled centre
(one object per cell). *Merged*: its object holds two or more labelled centres. *Split pieces*:
red-cell objects holding no labelled centre whose centroid lies within half a cell diameter of
one. An infected cell (Remoscope box, composed fluorescence) counts when it is found; a
MalariaNet parasite (a connected component of its mask) when at least half of its pixels lie in
one red-cell object that holds no more than ``MAX_CELL_AREAS`` red-cell areas (not a clump).

Leave one source out: for each source the finder's settings are chosen on the three others from
a small grid (best mean of their target numbers), then measured on it.
"""
from __future__ import annotations

import argparse
import itertools
import platform
import sys
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from cells_old_segmenter import segment_cells as old_segment_cells
from cells_sources import (
    MALARIANET_EARLIER_DIAMETER,
    SOURCE_DIAMETER,
    SOURCES,
    BenchField,
    load_source,
)
from page_block import replace_above

from napari_supn_anomaly.cells.finder import DEFAULT_SETTINGS, FinderSettings
from napari_supn_anomaly.cells.segmentation import segment_cells
from napari_supn_anomaly.errors import NoCellsFound

MAX_CELL_AREAS = 2.0
# split_solidity 0.96 was tried too until 2026-11-29 evening (chosen for one held-out source of
# four); it was dropped from the grid to fit the run into the time of a session on a loaded machine
# ties go to the first value in this order: work_diameter 64 (large cells found on a shrunk copy) is
# chosen over 0 (always at full size), and fill_notches and give_back_pieces on over off, unless the
# other finds more
GRID = {"threshold_fraction": (0.45, 0.6), "split_solidity": (0.975,), "clump_edge_weight": (0.0, 1.0),
        "work_diameter": (64.0, 0.0), "fill_notches": (True, False), "give_back_pieces": (True, False)}


@dataclass
class Outcome:
    labels: np.ndarray        # red cells
    others: np.ndarray | None
    seconds: float
    refused: bool = False
    kinds: dict | None = None  # objects by kind (new finder)


def run_new(f: BenchField, settings: FinderSettings = DEFAULT_SETTINGS) -> Outcome:
    t0 = time.perf_counter()
    try:
        seg = segment_cells(f.plane, f.modality, settings=settings)
    except NoCellsFound:
        return Outcome(np.zeros(f.plane.shape[1:], np.int32), None, time.perf_counter() - t0, True)
    return Outcome(seg.labels, seg.others, time.perf_counter() - t0, kinds=seg.kind_counts())


def run_old(f: BenchField) -> Outcome:
    t0 = time.perf_counter()
    try:
        seg = old_segment_cells(f.plane, f.modality)
    except NoCellsFound:
        return Outcome(np.zeros(f.plane.shape[1:], np.int32), None, time.perf_counter() - t0, True)
    return Outcome(seg.labels, None, time.perf_counter() - t0)


def _at(labels: np.ndarray, points: np.ndarray) -> np.ndarray:
    if len(points) == 0:
        return np.zeros(0, int)
    p = np.clip(np.rint(points).astype(int), 0, np.array(labels.shape) - 1)
    return labels[p[:, 0], p[:, 1]]


def field_counts(f: BenchField, out: Outcome) -> dict:
    lab = out.labels
    d = SOURCE_DIAMETER[f.source]
    h, w = lab.shape
    c = {"mp": f.megapixels, "seconds": out.seconds, "refused": int(out.refused)}
    n_obj = int(lab.max())
    if len(f.cells):
        at = _at(lab, f.cells)
        per_object = np.bincount(at, minlength=n_obj + 1)
        per_object[0] = 0
        inside = ((f.cells[:, 0] >= d / 2) & (f.cells[:, 0] < h - d / 2)
                  & (f.cells[:, 1] >= d / 2) & (f.cells[:, 1] < w - d / 2))
        found = (at > 0) & (per_object[at] == 1)
        c.update(cells=int(inside.sum()), found=int((found & inside).sum()),
                 merged=int(((at > 0) & (per_object[at] > 1) & inside).sum()),
                 edge_cells=int((~inside).sum()), edge_found=int((found & ~inside).sum()))
        # pieces: objects without a labelled centre whose centroid lies within d/2 of one
        ids = np.arange(1, n_obj + 1)
        empty = ids[per_object[1:] == 0]
        pieces = 0
        if len(empty):
            from napari_supn_anomaly.cells.measure import label_centroids
            cent, _ = label_centroids(lab, empty)
            dist = np.sqrt(((cent[:, None, :] - f.cells[None]) ** 2).sum(-1)).min(1)
            pieces = int((dist < d / 2).sum())
            c["extra_objects"] = int(len(empty) - pieces)
        c["split_pieces"] = pieces
        if f.infected is not None and len(f.infected):
            ai = _at(lab, f.infected)
            c.update(infected=len(f.infected), infected_found=int(((ai > 0) & (per_object[ai] == 1)).sum()))
        if len(f.not_cells):
            an = _at(lab, f.not_cells)
            c.update(not_cells=len(f.not_cells), not_cells_as_red=int((an > 0).sum()))
    if f.parasites is not None:
        homes = parasite_homes(lab, f.parasites, d)
        c.update(parasites=len(homes), parasites_inside=sum(h.inside for h in homes),
                 parasites_in_clumps=sum(h.object > 0 and not h.inside for h in homes),
                 parasites_inside_earlier=sum(h.object > 0 and h.areas * (d / MALARIANET_EARLIER_DIAMETER) ** 2
                                              <= MAX_CELL_AREAS for h in homes))
    return c


@dataclass
class ParasiteHome:
    parasite: int   # the parasite's id in the mask (a connected component)
    object: int     # the red-cell object holding at least half of its pixels, 0 when none does
    areas: float    # that object's area in red-cell areas of the source's diameter
    centre: tuple[float, float]

    @property
    def inside(self) -> bool:
        return self.object > 0 and self.areas <= MAX_CELL_AREAS


def parasite_homes(labels: np.ndarray, parasites: np.ndarray, diameter: float) -> list[ParasiteHome]:
    """Where each parasite of ``parasites`` (labels) lies among the red-cell ``labels``."""
    cell_area = np.pi * (diameter / 2) ** 2
    areas = np.bincount(labels.ravel(), minlength=int(labels.max()) + 1)
    homes = []
    for pid in range(1, int(parasites.max()) + 1):
        where = parasites == pid
        counts = np.bincount(labels[where], minlength=len(areas))
        counts[0] = 0
        best = int(counts.argmax())
        held = best > 0 and counts[best] >= 0.5 * where.sum()
        centre = tuple(float(v) for v in np.argwhere(where).mean(0))
        homes.append(ParasiteHome(pid, best if held else 0, areas[best] / cell_area if held else 0.0, centre))
    return homes


def totals(rows: list[dict]) -> dict:
    keys = set().union(*rows)
    return {k: sum(r.get(k, 0) for r in rows) for k in keys}


def target_share(source: str, t: dict) -> float:
    if source == "malarianet_giemsa_fields":
        return t["parasites_inside"] / max(t["parasites"], 1)
    return t["found"] / max(t["cells"], 1)


def evaluate(fields: list[BenchField], runner, kinds: dict | None = None) -> dict:
    """Summed counts over ``fields``; with ``kinds``, the objects by kind are added to it."""
    rows = []
    for f in fields:
        out = runner(f)
        rows.append(field_counts(f, out))
        for k, n in (out.kinds or {}).items():
            if kinds is not None:
                kinds[k] = kinds.get(k, 0) + n
    return totals(rows)


def leave_one_out(tuning: dict[str, list[BenchField]], log=print) -> dict[str, FinderSettings]:
    """For each source, the grid setting with the best mean target share on the other sources."""
    combos = [FinderSettings(**dict(zip(GRID, values))) for values in itertools.product(*GRID.values())]
    share = {}
    for s in combos:
        for source, fields in tuning.items():
            share[s, source] = target_share(source, evaluate(fields, lambda f, s=s: run_new(f, s)))
        log(f"  {s}: " + ", ".join(f"{src[:6]} {share[s, src]:.3f}" for src in tuning))
    chosen = {"all": max(combos, key=lambda s: np.mean([share[s, o] for o in tuning]))}
    for left_out in tuning:
        others = [src for src in tuning if src != left_out]
        chosen[left_out] = max(combos, key=lambda s: np.mean([share[s, o] for o in others]))
    return chosen


def overlay(f: BenchField, out: Outcome, path: Path) -> None:
    """Write ``overlay_rgb`` to ``path``."""
    import imageio.v3 as iio

    path.parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, overlay_rgb(f, out))


def overlay_rgb(f: BenchField, out: Outcome) -> np.ndarray:
    """[Y, X, 3] uint8: the field with red-cell outlines (green), other objects (blue), parasite masks
    (magenta), labelled centres found (white) and missed or merged (red, large), infected centres
    (yellow ring)."""
    from skimage.draw import circle_perimeter, disk
    from skimage.segmentation import find_boundaries

    img = f.plane if f.plane.shape[0] == 3 else np.repeat(f.plane[:1], 3, 0)
    lo, hi = np.percentile(img, (0.5, 99.5))
    rgb = (np.clip((np.moveaxis(img, 0, -1) - lo) / max(hi - lo, 1e-6), 0, 1) * 255).astype(np.uint8)
    rgb[find_boundaries(out.labels, mode="inner")] = (0, 230, 0)
    if out.others is not None:
        rgb[find_boundaries(out.others, mode="inner")] = (40, 90, 255)
    if f.parasites is not None:
        rgb[find_boundaries(f.parasites > 0, mode="inner")] = (255, 0, 255)
    lab = out.labels
    at = _at(lab, f.cells)
    per_object = np.bincount(at, minlength=int(lab.max()) + 1)
    per_object[0] = 0
    for (y, x), a in zip(np.rint(f.cells).astype(int), at):
        ok = a > 0 and per_object[a] == 1
        rr, cc = disk((y, x), 2 if ok else 4, shape=lab.shape)
        rgb[rr, cc] = (255, 255, 255) if ok else (255, 0, 0)
    for y, x in np.rint(f.infected if f.infected is not None else np.zeros((0, 2))).astype(int):
        rr, cc = circle_perimeter(y, x, 7, shape=lab.shape)
        rgb[rr, cc] = (255, 220, 0)
    return rgb


def _pct(a, b) -> str:
    return f"{100 * a / b:.1f}% ({a}/{b})" if b else "-"


def source_rows(source: str, new: dict, old: dict) -> list[str]:
    rows = []

    def row(name, key_a, key_b=None, fmt=None):
        cells = []
        for t in (new, old):
            if fmt:
                cells.append(fmt(t))
            elif key_b:
                cells.append(_pct(t.get(key_a, 0), t.get(key_b, 0)))
            else:
                cells.append(str(t.get(key_a, 0)))
        rows.append(f"| {source} | {name} | {cells[0]} | {cells[1]} |")

    if new.get("cells"):
        row("labelled cells inside the field found once", "found", "cells")
        row("merged (cells sharing one object)", "merged")
        row("split pieces", "split_pieces")
        row("cells cut by the edge found once", "edge_found", "edge_cells")
        row("red-cell objects matching no labelled cell", "extra_objects")
    if new.get("infected"):
        row("infected cells found once", "infected_found", "infected")
    if new.get("not_cells"):
        row("wbc / misc boxes inside a red-cell object", "not_cells_as_red", "not_cells")
    if new.get("parasites"):
        row(f"parasites inside a found red cell (<= 2 areas of a {SOURCE_DIAMETER[source]:.0f} px cell)",
            "parasites_inside", "parasites")
        row(f"the same, <= 2 areas of a {MALARIANET_EARLIER_DIAMETER:.0f} px cell (the earlier yardstick)",
            "parasites_inside_earlier", "parasites")
        row("parasites inside a larger object (clump)", "parasites_in_clumps", "parasites")
    row("fields refused (NoCellsFound)", "refused")
    row("seconds per megapixel", "", fmt=lambda t: f"{t['seconds'] / t['mp']:.2f}")
    return rows


KEPT_FROM = "<!-- edge-scores -->"  # the page from here on is not this script's


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    parser.add_argument("--every", type=int, default=1, help="measure every n-th Chula and MalariaNet field")
    parser.add_argument("--tune-every", type=int, default=16, help="tune on every n-th field of each source")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/cells.md"))
    parser.add_argument("--images", type=Path, default=Path("docs/images"))
    args = parser.parse_args(argv)
    if not (args.data_root / "chula_rbc_fields").exists():
        print(f"no data under {args.data_root}", file=sys.stderr)
        return 2
    started = time.time()
    tune_every = {"chula_rbc_fields": args.tune_every, "malarianet_giemsa_fields": 2 * args.tune_every,
                  "remoscope_pf_unstained": 1, "composed_fluorescence": 4}
    print("tuning (leave one source out) ...", flush=True)
    tuning = {s: load_source(s, args.data_root, tune_every[s]) for s in SOURCES}
    chosen = leave_one_out(tuning)
    print("chosen per left-out source:", chosen, flush=True)
    # every table is measured at the package's default, the one setting a user gets; the grid's
    # choice on all four tuning subsets is reported next to it
    shipped = DEFAULT_SETTINGS
    if _settings_text(chosen["all"]) != _settings_text(shipped):
        print(f"NOTE: chosen on all sources {chosen['all']} differs from the package default {shipped}", flush=True)

    measure_every = {"chula_rbc_fields": args.every, "malarianet_giemsa_fields": args.every,
                     "remoscope_pf_unstained": 1, "composed_fluorescence": 1}
    lines, loso, notes = [], [], []
    for source in SOURCES:
        fields = load_source(source, args.data_root, measure_every[source])
        kinds: dict[str, int] = {}
        new = evaluate(fields, lambda f: run_new(f, shipped), kinds)
        old = evaluate(fields, run_old)
        lines += source_rows(source, new, old)
        held = chosen[source]
        held_totals = new if _settings_text(held) == _settings_text(shipped) else evaluate(
            fields, lambda f, held=held: run_new(f, held))
        loso.append(f"| {source} | {_settings_text(held)} | {100 * target_share(source, held_totals):.1f}% | "
                    f"{100 * target_share(source, new):.1f}% | {100 * target_share(source, old):.1f}% |")
        notes.append(f"| {source} | {len(fields)} | " + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + " |")
        best = max(fields, key=lambda f: len(f.cells) + (int(f.parasites.max()) if f.parasites is not None else 0))
        overlay(best, run_new(best, shipped), args.images / f"cells_{source}.png")
        print(source, "done", flush=True)
    page = _page(args, lines, loso, notes, time.time() - started, chosen['all'])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    # the edge-score block (cells_edge_scores.py) and the hand-written notes after it stay
    replace_above(args.out, KEPT_FROM, page)
    print(f"wrote {args.out}")
    return 0


def _settings_text(s: FinderSettings) -> str:
    return ", ".join(f"{k}={getattr(s, k)}" for k in GRID)


def _page(args, lines, loso, notes, seconds, chosen_all) -> str:
    import os
    load = os.getloadavg()
    return "\n".join([
        "# Finding red cells on four sources",
        "",
        (f"Generated {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC by "
        f"`nice -n 19 .venv/bin/python benchmarks/cells_benchmark.py --every {args.every} --tune-every {args.tune_every}` "
        f"on {platform.machine()} ({os.cpu_count()}-core CPU, no GPU), shared with other jobs: load average "
        f"{load[0]:.1f} / {load[1]:.1f} / {load[2]:.1f} at the end, so the timings are upper bounds. "
        f"Run time {seconds / 60:.0f} min."),
        "",
        ("Sources (`../shared/data`): `chula_rbc_fields` (every "
        f"{args.every}. field, labelled red-cell centres), `malarianet_giemsa_fields` (every {args.every}. field, "
        "parasite masks), `remoscope_pf_unstained` (all 7 fields, a box on every cell), `composed_fluorescence` "
        "(8 fields of 768 x 768 composed by `benchmarks/cells_sources.py` from real `supn_fl_cells` cells: "
        "healthy training cells and the 50 infected validation cells, touching, overlapping and cut by the edge)."),
        "",
        ("Matching: see the docstring of `benchmarks/cells_benchmark.py`. In short: a labelled cell inside the field "
        "(centre at least half a cell from the edge) is found when the red-cell object under its centre holds no "
        "other labelled centre. The old segmenter is the one before issue 11 (`benchmarks/cells_old_segmenter.py`, "
        "a copy), with its default of leaving out cells cut by the edge; the new finder keeps and flags them."),
        "",
        "## Leave one source out",
        "",
        "For each source, the finder's settings were chosen from a grid ("
        + ", ".join(f"{k} in {v}" for k, v in GRID.items())
        + ") on the three other sources (tuning subsets: every "
        f"{args.tune_every}. Chula field, every {2 * args.tune_every}. MalariaNet field, all Remoscope fields, 2 "
        "composed fields), then measured on it. The target share is cells found once (MalariaNet: parasites inside "
        "a found red cell).",
        "",
        ("| left-out source | settings chosen without it | target share, held out | at the package's default "
        f"({_settings_text(DEFAULT_SETTINGS)}) | old segmenter |"),
        "| --- | --- | --- | --- | --- |",
        *loso,
        "",
        (f"Every number below is measured at the package's default ({_settings_text(DEFAULT_SETTINGS)}, "
        "`cells/finder.py` `FinderSettings`), the same for every source. Chosen on all four tuning subsets: "
        f"{_settings_text(chosen_all)}"
        + (", the default." if _settings_text(chosen_all) == _settings_text(DEFAULT_SETTINGS) else
           " (**not the default**).")),
        "",
        "## New finder against the old segmenter",
        "",
        "| source | measure | new finder | old segmenter |",
        "| --- | --- | --- | --- |",
        *lines,
        "",
        "## Objects kept apart (never scored)",
        "",
        "| source | fields | objects by kind (new finder) |",
        "| --- | --- | --- |",
        *notes,
        "",
        ("Overlays: `docs/images/cells_<source>.png` (green: red cells; blue: objects kept apart; white dot: a "
        "labelled cell found once; red dot: missed or merged; yellow ring: infected cell; magenta: parasite mask)."),
        "",
    ])


if __name__ == "__main__":
    raise SystemExit(main())
