"""False parasite candidates on uninfected Chula fields, by cause, before and after setting apart
annotation marks (cells/set_apart.py): writes docs/benchmarks/chula_candidates.md
and before/after overlays docs/images/chula_candidates_<field>.png.

    nice -n 19 .venv/bin/python benchmarks/chula_candidates.py [--data-root ../shared/data] [--n 40]

Fields: ``chula_field_names(data_root, n, seed=0)`` (the lead's diagnosis set), split by a seeded
shuffle (seed 1) into a *tuning* half and a *held-out* half. Where each setting was chosen:
overlay_marks.py's colour rules on the pixel colours of the marks of Chula fields 65, 73, 100, 722
(none of the 40) and 222 (held-out half: its orange marker), and on the false marks they gave on
MalariaNet fields of all 9 slides (refractile specks; the background estimate was changed to the
brightest tenth after a purple-filled Trip_053 field); ``MARK_HALO_PX`` on field 172 (tuning).
So the held-out half is clean of tuning except field 222's orange marker. Every candidate is
a false one (no parasites on these smears). The built-in ``giemsa-rbc`` model with the pipeline's
default detection: cells found by ``segment_cells`` (edge cells kept and flagged), scored by
``detect`` with the slide's self-calibration; "per field" is each field alone, as a user opening
it; "pooled" is all fields of the half as one slide (one self-calibration over their cells).
*Before* is the same code with the marks switched off (``set_apart`` passes the cells through,
``mark_mask`` finds nothing). Cutting platelets stuck to a cell's outline off the cell was tried
in the same change and removed: it cut a parasite off its cell on a MalariaNet test slide.

Causes (first that applies): *mark* (the cell touches an annotation mark's pixels, within 2 px),
*platelet* (the cell touches a platelet object, within 2 px),
*edge* (cut by the field's edge), *other*. Chula class: the morphology labels whose centre falls
in the cell ("several" when more than one, "none" when none).
"""
from __future__ import annotations

import argparse
import copy
import platform
import random
import resource
import sys
import time
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import ndimage as ndi

import napari_supn_anomaly.cells.segmentation as segmentation_module
import napari_supn_anomaly.pipeline.fields as fields_module
from napari_supn_anomaly.cells.overlay_marks import mark_mask
from napari_supn_anomaly.cells.segmentation import segment_cells
from napari_supn_anomaly.errors import InputError
from napari_supn_anomaly.evaluation.field_sets import (
    CHULA,
    chula_field_names,
    load_chula_fields,
)
from napari_supn_anomaly.models import load_model
from napari_supn_anomaly.pipeline.sensitivity import default_fpr
from napari_supn_anomaly.pipeline.stacks import (
    DetectSettings,
    choose_run_threshold,
    detect,
)
from napari_supn_anomaly.scoring import resolve

ROOT = Path(__file__).resolve().parents[1]
MODALITY = "brightfield-stained"
DEFAULT_FIELD = f"field_{default_fpr(MODALITY)}"  # the column of the default setting, each field alone
FPRS = tuple(dict.fromkeys((default_fpr(MODALITY), 0.05, 0.01)))
CAUSES = ("mark", "platelet", "edge", "other")
OVERLAY_FIELDS = 3


@contextmanager
def new_steps_off():
    """The package as it was before this change: no marks found or set apart."""
    saved = segmentation_module.set_apart, fields_module.mark_mask
    segmentation_module.set_apart = lambda seg, *args, **kwargs: seg
    fields_module.mark_mask = lambda plane, modality: np.zeros(np.shape(plane)[-2:], bool)
    try:
        yield
    finally:
        segmentation_module.set_apart, fields_module.mark_mask = saved


def cell_causes(image, seg, marks) -> tuple[np.ndarray, np.ndarray]:
    """(cause per red cell 1..N, ids) with the priority of CAUSES."""
    labels = seg.labels
    n = int(labels.max())
    near = lambda mask: np.bincount(labels[ndi.binary_dilation(mask, iterations=2)], minlength=n + 1) > 0
    on_mark = near(marks) if marks.any() else np.zeros(n + 1, bool)
    platelet_objects = np.isin(seg.others, np.flatnonzero(np.asarray(seg.other_kinds) == "platelet"))
    on_platelet = near(platelet_objects)
    cause = np.full(n + 1, "other", object)
    edge = np.asarray(seg.edge, bool)
    for name, flag in (("edge", edge), ("platelet", on_platelet), ("mark", on_mark)):
        cause[flag] = name
    return cause


def chula_classes(data_root: Path, name: str, labels: np.ndarray) -> np.ndarray:
    table = pd.read_csv(Path(data_root) / CHULA / "cells" / f"{name}.csv")
    n = int(labels.max())
    found: dict[int, list[str]] = {}
    for y, x, cls in zip(table.y.astype(int), table.x.astype(int), table.class_name):
        if 0 <= y < labels.shape[0] and 0 <= x < labels.shape[1] and labels[y, x]:
            found.setdefault(int(labels[y, x]), []).append(cls)
    out = np.full(n + 1, "none", object)
    for cid, names in found.items():
        out[cid] = names[0] if len(names) == 1 else "several"
    return out


def run_field(f, scorer, data_root: Path) -> tuple[pd.DataFrame, object]:
    seg = segment_cells(f.image, MODALITY)
    result = detect(f.image, "CYX", scorer, labels=seg.labels, settings=DetectSettings())
    table = result.cell_table.set_index("cell_id")
    ids = np.arange(1, seg.n_cells + 1)
    ids = ids[np.isin(ids, table.index.to_numpy())]
    marks = mark_mask(f.image, MODALITY)
    cause = cell_causes(f.image, seg, marks)
    classes = chula_classes(data_root, f.name, seg.labels)
    return pd.DataFrame({"field": f.name, "cell_id": ids, "score": table.loc[ids, "score"].to_numpy(float),
                         "candidate_default": table.loc[ids, "candidate"].to_numpy(bool),
                         "cause": cause[ids], "chula_class": classes[ids], "edge": np.asarray(seg.edge)[ids]}), seg


def flag(scorer, scores: np.ndarray, fpr: float) -> np.ndarray:
    return scores >= choose_run_threshold(scorer, DetectSettings(fpr=fpr), scores).threshold


def add_flags(cells: pd.DataFrame, scorer) -> pd.DataFrame:
    cells = cells.copy()
    for fpr in FPRS:
        cells[f"field_{fpr}"] = False
        for idx in cells.groupby("field").groups.values():
            cells.loc[idx, f"field_{fpr}"] = flag(scorer, cells.loc[idx, "score"].to_numpy(), fpr)
        cells[f"pooled_{fpr}"] = flag(scorer, cells.score.to_numpy(), fpr)
    return cells


def per100(flags: pd.Series) -> str:
    return f"{100 * flags.mean():.1f}" if len(flags) else "-"


def overlay(f, seg_before, seg_after, cells_before, cells_after, path: Path) -> None:
    from PIL import Image
    from skimage.segmentation import find_boundaries

    rgb = np.moveaxis(f.image, 0, -1).clip(0, 255).astype(np.uint8)
    panels = []
    for seg, cells in ((seg_before, cells_before), (seg_after, cells_after)):
        img = rgb.copy()
        img[find_boundaries(seg.labels, mode="inner")] = (0, 200, 0)
        flagged = cells.cell_id[cells[DEFAULT_FIELD]].to_numpy()
        img[find_boundaries(np.isin(seg.labels, flagged) * seg.labels, mode="inner")] = (255, 0, 0)
        platelets = np.isin(seg.others, np.flatnonzero(np.asarray(seg.other_kinds) == "platelet"))
        img[find_boundaries(platelets, mode="inner")] = (0, 0, 255)
        debris = np.isin(seg.others, np.flatnonzero(np.asarray(seg.other_kinds) == "debris"))
        img[find_boundaries(debris, mode="inner")] = (0, 0, 0)
        panels.append(img)
    gap = np.full((rgb.shape[0], 8, 3), 255, np.uint8)
    Image.fromarray(np.concatenate([panels[0], gap, panels[1]], 1)).save(path)


def malarianet_check(data_root: Path, scorer) -> list[str]:
    """Parasites inside a found cell and infected cells that are candidates on the MalariaNet
    training and selection slides, marks off and on. The cells are found with the marks off, then
    ``set_apart`` is applied to them: the same cells, before and after."""
    from napari_supn_anomaly.cells.set_apart import set_apart
    from napari_supn_anomaly.evaluation.builtin_splits import (
        MALARIANET_SELECTION_SLIDES,
        MALARIANET_TRAIN_SLIDES,
    )
    from napari_supn_anomaly.evaluation.field_sets import (
        INFECTED_MIN_PX,
        load_malarianet_fields,
    )

    totals = dict.fromkeys(("parasites", "inside_before", "inside_after", "infected_before", "infected_after",
                            "candidates_before", "candidates_after", "changed"), 0)
    for f in load_malarianet_fields(data_root, MALARIANET_TRAIN_SLIDES + MALARIANET_SELECTION_SLIDES):
        with new_steps_off():
            before = segment_cells(f.image, MODALITY)
        after = set_apart(copy.deepcopy(before), f.image, MODALITY)
        parasites, n = ndi.label(f.parasites)
        totals["parasites"] += n
        for state, seg in (("before", before), ("after", after)):
            area = np.bincount(seg.labels.ravel())
            cell_area = np.pi * (seg.diameter_px / 2) ** 2
            for pid in range(1, n + 1):
                counts = np.bincount(seg.labels[parasites == pid], minlength=len(area))
                counts[0] = 0
                best = int(counts.argmax())
                totals[f"inside_{state}"] += int(best > 0 and counts[best] >= 0.5 * (parasites == pid).sum()
                                                 and area[best] <= 2 * cell_area)
        if np.array_equal(before.labels > 0, after.labels > 0) and not mark_mask(f.image, MODALITY).any():
            continue  # the same cells and nothing masked: the same candidates
        totals["changed"] += 1
        for state, seg in (("before", before), ("after", after)):
            if state == "before":
                with new_steps_off():
                    result = detect(f.image, "CYX", scorer, labels=seg.labels, settings=DetectSettings())
            else:
                result = detect(f.image, "CYX", scorer, labels=seg.labels, settings=DetectSettings())
            table = result.cell_table.set_index("cell_id")
            covered = np.bincount(seg.labels[f.parasites], minlength=int(seg.labels.max()) + 1)
            ids = table.index.to_numpy()
            infected = covered[ids] >= INFECTED_MIN_PX
            totals[f"infected_{state}"] += int(infected.sum())
            totals[f"candidates_{state}"] += int((table.candidate.to_numpy(bool) & infected).sum())
    t = totals
    return ["## MalariaNet: parasites stay inside their cells", "",
            "Training and selection slides (" + ", ".join(MALARIANET_TRAIN_SLIDES + MALARIANET_SELECTION_SLIDES)
            + "); a parasite (a connected component of its mask) is inside a found cell when half of its "
            "pixels lie in one red cell of at most two cell areas (as benchmarks/cells_benchmark.py counts). "
            "Infected cells that are candidates: counted on the fields the change touched (on the others "
            "the cells and their scores are the same).", "",
            "| | before | after |", "|---|---|---|",
            f"| parasites inside a found cell (of {t['parasites']}) | {t['inside_before']} | {t['inside_after']} |",
            (f"| infected cells that are candidates, on the {t['changed']} fields changed | "
            f"{t['candidates_before']} of {t['infected_before']} | {t['candidates_after']} of {t['infected_after']} |"),
            ""]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data-root", type=Path, default=ROOT.parent / "shared" / "data")
    ap.add_argument("--n", type=int, default=40)
    ap.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks" / "chula_candidates.md")
    ap.add_argument("--skip-malarianet", action="store_true")
    args = ap.parse_args(argv)
    if not (args.data_root / CHULA).is_dir():
        print(f"no {CHULA} under {args.data_root}", file=sys.stderr)
        return 2
    t0, cpu0 = time.perf_counter(), resource.getrusage(resource.RUSAGE_SELF)
    names = chula_field_names(args.data_root, args.n, seed=0)
    shuffled = names[:]
    random.Random(1).shuffle(shuffled)
    halves = {"tuning": sorted(shuffled[: len(names) // 2]), "held-out": sorted(shuffled[len(names) // 2:])}
    scorer = resolve(load_model("giemsa-rbc"))
    fields = load_chula_fields(args.data_root, names)
    tables = {"before": [], "after": []}
    segs = {}
    for f in fields:
        for state in ("before", "after"):
            try:
                if state == "before":
                    with new_steps_off():
                        cells, seg = run_field(f, scorer, args.data_root)
                else:
                    cells, seg = run_field(f, scorer, args.data_root)
            except InputError as exc:
                print(f.name, state, "refused:", exc, file=sys.stderr)
                continue
            tables[state].append(cells)
            segs[f.name, state] = seg
        print(f.name, f"{time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    cells = {s: add_flags(pd.concat(t, ignore_index=True), scorer) for s, t in tables.items()}
    for s in cells:
        cells[s]["half"] = np.where(cells[s].field.isin(halves["tuning"]), "tuning", "held-out")
        cells[s].to_csv(ROOT / "runs" / f"chula_candidates_{s}.csv", index=False) if (ROOT / "runs").is_dir() else None
    agree = np.mean([(c["candidate_default"] == c[DEFAULT_FIELD]).mean() for c in cells.values()])

    lines = [
        "# False candidates on uninfected Chula fields: annotation marks",
        "",
        (f"Date: {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC. Machine: {platform.machine()}, "
        f"{platform.system()}, 2-core CPU shared with other jobs, no GPU. Command: "
        "`nice -n 19 .venv/bin/python benchmarks/chula_candidates.py`."),
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        f"Fields: tuning half {', '.join(halves['tuning'])}; held-out half {', '.join(halves['held-out'])}.",
        "",
        ("False candidates per 100 found red cells (all red cells found, edge cells included; the "
        "cause columns add up to the total)."),
        "",
    ]
    for half in ("held-out", "tuning"):
        lines += [f"## {half} half", "",
                  "| setting | run | state | red cells | false candidates /100 | " + " | ".join(CAUSES) + " |",
                  "|---|---|---|---|---|" + "---|" * len(CAUSES)]
        for fpr in FPRS:
            for run in ("field", "pooled"):
                for state in ("before", "after"):
                    c = cells[state][cells[state].half == half]
                    col = f"{run}_{fpr}"
                    causes = [per100(c[col] & (c.cause == k)) for k in CAUSES]
                    label = f"{fpr:.0%}" + (" (default)" if fpr == default_fpr(MODALITY) else "")
                    lines.append(f"| {label} | {'each field alone' if run == 'field' else 'pooled'} | {state} | "
                                 f"{len(c)} | {per100(c[col])} | " + " | ".join(causes) + " |")
        lines.append("")
        lines += [f"By Chula class ({half} half, default setting, each field alone): candidates / cells.", "",
                  "| class | before | after |", "|---|---|---|"]
        classes = sorted(set(cells["before"].chula_class) | set(cells["after"].chula_class))
        for cls in classes:
            parts = []
            for state in ("before", "after"):
                c = cells[state][(cells[state].half == half) & (cells[state].chula_class == cls)]
                parts.append(f"{int(c[DEFAULT_FIELD].sum())} / {len(c)}")
            lines.append(f"| {cls} | " + " | ".join(parts) + " |")
        lines.append("")
    lines += ["## Per field (default setting, each field alone)", "",
              ("| field | half | red cells before | candidates before | red cells after | candidates after | "
              "marks (px) |"), "|---|---|---|---|---|---|---|"]
    for f in fields:
        b = cells["before"][cells["before"].field == f.name]
        a = cells["after"][cells["after"].field == f.name]
        lines.append(f"| {f.name} | {'tuning' if f.name in halves['tuning'] else 'held-out'} | {len(b)} | "
                     f"{int(b[DEFAULT_FIELD].sum())} | {len(a)} | {int(a[DEFAULT_FIELD].sum())} | "
                     f"{int(mark_mask(f.image, MODALITY).sum())} |")
    # overlays: the fields where the change moved the most
    moved = sorted(fields, key=lambda f: -abs(
        int(cells["before"][cells["before"].field == f.name][DEFAULT_FIELD].sum())
        - int(cells["after"][cells["after"].field == f.name][DEFAULT_FIELD].sum())))[:OVERLAY_FIELDS]
    images = []
    for f in moved:
        if (f.name, "before") not in segs or (f.name, "after") not in segs:
            continue
        path = ROOT / "docs" / "images" / f"chula_candidates_{f.name}.png"
        overlay(f, segs[f.name, "before"], segs[f.name, "after"],
                cells["before"][cells["before"].field == f.name], cells["after"][cells["after"].field == f.name], path)
        images.append(f"![field {f.name}: before (left) and after (right)](../images/{path.name})")
    if not args.skip_malarianet:
        lines += malarianet_check(args.data_root, scorer)
    cpu1 = resource.getrusage(resource.RUSAGE_SELF)
    lines += ["", "## Overlays", "",
              ("Before (left) and after (right): red cells green, candidates at the default setting red, "
              "platelet objects blue, debris (marks included) black."), ""] + images + [
        "", (f"Check: the detection's own candidates equal the recomputed default flags on "
        f"{100 * agree:.1f}% of cells. Run time {time.perf_counter() - t0:.0f} s wall, "
        f"{cpu1.ru_utime + cpu1.ru_stime - cpu0.ru_utime - cpu0.ru_stime:.0f} s CPU, "
        f"load average at the end {' '.join(f'{x:.2f}' for x in __import__('os').getloadavg())}."), ""]
    args.out.write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
