"""Models that travel: the built-in models on slides and labs they were not trained or tuned on.

    python benchmarks/build/giemsa_model.py --malarianet --init FILE --seed 0 1 2 --compare-augment
    python benchmarks/generalisation.py select --models runs/h4/models [--data-root ../shared/data]
    git show 808327f^:src/napari_supn_anomaly/models/weights/giemsa-rbc.safetensors > runs/giemsa-rbc-before.safetensors
    python benchmarks/generalisation.py table --before runs/giemsa-rbc-before.safetensors [--scorers supn,diag,ensemble] \
        [--seeds FILE ...]
    python benchmarks/generalisation.py fluorescence

``select`` scores every candidate Giemsa model file (one per recipe and seed; built by
benchmarks/build/giemsa_model.py) with SUPN and the diagonal baseline and each colour score rule
on the MalariaNet *selection* slides and the Plymouth validation fields, writes
runs/generalisation/selection.json and prints its table: the recipe, scorer and rule are chosen there.
``table`` measures the shipped ``giemsa-rbc`` (and ``--before``, the file shipped before issue 12)
with each scorer on the Plymouth validation fields, MalariaNet slides that trained nothing, the
MalariaNet test slides and Chula fields, with the pipeline's own default detection (as it is at run
time), and puts the table into docs/benchmarks/generalisation.md between its markers (the rest of
the page is written by hand). ``--seeds``: other builds of the shipped recipe
(``benchmarks/build/giemsa_model.py --arch fast --seed N``, then ``benchmarks/build/stain_reference.py
--model FILE``; for the ensemble, its members calibrated as ``benchmarks/build/scorer_calibrations.py``
does), each a row, and per scorer the mean and spread over them and the shipped file. ``fluorescence`` estimates the fluorescence model's AUROC on cells the
scorer and rule were not chosen on (repeated half splits of the 100 validation cells, and the 132
held-back healthy training cells as extra healthy test cells) and prints its table.

Cells on whole fields are found by the package's own segmenter (cached under ``--cells``; delete it
when the cell finder changes).
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
import torch

from napari_supn_anomaly.errors import InputError, ModelFileError
from napari_supn_anomaly.evaluation.builtin_splits import (
    MALARIANET_SELECTION_SLIDES,
    MALARIANET_TEST_SLIDES,
    MALARIANET_TRAIN_SLIDES,
    fluorescence_split,
    load_giemsa_split,
    model_crops,
    with_masks,
)
from napari_supn_anomaly.evaluation.datasets import load_fl_cells
from napari_supn_anomaly.evaluation.field_sets import (
    chula_field_names,
    find_cells,
    load_chula_fields,
    load_malarianet_fields,
)
from napari_supn_anomaly.evaluation.generalisation import (
    detect_field,
    saturation_field,
    summarise,
)
from napari_supn_anomaly.evaluation.handmade import bright_spots, stain_saturation
from napari_supn_anomaly.evaluation.metrics import auprc, auroc
from napari_supn_anomaly.models import AnomalyModel, load_model
from napari_supn_anomaly.pipeline.stacks import DetectSettings, choose_run_threshold
from napari_supn_anomaly.scoring import calibrate as calibrate_scorer
from napari_supn_anomaly.scoring import REGISTRY, resolve
from page_block import replace_block

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
WORK = REPO / "runs" / "generalisation"
PAGE = REPO / "docs" / "benchmarks" / "generalisation.md"
FL_RULES = ("spot", "bright", "paper")
FL_OTHER_SCORERS = ("ensemble", "supn+spots", "ssl-ppii")
N_CHULA = 40


def _load(path_or_name: str) -> AnomalyModel:
    return load_model(path_or_name)


def with_rule(model: AnomalyModel, scorer: str, rule: str) -> AnomalyModel:
    model = model.copy()
    model.metadata.setdefault("score_rules", {})[scorer] = rule
    return model


def plymouth_cells(data_root: Path):
    """All cells of the Plymouth validation fields (healthy and infected), masks found once."""
    split = load_giemsa_split(data_root)
    return with_masks(split.validation)


def plymouth_metrics(model: AnomalyModel, scorer: str, cells, settings: DetectSettings | None = None) -> dict:
    """Per-cell AUROC / AP on the Plymouth validation fields; candidates at the default setting with
    each field's cells as one run (the pipeline's default threshold path on that field's scores)."""
    crops, masks = model_crops(model, cells)
    sc = resolve(model, scorer)
    scores = model.score_crops(crops, masks, scorer=scorer).scores if sc.info.likelihood else None
    if scores is None:
        scores = np.concatenate([b.scores for _, b in sc.iter_batches(crops, masks)])
    y = np.asarray(cells.labels)
    flagged = np.zeros(len(y), bool)
    groups = np.asarray(cells.groups)
    for g in np.unique(groups):
        k = groups == g
        thr = choose_run_threshold(sc, settings or DetectSettings(), scores[k]).threshold
        flagged[k] = scores[k] >= thr
    healthy = y == 0
    return {"n_cells": len(y), "n_infected_cells": int(y.sum()), "auroc": auroc(y, scores), "ap": auprc(y, scores),
            "false_per_100": 100.0 * float(flagged[healthy].mean()),
            "infected_on_candidate": float(flagged[~healthy].mean())}


def plymouth_saturation(cells) -> dict:
    y = np.asarray(cells.labels)
    s = stain_saturation(cells.images)
    return {"n_cells": len(y), "auroc": auroc(y, s), "ap": auprc(y, s)}


def field_source(data_root: Path, which: str, cache: Path):
    if which == "chula":
        fields = load_chula_fields(data_root, chula_field_names(data_root, N_CHULA, seed=0))
    else:
        slides = {"selection": MALARIANET_SELECTION_SLIDES, "test": MALARIANET_TEST_SLIDES,
                  "train": MALARIANET_TRAIN_SLIDES}[which]
        fields = load_malarianet_fields(data_root, slides)
    return [(f, find_cells(f, cache=cache)) for f in fields]


def field_metrics(model: AnomalyModel, scorer: str, source) -> dict:
    sc = resolve(model, scorer)
    runs = [detect_field(sc, f, c) for f, c in source]
    out = summarise(runs)
    methods = [r.provenance.get("calibration", {}).get("method") for r in runs if r is not None]
    out["threshold_from"] = {m: methods.count(m) for m in set(methods) if m}
    return out


def saturation_metrics(source) -> dict:
    return summarise([saturation_field(f, c) for f, c in source], pixel_map_everywhere=True)


def _machine() -> str:
    return (f"{platform.machine()}, {os.cpu_count()}-core CPU shared with other jobs, no GPU; torch "
            f"{torch.__version__}; load average {os.getloadavg()[0]:.1f} at the end")


# -- select ----------------------------------------------------------------------------------------
def _select_one(path: Path, rules: tuple[str, ...], source, ply) -> dict:
    torch.set_num_threads(1)
    model = AnomalyModel.from_file(path)
    out = {}
    for scorer in ("supn", "diag"):
        for rule in rules:
            m = with_rule(model, scorer, rule)
            t = time.perf_counter()
            row = {"malarianet_selection": field_metrics(m, scorer, source)}
            if ply is not None:
                row["plymouth_validation"] = plymouth_metrics(m, scorer, ply)
            out[f"{path.stem}|{scorer}|{rule}"] = row
            print(f"{path.stem:28s} {scorer:5s} {rule:13s} MN AUROC {row['malarianet_selection'].get('auroc', 0):.3f}"
                  f" at-2% {row['malarianet_selection'].get('parasites_on_candidate_at_2', 0):.2f}"
                  f" ({time.perf_counter() - t:.0f} s, load {os.getloadavg()[0]:.1f})", flush=True)
    return out


def select(args) -> int:
    source = field_source(args.data_root, "selection", args.cells)
    ply = plymouth_cells(args.data_root) if args.plymouth else None
    paths = [p for p in sorted(Path(args.models).glob("giemsa-*.safetensors")) if p.name.count(".") == 1]
    rules = tuple(args.rules.split(","))
    out = {}
    # each model file is scored in a forked process of one thread (no torch operation ran before)
    with multiprocessing.get_context("fork").Pool(min(len(paths), args.jobs)) as pool:
        for part in pool.starmap(_select_one, [(p, rules, source, ply) for p in paths]):
            out.update(part)
    out["saturation"] = {"malarianet_selection": saturation_metrics(source)}
    if ply is not None:
        out["saturation"]["plymouth_validation"] = plymouth_saturation(ply)
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / "selection.json").write_text(json.dumps(out, indent=1))
    print("\n".join(selection_lines(out)))
    return 0


# -- fluorescence ------------------------------------------------------------------------------------
def fl_options(model: AnomalyModel, crops, masks, data_root: Path) -> dict:
    """{scorer|rule: (scores of the validation crops, scores of the model's held-back healthy cells)}.

    The combined scorers (ensemble, supn+spots) are calibrated here (on a copy, with the held-back cells, as
    benchmarks/build/scorer_calibrations.py does for the shipped model) when the file has no calibration
    of it; ssl-ppii is the shipped network, which does not depend on the VAE but only fits a model with the
    shipped model's intensity statistics (a model trained with another seed holds back other cells and has
    other statistics: ssl-ppii is then left out of its options).
    """
    _, (held_crops, held_masks) = fluorescence_split(model, data_root)
    options = {}
    for scorer in ("supn", "diag"):
        for rule in FL_RULES:
            m = with_rule(model, scorer, rule)
            options[f"{scorer}|{rule}"] = (m.score_crops(crops, masks, scorer=scorer).scores,
                                           m.score_crops(held_crops, held_masks, scorer=scorer).scores)
    for name in FL_OTHER_SCORERS:  # the combined scorers, calibrated, and a self-supervised scorer, as shipped
        if REGISTRY[name].needs_calibration and name not in model.metadata.get("calibration", {}):
            copy = model.copy()
            calibrate_scorer(resolve(copy, name, require_calibration=False), held_crops, held_masks)
            sc = resolve(copy, name)
        else:
            try:
                sc = resolve(model, name)
            except ModelFileError as exc:  # another seed's model has other intensity statistics
                print(f"{name} left out: {exc}", flush=True)
                continue
        options[f"{name}|-"] = tuple(np.concatenate([b.scores for _, b in sc.iter_batches(c, m)])
                                     for c, m in ((crops, masks), (held_crops, held_masks)))
    return options


def _half_splits(y: np.ndarray, n: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(0)
    healthy, infected = np.nonzero(y == 0)[0], np.nonzero(y == 1)[0]
    splits = []
    for _ in range(n):
        a = np.r_[rng.permutation(healthy)[:25], rng.permutation(infected)[:25]]
        splits.append((a, np.setdiff1d(np.arange(len(y)), a)))
    return splits


def fl_estimate(options: dict, y: np.ndarray, splits) -> dict:
    """Scorer and rule chosen on one half of the validation cells, AUROC measured on the other half."""
    chosen, held_out, fixed = [], [], {k: [] for k in options}
    for a, b in splits:
        best = max(options, key=lambda k: auroc(y[a], options[k][0][a]))
        chosen.append(best)
        held_out.append(auroc(y[b], options[best][0][b]))
        for k in options:
            fixed[k].append(auroc(y[b], options[k][0][b]))
    extra = {}
    for k, (v, h) in options.items():  # 50 infected vs 50 validation + the held-back healthy training cells
        yy = np.r_[y, np.zeros(len(h), int)]
        ss = np.r_[v, h]
        extra[k] = {"auroc_validation": auroc(y, v), "ap_validation": auprc(y, v),
                    "auroc_with_held_back_healthy": auroc(yy, ss), "ap_with_held_back_healthy": auprc(yy, ss)}
    return {"n_splits": len(splits), "selection_held_out_auroc_mean": float(np.mean(held_out)),
            "selection_held_out_auroc_sd": float(np.std(held_out)),
            "chosen": {k: chosen.count(k) for k in set(chosen)},
            "fixed_rule_half_auroc": {k: [float(np.mean(v)), float(np.std(v))] for k, v in fixed.items()},
            "options": extra, "n_held_back_healthy": len(next(iter(options.values()))[1])}


def fl_synthetic_spots(model: AnomalyModel, data_root: Path, amplitude: float = 40.0) -> float:
    """AUROC of the default scorer: the model's held-back healthy cells with one synthetic spot added to
    each against the same cells unchanged (benchmarks/fl_cells.py). No validation cell is involved, so
    it can choose between seeds."""
    from fl_cells import add_spots, held_back_cells, standardise

    images, cell_masks = held_back_cells(model, data_root)
    clean, clean_masks = standardise(model, images, cell_masks)
    spotted, spotted_masks = standardise(model, add_spots(images, cell_masks, amplitude, seed=int(amplitude)),
                                         cell_masks)
    scorer = resolve(model)
    a = scorer.score(clean, clean_masks).scores
    b = scorer.score(spotted, spotted_masks).scores
    return auroc(np.r_[np.zeros(len(a)), np.ones(len(b))], np.r_[a, b])


def fluorescence(args) -> int:
    """The held-out estimate of each model in --fl-models (the first is the one the page reports; the
    others, e.g. the seeds of a rebuild, give the spread between runs and, together, an estimate in
    which the seed is chosen on the half split as well)."""
    val = load_fl_cells(args.data_root, "validation")
    y = np.asarray(val.labels)
    splits = _half_splits(y, args.splits)
    per_model, all_options = {}, {}
    for name in args.fl_models:
        model = load_model(name)
        crops, masks = model_crops(model, val)
        options = fl_options(model, crops, masks, args.data_root)
        per_model[name] = fl_estimate(options, y, splits)
        per_model[name]["seed"] = model.metadata["training"]["settings"]["seed"]
        per_model[name]["synthetic_spot_40_auroc"] = fl_synthetic_spots(model, args.data_root)
        all_options.update({f"{name}|{k}": v[:1] for k, v in options.items()})
        print(name, json.dumps({k: per_model[name][k] for k in ("seed", "selection_held_out_auroc_mean",
                                                                  "selection_held_out_auroc_sd", "chosen",
                                                                  "synthetic_spot_40_auroc")}), flush=True)
    out = dict(per_model[args.fl_models[0]])
    hand = bright_spots(val.images, val.masks)
    out["handmade_bright_spots"] = {"auroc": auroc(y, hand), "ap": auprc(y, hand)}
    out["model"] = args.fl_models[0]
    if len(args.fl_models) > 1:
        estimates = [per_model[n]["selection_held_out_auroc_mean"] for n in args.fl_models]
        seed_chosen = fl_estimate({k: (v[0], v[0][:0]) for k, v in all_options.items()}, y, splits)
        out["seeds"] = {"models": per_model, "estimate_mean": float(np.mean(estimates)),
                        "estimate_sd_between_seeds": float(np.std(estimates, ddof=1)),
                        "seed_also_chosen_on_the_half": {k: seed_chosen[k] for k in (
                            "selection_held_out_auroc_mean", "selection_held_out_auroc_sd", "chosen")}}
    WORK.mkdir(parents=True, exist_ok=True)
    (args.fl_json or WORK / "fluorescence.json").write_text(json.dumps(out, indent=1))
    print(json.dumps({k: v for k, v in out.items() if k != "seeds"}, indent=1))
    print("\n".join(fluorescence_lines(out)))
    return 0


# -- table -------------------------------------------------------------------------------------------
def _fmt(v, pct=False, digits=3) -> str:
    if v is None or (isinstance(v, float) and not np.isfinite(v)):
        return "n/a"
    return f"{100 * v:.0f}%" if pct else f"{v:.{digits}f}"


def cell_text(m: dict) -> str:
    parts = [f"AUROC {_fmt(m.get('auroc'))}", f"AP {_fmt(m.get('ap'))}"]
    if "parasites_on_candidate" in m:
        parts.append(f"parasites on a candidate {_fmt(m['parasites_on_candidate'], True)} "
                     f"(at 2 false/100: {_fmt(m.get('parasites_on_candidate_at_2'), True)}; in a found cell "
                     f"{_fmt(m.get('parasites_in_found_cell'), True)})")
    elif "parasites_on_candidate_at_2" in m:
        parts.append(f"parasites on a candidate at 2 false/100: {_fmt(m['parasites_on_candidate_at_2'], True)}")
    if "infected_on_candidate" in m:
        parts.append(f"infected cells on a candidate {_fmt(m['infected_on_candidate'], True)}")
    if "false_per_100" in m:
        parts.append(f"false {m['false_per_100']:.1f}/100")
    if "pixel_ap_field" in m:
        parts.append(f"pixel AP field {_fmt(m['pixel_ap_field'])}, in cells {_fmt(m.get('pixel_ap_cells'))}")
    return "; ".join(p for p in parts if "n/a" not in p.split(" ")[-1])


def _table_row(label: str, where: str, scorer: str, ply, sources: dict) -> tuple[str, dict | None]:
    torch.set_num_threads(1)
    model = _load(where)
    try:
        resolve(model, scorer)
    except (ModelFileError, InputError) as exc:  # a file without this scorer's calibration
        print(label, scorer, f"left out: {exc}", flush=True)
        return f"{label}|{scorer}", None
    row = {} if ply is None else {"plymouth": plymouth_metrics(model, scorer, ply)}
    for key, source in sources.items():
        row[key] = field_metrics(model, scorer, source)
    print(label, scorer, {k: round(v.get("auroc", float("nan")), 3) for k, v in row.items()}, flush=True)
    return f"{label}|{scorer}", row


CURRENT_LABEL = "giemsa-rbc as shipped"
BEFORE_LABEL = "giemsa-rbc file before issue 12"
HANDMADE_LABEL = "hand-made: HSV saturation"
SEED_LABEL = "same recipe, seed "  # + the seed: other builds of the shipped file's recipe (--seeds)
SPREAD_LABEL = "giemsa-rbc's recipe, mean +- sd over the shipped file and the other seeds"
SPREAD_KEYS = (("auroc", "AUROC", 1, 3), ("parasites_on_candidate_at_2", "at 2 false/100", 100, 0),
               ("false_per_100", "false /100 at the default", 1, 1), ("pixel_ap_field", "pixel AP field", 1, 3))


def table(args) -> int:
    started = time.perf_counter()
    cache = args.cells
    wanted = args.sources.split(",")
    ply = plymouth_cells(args.data_root) if "plymouth" in wanted else None
    sources = {k: field_source(args.data_root, k, cache) for k in TABLE_SOURCES if k in wanted and k != "plymouth"}
    saved = WORK / "table.json"
    rows = json.loads(saved.read_text()) if saved.exists() else {}
    models = [(CURRENT_LABEL, args.current)] + ([(BEFORE_LABEL, str(args.before))] if args.before else [])
    models += [(f"{SEED_LABEL}{_load(str(path)).metadata['training']['settings']['seed']}", str(path))
               for path in args.seeds]
    jobs = [(label, where, scorer, ply, sources) for label, where in models for scorer in args.scorers.split(",")]
    # one forked process of one thread per model and scorer (no torch operation ran before)
    with multiprocessing.get_context("fork").Pool(min(len(jobs), args.jobs)) as pool:
        for key, row in pool.starmap(_table_row, jobs):
            if row is not None:
                rows[key] = {**rows.get(key, {}), **row}
    sat = {k: saturation_metrics(s) for k, s in sources.items()}
    if ply is not None:
        sat["plymouth"] = plymouth_saturation(ply)
    rows[f"{HANDMADE_LABEL}|-"] = {**rows.get(f"{HANDMADE_LABEL}|-", {}), **sat}
    rows["run"] = {"date": f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC", "machine": _machine(),
                   "minutes": (time.perf_counter() - started) / 60,
                   "command": "python benchmarks/generalisation.py table " + " ".join(args.argv)}
    WORK.mkdir(parents=True, exist_ok=True)
    saved.write_text(json.dumps(rows, indent=1))
    block = table_block(rows)
    replace_block(PAGE, TABLE_START, TABLE_END, block)
    print(block)
    return 0


TABLE_START, TABLE_END = "<!-- generalisation-table -->", "<!-- /generalisation-table -->"
TABLE_SOURCES = {"plymouth": "Plymouth 57546, 6 held-out fields (training slide)",
                 "train": "MalariaNet Trip_038, Trip_062, Trip_083 (another lab; chose the stain matching and the "
                          "self-calibration, trained nothing)",
                 "test": "MalariaNet test slides Trip_022, Trip_053, Trip_073, Trip_804 (another lab; left out of "
                         "training and of every choice)",
                 "chula": f"Chula, {N_CHULA} fields (a third lab, no parasites: every candidate is false)"}


def table_block(rows: dict) -> str:
    """The page's generated table: a row per model and scorer, a column per source measured, and with
    other seeds of the recipe, its mean and spread per scorer."""
    run = rows.get("run", {})
    known = (CURRENT_LABEL, BEFORE_LABEL, HANDMADE_LABEL)
    keys = [k for k in rows if k.split("|")[0] in known or k.startswith(SEED_LABEL)]  # not an older run's rows
    order = sorted(keys, key=lambda k: (HANDMADE_LABEL in k, BEFORE_LABEL in k, SEED_LABEL in k, k))
    columns = [c for c in TABLE_SOURCES if any(c in rows[k] for k in keys)]
    lines = [TABLE_START, "## Giemsa (`giemsa-rbc`): one table", "",
             f"{run.get('date', '')}, {run.get('machine', '')}, {run.get('minutes', 0):.0f} min. "
             f"Command: `{run.get('command', '')}`.", "",
             ("Each cell: per-cell AUROC and AP (infected against healthy found cells; on MalariaNet since "
              "2026-12-03 a parasite's cell is the found cell holding most of its mask, and a neighbour the "
              "mask only touches is left out), parasites on a candidate "
              "cell and false candidates per 100 healthy cells at the default setting (what `detect` does with "
              "no options: the model's default, 1% for a stained-smear model since 2026-12-02 (5% before), the "
              "slide's self-calibration, stain matching), parasites on a candidate at the "
              "threshold that flags 2 of 100 healthy cells, and pixel AP of the heatmap against the parasite "
              "masks over the whole field and inside found cells. Cells are found by the package's finder. One "
              "model file per row; the rows 'same recipe, seed N' are other builds of the shipped file's recipe "
              "(`benchmarks/build/giemsa_model.py --arch fast --seed N`, its stain stored by "
              "`benchmarks/build/stain_reference.py`), and the last rows give the mean and spread over them "
              "and the shipped file."),
             "", "| model, scorer | " + " | ".join(TABLE_SOURCES[c] for c in columns) + " |",
             "| --- |" + " --- |" * len(columns)]
    for key in order:
        label, scorer = key.split("|")
        row = rows[key]
        name = label if scorer == "-" else f"{label}, {scorer}"
        if scorer == "-":  # a hand-made map has no default threshold: only ranking and the oracle point
            row = {src: {k: v for k, v in m.items() if k not in ("false_per_100", "parasites_on_candidate")}
                   for src, m in row.items()}
        lines.append(f"| {name} | " + " | ".join(cell_text(row[c]) if c in row else "" for c in columns) + " |")
    for scorer in sorted({k.split("|")[1] for k in keys if k.startswith(SEED_LABEL)}):
        group = [rows[k] for k in keys if k.split("|")[1] == scorer
                 and (k.startswith(SEED_LABEL) or k.split("|")[0] == CURRENT_LABEL)]
        lines.append(f"| **{SPREAD_LABEL} ({len(group)} files), {scorer}** | "
                     + " | ".join(spread_text([g[c] for g in group if c in g]) for c in columns) + " |")
    return "\n".join(lines + [TABLE_END])


def spread_text(cells: list[dict]) -> str:
    """Mean +- sd over files of the table's main numbers for one source."""
    parts = []
    for key, name, scale, digits in SPREAD_KEYS:
        v = np.array([c[key] for c in cells if key in c and np.isfinite(c[key])], float) * scale
        if len(v) > 1:
            unit = "%" if scale == 100 else ""
            parts.append(f"{name} {v.mean():.{digits}f}{unit} +- {v.std(ddof=1):.{digits}f}{unit}")
    return "; ".join(parts)


def selection_lines(sel: dict) -> list[str]:
    """Mean and spread over seeds of each recipe x scorer x rule on the selection data."""
    groups: dict[tuple[str, str, str], list[dict]] = {}
    for key, row in sel.items():
        if key == "saturation":
            continue
        stem, scorer, rule = key.split("|")
        recipe = stem.rsplit("-s", 1)[0] if stem.rsplit("-s", 1)[-1].isdigit() else stem
        groups.setdefault((recipe, scorer, rule), []).append(row)

    def ms(rows, source, key):
        v = np.array([r.get(source, {}).get(key, np.nan) for r in rows], float)
        if not np.isfinite(v).any():
            return "-"
        return f"{np.nanmean(v):.3f} +- {np.nanstd(v):.3f}" if len(v) > 1 else f"{v[0]:.3f}"

    lines = [("| recipe | scorer | rule | seeds | MalariaNet selection: cell AUROC | AP | parasites on a candidate at "
              "2 false/100 | pixel AP in cells | false candidates per 100 healthy at the default setting |"),
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for (recipe, scorer, rule), rows in sorted(groups.items()):
        shown = {"giemsa-rbc-before": "giemsa-rbc as shipped", "giemsa-aug": "candidate, augmented",
                 "giemsa-noaug": "candidate, not augmented"}.get(recipe, recipe)
        lines.append(f"| {shown} | {scorer} | {rule} | {len(rows)} | {ms(rows, 'malarianet_selection', 'auroc')} | "
                     f"{ms(rows, 'malarianet_selection', 'ap')} | "
                     f"{ms(rows, 'malarianet_selection', 'parasites_on_candidate_at_2')} | "
                     f"{ms(rows, 'malarianet_selection', 'pixel_ap_cells')} | "
                     f"{ms(rows, 'malarianet_selection', 'false_per_100')} |")
    if "saturation" in sel:
        sat = sel["saturation"]
        m = sat["malarianet_selection"]
        lines.append(f"| hand-made: HSV saturation | - | - | - | {m.get('auroc', np.nan):.3f} | {m.get('ap', np.nan):.3f} | "
                     f"{m.get('parasites_on_candidate_at_2', np.nan):.3f} | {m.get('pixel_ap_cells', np.nan):.3f} | - |")
    return lines


def fluorescence_lines(fl: dict) -> list[str]:
    chosen = ", ".join(f"{k} {v}x" for k, v in sorted(fl["chosen"].items(), key=lambda kv: -kv[1]))
    lines = [(f"Choosing the scorer and rule on a random half of `supn_fl_cells/validation` (25 + 25 cells) and "
              f"measuring the choice on the other half, {fl['n_splits']} times: held-out AUROC "
              f"**{fl['selection_held_out_auroc_mean']:.3f} +- {fl['selection_held_out_auroc_sd']:.3f}** "
              f"(choices: {chosen}). Hand-made bright-spot detector on all 100 cells: AUROC "
              f"{fl['handmade_bright_spots']['auroc']:.3f}, AP {fl['handmade_bright_spots']['ap']:.3f}."), "",
             (f"| scorer, rule | AUROC on the 100 validation cells | AP | AUROC with the {fl['n_held_back_healthy']} "
              "held-back healthy training cells added as healthy test cells | AP | AUROC on the held-out halves, "
              "mean +- sd |"),
             "| --- | --- | --- | --- | --- | --- |"]
    for k, v in fl["options"].items():
        half = fl["fixed_rule_half_auroc"][k]
        lines.append(f"| {k.replace('|', ', ')} | {v['auroc_validation']:.3f} | {v['ap_validation']:.3f} | "
                     f"{v['auroc_with_held_back_healthy']:.3f} | {v['ap_with_held_back_healthy']:.3f} | "
                     f"{half[0]:.3f} +- {half[1]:.3f} |")
    return lines


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("step", choices=("select", "table", "fluorescence", "page"))
    p.add_argument("--data-root", type=Path, default=DATA)
    p.add_argument("--models", type=Path, default=REPO / "runs" / "h4" / "models")
    p.add_argument("--before", type=Path, default=None)
    p.add_argument("--sources", default="plymouth,train,test,chula", help="table: which sources to (re)measure")
    p.add_argument("--current", default="giemsa-rbc", help="table: the model measured as this version (name or file)")
    p.add_argument("--seeds", type=Path, nargs="*", default=[],
                   help="table: other builds of the shipped recipe (files), for the spread between seeds")
    p.add_argument("--cells", type=Path, default=REPO / "runs" / "h4" / "cells")
    p.add_argument("--splits", type=int, default=500)
    p.add_argument("--fl-models", nargs="+", default=["fluorescence-rbc"],
                   help="fluorescence: models (names or files) to estimate; the first is the page's, the others "
                        "(other seeds) give the spread between runs")
    p.add_argument("--fl-json", type=Path, default=None,
                   help="fluorescence: write the measurements here (default runs/generalisation/fluorescence.json)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rules", default="purple", help="score rules to compare in select (comma-separated)")
    p.add_argument("--plymouth", action="store_true", help="select: also score the Plymouth validation fields")
    p.add_argument("--scorers", default="supn,diag,ensemble", help="table: the scorers measured (comma-separated)")
    p.add_argument("--jobs", type=int, default=7, help="select, table: processes scoring at once")
    argv = sys.argv[1:] if argv is None else argv
    args = p.parse_args(argv)
    args.argv = argv[1:]
    if args.step != "select":
        torch.set_num_threads(args.threads)
    return {"select": select, "table": table, "fluorescence": fluorescence, "page": page}[args.step](args)


def page(args) -> int:
    """Rewrite the page's table from the saved measurements (no model is run)."""
    replace_block(PAGE, TABLE_START, TABLE_END, table_block(json.loads((WORK / "table.json").read_text())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
