"""Models that travel: the built-in models on slides and labs they were not trained or tuned on.

    python benchmarks/build/giemsa_model.py --malarianet --init FILE --seed 0 1 2 --compare-augment
    python benchmarks/generalisation.py select --models runs/h4/models [--data-root ../shared/data]
    python benchmarks/generalisation.py table --before runs/h4/models/giemsa-rbc-before.safetensors
    python benchmarks/generalisation.py fluorescence

``select`` scores every candidate Giemsa model file (one per recipe and seed; built by
benchmarks/build/giemsa_model.py) with SUPN and the diagonal baseline and each colour score rule
on the MalariaNet *selection* slides and the Plymouth validation fields, and writes
runs/generalisation/selection.json: the recipe, scorer and rule are chosen there.
``table`` measures the shipped models (and the files before this work) on sources that chose
nothing: the MalariaNet *test* slides, Chula fields and the Plymouth validation fields, with the
pipeline's own default detection (its default threshold path as it is at run time), and writes
docs/benchmarks/generalisation.md. ``fluorescence`` estimates the fluorescence model's AUROC on
cells the scorer and rule were not chosen on (repeated half splits of the 100 validation cells,
and the 132 held-back healthy training cells as extra healthy test cells).

Cells on whole fields are found by the package's own segmenter (cached under runs/generalisation/
cells; delete it when the cell finder changes).
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch

from napari_supn_anomaly.errors import ModelFileError
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
from napari_supn_anomaly.scoring import resolve

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
WORK = REPO / "runs" / "generalisation"
PAGE = REPO / "docs" / "benchmarks" / "generalisation.md"
GIEMSA_RULES = ("purple", "dark-channel")
FL_RULES = ("spot", "bright", "paper")
FL_OTHER_SCORERS = ("ensemble", "ssl-ppii")
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


def drop_fragmented(source, ratio: float = 0.5):
    """The fields whose found cells are not, on median, below ``ratio`` times the source's typical
    cell diameter: the segmenter cut those fields into thousands of fragments."""
    typical = np.nanmedian([c.diameter_px for _, c in source])
    return [(f, c) for f, c in source if not c.diameter_px < ratio * typical]


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
    return 0


# -- fluorescence ------------------------------------------------------------------------------------
def fl_options(model: AnomalyModel, crops, masks, data_root: Path) -> dict:
    """{scorer|rule: (scores of the validation crops, scores of the model's held-back healthy cells)}.

    The ensemble is calibrated here (on a copy, with the held-back cells, as
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
    for name in FL_OTHER_SCORERS:  # the calibrated ensemble and a self-supervised scorer, as shipped
        if name == "ensemble" and "ensemble" not in model.metadata.get("calibration", {}):
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


def _table_row(label: str, where: str, scorer: str, ply, sources: dict) -> tuple[str, dict]:
    torch.set_num_threads(1)
    model = _load(where)
    row = {} if ply is None else {"plymouth": plymouth_metrics(model, scorer, ply)}
    for key, source in sources.items():
        row[key] = field_metrics(model, scorer, source)
    print(label, scorer, {k: round(v.get("auroc", float("nan")), 3) for k, v in row.items()}, flush=True)
    return f"{label}|{scorer}", row


def table(args) -> int:
    started = time.perf_counter()
    cache = args.cells
    wanted = args.sources.split(",")
    ply = plymouth_cells(args.data_root) if "plymouth" in wanted else None
    sources = {k: field_source(args.data_root, k, cache) for k in ("test", "chula") if k in wanted}
    if args.skip_fragmented:
        sources = {k: drop_fragmented(v) for k, v in sources.items()}
    saved = WORK / "table.json"
    rows = json.loads(saved.read_text()) if saved.exists() else {}
    models = []
    if args.rows in ("current", "all"):
        models.append(("giemsa-rbc (this version)", args.current))
    if args.before and args.rows in ("before", "all"):
        models.append(("giemsa-rbc before (Plymouth only, no augmentation)", str(args.before)))
    jobs = [(label, where, scorer, ply, sources) for label, where in models for scorer in ("supn", "diag")]
    if jobs:
        # one forked process of one thread per model and scorer (no torch operation ran before)
        with multiprocessing.get_context("fork").Pool(len(jobs)) as pool:
            for key, row in pool.starmap(_table_row, jobs):
                rows[key] = {**rows.get(key, {}), **row}
    WORK.mkdir(parents=True, exist_ok=True)
    (WORK / f"table-{args.rows}.json").write_text(json.dumps({k: rows[k] for k in rows if k.split("|")[0] in
                                                             {m[0] for m in models}}, indent=1))
    if saved.exists():  # another run may have measured the other rows meanwhile
        rows = {**json.loads(saved.read_text()), **{k: v for k, v in rows.items()
                                                    if k.split("|")[0] in {m[0] for m in models}}}
    rows["settings"] = {"skip_fragmented": bool(args.skip_fragmented)}
    if args.rows in ("before", "all") or "hand-made: HSV saturation|-" not in rows:
        sat = {k: saturation_metrics(s) for k, s in sources.items()}
        if ply is not None:
            sat["plymouth"] = plymouth_saturation(ply)
        rows["hand-made: HSV saturation|-"] = {**rows.get("hand-made: HSV saturation|-", {}), **sat}
    saved.write_text(json.dumps(rows, indent=1))
    order = sorted(rows, key=lambda k: ("before" not in k, "hand-made" in k, k))
    write_page({k: rows[k] for k in order}, time.perf_counter() - started)
    return 0


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


def write_page(rows: dict, seconds: float) -> None:
    sel = json.loads((WORK / "selection.json").read_text()) if (WORK / "selection.json").exists() else None
    fl = json.loads((WORK / "fluorescence.json").read_text()) if (WORK / "fluorescence.json").exists() else None
    test_slides = ", ".join(s[:8] for s in MALARIANET_TEST_SLIDES)
    lines = ["# Models that travel: other slides, other labs", "",
             f"Date: {datetime.now(timezone.utc):%Y-%m-%d}. Machine: {_machine()}."
             + (f" Last table run: {seconds / 60:.0f} min." if seconds else ""),
             "",
             ("Commands (`runs/h4/models/giemsa-rbc-before.safetensors` is a copy of the shipped `giemsa-rbc`): "
              "`python benchmarks/build/giemsa_model.py --malarianet --init runs/h4/models/giemsa-rbc-before.safetensors "
              "--seed 0 1 2 --compare-augment`, `python benchmarks/generalisation.py select`, "
              "`python benchmarks/generalisation.py fluorescence`, `python benchmarks/generalisation.py table "
              "--before runs/h4/models/giemsa-rbc-before.safetensors --current runs/h4/models/giemsa-aug-s1.safetensors`, "
              "then the same with `--sources test --skip-fragmented`. The rows of the shipped model are the "
              "numbers before this issue's model work, measured with today's default detection (the slide's "
              "self-calibration); its earlier page [giemsa.md](giemsa.md) gives 0.995 / 0.980 on the Plymouth "
              "fields, the issue 55 false candidates per 100 Chula-like cells at the old 1% setting."),
             "", "## Giemsa (`giemsa-rbc`): sources that chose nothing", "",
             ("Each cell of the table: per-cell AUROC and AP (infected vs healthy found cells), parasites on a "
              "candidate cell and false candidates per 100 healthy cells at the default setting (the pipeline's "
              "own default threshold path), parasites on a candidate at the threshold that flags 2 of 100 healthy "
              "cells, and pixel AP of the heatmap against the parasite masks over the whole field and inside "
              "found cells."),
             "",
             (f"| model, scorer | Plymouth 57546, 6 held-out fields (training slide) | MalariaNet test slides "
              f"{test_slides} (left out of training and of every choice) | Chula, {N_CHULA} fields (other lab, "
              "no parasites: every candidate is false) |"),
             "| --- | --- | --- | --- |"]
    for key, row in rows.items():
        if "|" not in key:
            continue
        label, scorer = key.split("|")
        label = ROW_LABELS.get(label, label)
        name = label if scorer == "-" else f"{label}, {scorer}"
        if scorer == "-":  # a hand-made map has no default threshold: only ranking and the oracle point
            row = {src: {k: v for k, v in m.items() if k not in ("false_per_100", "parasites_on_candidate")}
                   for src, m in row.items()}
        lines.append(f"| {name} | {cell_text(row['plymouth'])} | {cell_text(row['test'])} | "
                     f"{cell_text(row['chula'])} |")
    if sel:
        slides = ", ".join(s[:8] for s in MALARIANET_SELECTION_SLIDES)
        lines += ["", f"## Giemsa: choosing the recipe, scorer and rule (MalariaNet selection slides {slides})",
                  "", *selection_lines(sel)]
    if fl:
        lines += ["", "## Fluorescence (`fluorescence-rbc`): a held-out estimate", ""] + fluorescence_lines(fl)
    if rows.get("settings", {}).get("skip_fragmented"):
        lines += ["", FRAGMENTED_NOTE]
    PAGE.write_text("\n".join(lines) + "\n\n" + NOTES)


ROW_LABELS = {"giemsa-rbc (this version)": "candidate (not shipped): + 3 MalariaNet slides, augmented, seed 1",
              "giemsa-rbc before (Plymouth only, no augmentation)": "**giemsa-rbc as shipped** (Plymouth only, unchanged)"}

FRAGMENTED_NOTE = (
    "MalariaNet test column: 2 of the 22 test fields (Trip_022 Image_11_add_16, Trip_053 Image_1_7) are left out "
    "(`--skip-fragmented`): the cell finder of 2026-11-29 cut each into about 6,000 fragments of 14-15 px "
    "(the cells are about 85 px), which swamp every per-cell number. With them in, the same run gave 14,912 "
    "'cells': SUPN AUROC 0.776 (before) / 0.687 (candidate), diagonal 0.760 / 0.806, saturation 0.821; "
    "runs/h4/table_with_fragmented_fields.json. That is a cell-finder bug (issue 11), reported there.")

NOTES = """## What was tried, what was chosen, and why the shipped Giemsa model did not change

- **Recipe.** The candidate `giemsa-rbc` models start from the shipped (Plymouth-only) network and
  learn, for 80 + 60 iterations (batch 32; about 20 minutes of a 2-core CPU shared by 7 jobs at load
  average 16-24), the Plymouth training cells plus 869 healthy cells of 3 MalariaNet slides
  (Trip_038, Trip_062, Trip_083; found by the package's segmenter, whole, away from every parasite;
  each drawn 3 times as often), with and without colour/intensity augmentation
  (`training/augment.py`: optical-density stain jitter, gamma, contrast, brightness, blur, noise),
  seeds 0, 1 and 2. A seeded tenth of the MalariaNet cells joins the Plymouth calibration cells.
  From scratch (800 + 350 iterations, as the first build) six models would have taken hours on
  this shared machine; the short fine-tune is what the time allowed, and it is a limitation.
- **Choice (selection slides Trip_064, Trip_065, 8 fields, 72 infected and 425 healthy found
  cells).** Cell AUROC did not move: SUPN 0.941 +- 0.001 with augmentation, 0.940 +- 0.003 without,
  0.944 before. Augmentation did raise the parasites found at 2 false candidates per 100 healthy
  cells (SUPN 0.87 +- 0.01 against 0.62 +- 0.06 without, 0.82 before), so the recipe with
  augmentation and its best seed (s1) were the candidate, SUPN its scorer.
- **Held-out check (test slides; nothing was chosen on them).** The candidate is not better: its
  SUPN ranks the test slides' cells worse than the shipped model and its SUPN heatmap is less
  precise (see the table), while only its diagonal head improved. As the issue asks, a model
  that is not better on held-out data is not shipped: **`giemsa-rbc` is unchanged** (same file),
  and the candidate files stay in `runs/h4/models` for the record.
- **Default scorer.** SUPN stays the default of both built-in models, because it won where it
  was chosen: Giemsa selection slides SUPN 0.944 against diagonal 0.897 (shipped model); fluorescence,
  `supn` with the `spot` rule was the choice in 433 of 500 half splits (ensemble and ssl-ppii
  were candidates too). SUPN against diagonal per source is in the tables: on the Plymouth
  fields they tie (0.995 / 0.996), on MalariaNet and on the fluorescence cells SUPN is ahead
  with the shipped model.
- **Heatmap (pixel AP): why the SUPN map misses parasites, and what was tried (issue 12 part 5; not
  met).** Diagnosis on the selection and the MalariaNet training slides (Trip_038, Trip_062,
  Trip_083, which the shipped model never saw), with the shipped `giemsa-rbc` SUPN head:
  * It is not a scale problem between cells: subtracting each cell's median of the map barely
    moves pixel AP inside cells (selection 0.417 -> 0.396, training slides 0.246 -> 0.228).
  * The model sees another lab's cells in colours it never learned. Normalised, Plymouth cells are
    blue-grey and MalariaNet cells tan; the decoded mean is a blue-grey cell that reproduces the
    parasite's darkness (mean intensity at parasite pixels -0.79 against -0.26 in healthy
    interiors, selection slides). The residual inside a parasite is then texture of both signs
    (whitened residual sd 6-9 per channel, mean near 0), so `purple` lights the purple cytoplasm and
    misses the dark core and pigment. Cell rims hold 18% (selection) and 32% (training slides) of
    the highest-scoring non-parasite pixels, against 10-11% of the pixels in cells.
  * Whitening removes the smooth colour signal: per crop pixel, the raw residual "bluer than the
    mean" (e_blue - e_red) reaches AUROC 0.86-0.87 / AP 0.53-0.61, while every linear combination
    of the whitened channels stays near AUROC 0.64 / AP 0.20-0.32 (a linear discriminant chosen on
    one set, measured on the other). The learned stencil is a high-pass filter: the inside of a
    parasite-sized blob whitens to about 0.
  * Tried (rules on the same model; SUPN; cell AUROC / AP / parasites on a candidate at 2 false per
    100 / pixel AP whole field / in cells):

    | rule | selection Trip_064, Trip_065 | training slides Trip_038, 062, 083 | test slides (measured after the choice) |
    | --- | --- | --- | --- |
    | `purple` (shipped) | 0.946 / 0.864 / 82% / 0.380 / 0.417 | 0.915 / 0.681 / 66% / 0.221 / 0.246 | 0.825 / 0.465 / 58% / 0.122 / 0.164 |
    | `purple-profiled` (new, registered, not shipped) | 0.962 / 0.907 / 89% / 0.404 / 0.443 | 0.915 / 0.715 / 74% / 0.200 / 0.222 | 0.823 / 0.461 / 60% / 0.093 / 0.124 |
    | `paper` (4x4 chi-square) | 0.960 / 0.881 / 79% / 0.464 / 0.509 | 0.894 / 0.539 / 49% / 0.184 / 0.205 | |
    | `paper` on the profiled residual | 0.958 / 0.911 / 81% / 0.534 / 0.587 | 0.887 / 0.531 / 50% / 0.230 / 0.256 | 0.806 / 0.366 / 46% / 0.117 / 0.157 |
    | matched filter, colour blue - red, sigma 2 px | 0.918 / 0.827 / 77% / 0.381 / 0.418 | 0.931 / 0.757 / 73% / 0.271 / 0.302 | 0.831 / 0.467 / 53% / 0.114 / 0.153 |
    | `dark-channel` | 0.933 / 0.809 / 71% / 0.234 / 0.256 | 0.911 / 0.641 / 63% / 0.112 / 0.124 | |
    | `dark-spot` (sigma 1 px) | 0.910 / 0.713 / 50% / 0.120 / 0.130 | 0.833 / 0.401 / 33% / 0.035 / 0.038 | |
    | optical-density absorber templates (grey; 1, 0.8, 0.3), sigma 1-2 px | <= 0.919 / 0.756 / 57% / 0.188 / 0.205 | <= 0.863 / 0.450 / 38% / 0.059 / 0.065 | |
    | hand-made: HSV saturation | 0.957 / 0.916 / 94% / 0.648 / 0.663 | AP in cells 0.295 | 0.843 / 0.546 / 62% / 0.413 / 0.432 (table above) |

    `purple-profiled` (in `supn/scoring.py`, `profile_colour`) removes from the whitened residual
    what a colour cast of the whole crop explains: a per-channel offset and gain of the decoded
    mean (6 numbers per crop), fitted under the learned precision (z' = z - Q (Q^T Q)^-1 Q^T z, Q
    the whitened cast basis). It is the SUPN residual, not a colour rule, and is exactly invariant
    to such a cast. It was the choice on the selection and training slides (better per cell on
    both; pixel AP +0.02 on one, -0.02 on the other), but on the test slides it is not better than
    `purple` per pixel (0.093 against 0.122 over the field), so, as the issue asks, **`giemsa-rbc`
    keeps `purple`**. The colour-template matched filters (the likelihood-ratio statistic of a
    coloured spot under the learned Gaussian) and the optical-density templates do not close the
    gap either. No SUPN map reaches saturation's pixel AP. What the diagnosis points at is the
    model, not the rule: a mean that does not reproduce the parasite and a precision learned on
    this lab's colours (the fine-tuning and colour-normalisation work of this issue). These
    numbers come from a scratch harness that caches the network's outputs per cell and reproduces
    the pipeline's field scoring (its `purple` row differs from the table's by up to 0.014); the
    selection rows can be repeated in the repository with `python benchmarks/generalisation.py
    select --rules purple,purple-profiled`. Smoothing the shipped map at parasite scale helps a
    little (selection, whole field: 0.386 unsmoothed, 0.403 / 0.425 / 0.439 with a Gaussian of 2 /
    4 / 8 px). About 10% of parasites lie in no found cell and can never be on a candidate.
- **Thresholds.** The default setting is the pipeline's own (5% sensitivity with the slide's
  self-calibration, issue 12 part 1): on Chula it flags about 3-4 cells per 100, which is what a
  5% setting asks for; it meets "at most 1 per 100" only at a lower setting.

Targets of the issue (measured on sources left out of training and of every choice):
- at most 1 false candidate per 100 Chula cells at the default setting: **not met** (3.6 per 100
  with the shipped model's SUPN; before the self-calibration, 55 per 100 at the 1% setting);
- on MalariaNet test slides, at least 90% of parasites on a candidate cell at no more than 2 false
  candidates per 100 healthy cells, and pixel AP above saturation's: **not met** (see the table:
  parasites on a candidate at 2 false/100 and pixel AP against saturation's);
- fluorescence, a held-out estimate of at least 0.90 and above the hand-made detector: **0.890 +-
  0.036, not met** (above the hand-made 0.816 on the same cells). The fluorescence model was not
  retrained (one build takes about 30 minutes of this CPU), so there is no spread over seeds.
"""


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("step", choices=("select", "table", "fluorescence", "page"))
    p.add_argument("--data-root", type=Path, default=DATA)
    p.add_argument("--models", type=Path, default=REPO / "runs" / "h4" / "models")
    p.add_argument("--before", type=Path, default=None)
    p.add_argument("--sources", default="plymouth,test,chula", help="table: which sources to (re)measure")
    p.add_argument("--skip-fragmented", action="store_true",
                   help="table: leave out fields the segmenter cut into fragments (median cell < half the usual)")
    p.add_argument("--current", default="giemsa-rbc", help="table: the model measured as this version (name or file)")
    p.add_argument("--cells", type=Path, default=REPO / "runs" / "h4" / "cells")
    p.add_argument("--splits", type=int, default=500)
    p.add_argument("--fl-models", nargs="+", default=["fluorescence-rbc"],
                   help="fluorescence: models (names or files) to estimate; the first is the page's, the others "
                        "(other seeds) give the spread between runs")
    p.add_argument("--fl-json", type=Path, default=None,
                   help="fluorescence: write the measurements here (default runs/generalisation/fluorescence.json)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--rows", choices=("current", "before", "all"), default="all",
                   help="table: which models to (re)measure; the others' rows are kept from the last run")
    p.add_argument("--rules", default="purple", help="score rules to compare in select (comma-separated)")
    p.add_argument("--plymouth", action="store_true", help="select: also score the Plymouth validation fields")
    p.add_argument("--jobs", type=int, default=7, help="select: model files scored at once")
    args = p.parse_args(argv)
    if args.step != "select":
        torch.set_num_threads(args.threads)
    return {"select": select, "table": table, "fluorescence": fluorescence, "page": page}[args.step](args)


def page(args) -> int:
    """Rewrite the page from the saved measurements (no model is run)."""
    rows = json.loads((WORK / "table.json").read_text())
    order = sorted(rows, key=lambda k: ("before" not in k, "hand-made" in k, k))
    write_page({k: rows[k] for k in order}, 0.0)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
