"""Every scorer on the three datasets -> docs/benchmarks/scorers.md (+ CSV and ROC curves).

    python benchmarks/evaluate_all.py                      # built-in models where they exist
    python benchmarks/evaluate_all.py --fl-model /tmp/fl.safetensors --beta-model /tmp/fl-beta4.safetensors
    python benchmarks/evaluate_all.py --assemble A.csv,B.csv     # rebuild the page from earlier runs

Models: fluorescence -> built-in ``fluorescence-rbc`` (or --fl-model); Giemsa -> built-in
``giemsa-rbc`` tested on the fields it did not train on (or a small model trained here on the
first two thirds of the fields); Remoscope -> a small model trained here on the healthy boxes
of three fields, tested on the other four. Self-supervised scorers are trained here on healthy
cells (never on test cells). Timings are wall-clock on a shared machine: see the load average.

The page keeps its hand-written findings: everything between the title and the generated part
(the "Date ..." paragraph before "Commands (one run per dataset, then assembled):") is carried
over when the page is rewritten, unless --preface names a file to use instead.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np
import torch

from napari_supn_anomaly.evaluation import eval_sets
from napari_supn_anomaly.evaluation.datasets import giemsa_fields, load_giemsa_cells, load_remoscope_fields
from napari_supn_anomaly.evaluation.harness import evaluate_scorers, markdown_table, read_csv, write_csv
from napari_supn_anomaly.evaluation.roc import plot_roc
from napari_supn_anomaly.models import builtin_model_names, load_model
from napari_supn_anomaly.progress import Progress
from napari_supn_anomaly.scoring import scorer_names
from napari_supn_anomaly.supn import ArchConfig
from napari_supn_anomaly.training.fit import fit_anomaly_model
from napari_supn_anomaly.training.trainer import TrainConfig

BETA_SCORERS = ("supn", "recon", "grad-kl", "grad-elbo", "combi")
REMOSCOPE_TRAIN = ["img_0385.png", "img_0459.png", "img_0587.png"]


def loadavg() -> str:
    try:
        return Path("/proc/loadavg").read_text().split(" ")[0:3].__str__()
    except OSError:
        return "n/a"


def train_small(images, masks, name, modality, channels, iters, log):
    arch = ArchConfig(crop_size=64, channels=channels, latent_dim=32, widths=(16, 32, 48, 64),
                      head_widths=(8, 16, 24, 32))
    cfg = TrainConfig(batch_size=32, stage1_iters=iters, stage2_iters=max(1, iters // 2), num_threads=1)
    model = None
    for ev in fit_anomaly_model(images, masks, name=name, modality=modality, arch=arch, cfg=cfg):
        if isinstance(ev, Progress):
            if ev.done % 200 == 0 and ev.loss is not None:
                log(f"  {name}: {ev.stage} {ev.done}/{ev.total} loss {ev.loss:.3f}")
        else:
            model = ev
    return model


def giemsa_model_and_fields(args, root, log):
    fields = giemsa_fields(root)
    if args.giemsa_model or "giemsa-rbc" in builtin_model_names():
        model = load_model(args.giemsa_model or "giemsa-rbc")
        data = model.metadata.get("training", {}).get("data", {})
        test, train = data.get("validation_fields"), data.get("training_fields") or data.get("fields")
        if train:
            test = test or [f for f in fields if f not in set(train)]
            if test:
                return model, list(test), list(train)
        return model, fields[len(fields) - len(fields) // 3:], fields[:len(fields) - len(fields) // 3]
    train_fields, test = fields[:len(fields) - len(fields) // 3], fields[len(fields) - len(fields) // 3:]
    log(f"training a small Giemsa model on healthy cells of fields {train_fields[0]}..{train_fields[-1]}")
    cells = load_giemsa_cells(root, fields=train_fields, infected=False, max_healthy=args.giemsa_train_cells, seed=1)
    model = train_small(cells.images, cells.masks, "giemsa-eval-small", "brightfield-stained", 3, args.train_iters, log)
    model.metadata["training"]["data"] = {"fields": train_fields}
    return model, test, train_fields


def remoscope_model(args, root, log):
    if args.remoscope_model:
        return load_model(args.remoscope_model)
    cells, _ = eval_sets.remoscope_box_cells(root, REMOSCOPE_TRAIN, classes=("healthy",))
    log(f"training a small Remoscope model on {len(cells)} healthy boxes of {', '.join(REMOSCOPE_TRAIN)}")
    return train_small(cells.images, cells.masks, "remoscope-eval-small", "brightfield", 1, args.train_iters, log)


def summary_table(rows, main_sets: dict[str, str], pixel_set: tuple[str, str]) -> str:
    """One row per scorer: per-cell metrics on each dataset's real labels, pixel metrics on one truth set."""
    by = {(r.dataset, r.test_set, r.scorer): r for r in rows}
    scorers = list(dict.fromkeys(r.scorer for r in rows))
    head = ["scorer", "cost"]
    for ds in main_sets:
        head += [f"{ds} AUROC [95% CI]", f"{ds} AUPRC", f"{ds} TPR@5%FPR"]
    head += [f"pixel AUROC ({pixel_set[0]} {pixel_set[1]})", "pixel AP", "AUPRO@0.3", "Dice best", "Dice fixed",
             "s / 100 cells (fl)"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    fmt = lambda v: "" if v is None or not np.isfinite(v) else f"{v:.3f}"  # noqa: E731
    for s in scorers:
        cost = next(r.cost for r in rows if r.scorer == s)
        cells = [s, cost]
        for ds, test_set in main_sets.items():
            r = by.get((ds, test_set, s))
            cells += [str(r.cells.auroc), fmt(r.cells.auprc.value), fmt(r.cells.tpr.get(0.05))] if r else ["", "", ""]
        pr = by.get((pixel_set[0], pixel_set[1], s))
        p = pr.pixel if pr else None
        cells += [fmt(p.auroc), f"{fmt(p.ap)} ({p.prevalence:.3f})", fmt(p.aupro), fmt(p.dice_best),
                  fmt(p.dice_fixed)] if p else ["", "", "", "", ""]
        fr = by.get(("fl", next(iter(main_sets.values())), s))
        cells.append("" if fr is None or fr.seconds_per_100 is None else f"{fr.seconds_per_100:.2f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def where_supn_loses(rows) -> list[str]:
    """Plain statements, per test set, of every scorer whose per-cell AUROC beats SUPN's."""
    out = []
    sets = list(dict.fromkeys((r.dataset, r.test_set) for r in rows))
    for ds, test_set in sets:
        here = [r for r in rows if (r.dataset, r.test_set) == (ds, test_set)]
        supn = next((r for r in here if r.scorer == "supn"), None)
        if supn is None or not np.isfinite(supn.cells.auroc.value):
            continue
        better = sorted((r for r in here if r.scorer != "supn" and r.cells.auroc.value > supn.cells.auroc.value),
                        key=lambda r: -r.cells.auroc.value)
        if not better:
            out.append(f"- {ds} / {test_set}: SUPN ({supn.cells.auroc.value:.3f}) is the best scorer here.")
            continue
        clear = [r for r in better if r.cells.auroc.low > supn.cells.auroc.high]
        names = ", ".join(f"{r.scorer} {r.cells.auroc.value:.3f}" for r in better)
        out.append(f"- {ds} / {test_set}: SUPN {supn.cells.auroc.value:.3f} is beaten by {len(better)} scorer(s): "
                   f"{names}" + (f"; clearly (95% intervals apart) by {', '.join(r.scorer for r in clear)}." if clear
                                 else "; the 95% intervals overlap for all of them."))
    return out


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data-root", default=os.environ.get("SUPN_SHARED_DATA", "../shared/data"))
    p.add_argument("--fl-model", default=None)
    p.add_argument("--beta-model", default=None,
                   help="comma-separated fluorescence models trained with different KL weights (beta-VAE rows)")
    p.add_argument("--giemsa-model", default=None)
    p.add_argument("--remoscope-model", default=None)
    p.add_argument("--scorers", default="all")
    p.add_argument("--label", default=None, help="name the scorer rows, e.g. '{name} (beta=4 model)' (fl only)")
    p.add_argument("--datasets", default="fl,giemsa,remoscope")
    p.add_argument("--ssl-iterations", type=int, default=300)
    p.add_argument("--train-iters", type=int, default=600, help="stage-1 iterations of models trained here")
    p.add_argument("--giemsa-train-cells", type=int, default=800)
    p.add_argument("--giemsa-max-healthy", type=int, default=300, help="healthy test cells drawn from the held-back fields")
    p.add_argument("--bootstrap", type=int, default=1000)
    p.add_argument("--save-models", default=None, help="folder to keep the models trained here in")
    p.add_argument("--csv", default=None, help="write this run's rows here (default: next to --out)")
    p.add_argument("--assemble", default=None,
                   help="comma-separated CSVs of earlier runs (one per dataset) to assemble into --out, "
                        "instead of running anything")
    p.add_argument("--preface", default=None,
                   help="markdown file (findings, figures) placed after the title (default: keep the hand-written "
                        "part of the existing --out page)")
    p.add_argument("--out", default="docs/benchmarks/scorers.md")
    p.add_argument("--images", default="docs/images/scorers")
    args = p.parse_args()
    preface = Path(args.preface).read_text() if args.preface else existing_preface(Path(args.out))
    if args.assemble:
        write_markdown(Path(args.out), [Path(p) for p in args.assemble.split(",")], Path(args.images), preface,
                       preface_file=args.preface)
        return
    torch.set_num_threads(1)
    root = Path(args.data_root)
    names = scorer_names() if args.scorers == "all" else args.scorers.split(",")
    log_lines = []

    def log(msg):
        print(msg, flush=True)
        log_lines.append(msg)

    started = time.time()
    load_start = loadavg()
    rows, evaluations, models_used, notes = [], [], {}, []
    datasets = args.datasets.split(",")
    if "fl" in datasets:
        fl_model = load_model(args.fl_model or "fluorescence-rbc")
        models_used["fl"] = fl_model.name
        data = eval_sets.fl_eval_data(fl_model, root)
        notes += data.notes
        ev = evaluate_scorers(fl_model, data, names, ssl_iterations=args.ssl_iterations, n_boot=args.bootstrap, log=log,
                              label=args.label)
        rows += [r for r in ev.rows if not (args.label and r.scorer.startswith("hand-made"))]
        evaluations.append(("fl", fl_model.name, ev))
        for path in (args.beta_model.split(",") if args.beta_model else []):
            beta = load_model(path)
            kl = beta.metadata.get("training", {}).get("settings", {}).get("kl_weight", "?")
            bdata = eval_sets.fl_eval_data(beta, root)
            bev = evaluate_scorers(beta, bdata, [n for n in BETA_SCORERS if n in names], n_boot=args.bootstrap,
                                   log=log, label=f"{{name}} (beta={kl:g} model)")
            rows += [r for r in bev.rows if not r.scorer.startswith("hand-made")]
            models_used[f"fl (beta={kl:g})"] = beta.name
    if "giemsa" in datasets:
        g_model, test_fields, train_fields = giemsa_model_and_fields(args, root, log)
        if args.save_models and g_model.name == "giemsa-eval-small":
            g_model.save(Path(args.save_models) / g_model.name)
        models_used["giemsa"] = g_model.name
        data = eval_sets.giemsa_eval_data(g_model, root, test_fields, train_fields,
                                          max_healthy_test=args.giemsa_max_healthy)
        ev = evaluate_scorers(g_model, data, names, ssl_iterations=args.ssl_iterations, n_boot=args.bootstrap, log=log)
        rows += ev.rows
        evaluations.append(("giemsa", g_model.name, ev))
    if "remoscope" in datasets:
        r_model = remoscope_model(args, root, log)
        if args.save_models and not args.remoscope_model:
            r_model.save(Path(args.save_models) / r_model.name)
        models_used["remoscope"] = r_model.name
        test_fields = [f.name for f in load_remoscope_fields(root) if f.name not in REMOSCOPE_TRAIN]
        data = eval_sets.remoscope_eval_data(r_model, root, test_fields, REMOSCOPE_TRAIN)
        notes += data.notes
        ev = evaluate_scorers(r_model, data, names, ssl_iterations=args.ssl_iterations, n_boot=args.bootstrap, log=log)
        rows += ev.rows
        evaluations.append(("remoscope", r_model.name, ev))

    out = Path(args.out)
    csv_path = Path(args.csv) if args.csv else out.with_suffix(".csv")
    write_csv(rows, csv_path)
    images = Path(args.images)
    n_png = 0
    for ds, model_name, ev in evaluations:
        for set_name, scores in ev.scores.items():
            slug = re.sub(r"[^A-Za-z0-9]+", "_", set_name).strip("_")
            plot_roc(ev.labels[set_name], scores, images / f"roc_{ds}_{slug}.png", f"{set_name} ({model_name})")
            n_png += 1
    info = {"command": "python benchmarks/evaluate_all.py " + " ".join(sys.argv[1:]), "load_start": load_start,
            "load_end": loadavg(), "minutes": round((time.time() - started) / 60, 1),
            "notes": list(dict.fromkeys(notes)), "models": models_used}
    csv_path.with_suffix(".json").write_text(json.dumps(info, indent=1))
    print(f"wrote {csv_path} and {n_png} ROC curves to {images}")
    write_markdown(out, [csv_path], images, preface, preface_file=args.preface)


GENERATED_ANCHOR = "Commands (one run per dataset, then assembled):"


def existing_preface(page: Path) -> str:
    """The hand-written part of a page written by :func:`write_markdown`: the text between its title and
    the generated "Date ..." paragraph that precedes the list of commands ("" for a new page)."""
    if not page.exists():
        return ""
    text = page.read_text()
    end = text.find(GENERATED_ANCHOR)
    if end < 0:
        return ""
    end = text.rfind("\nDate ", 0, end)
    start = text.find("\n") + 1
    return text[start:end].strip() if 0 < start <= end else ""


def write_markdown(out: Path, csv_paths: list[Path], images: Path, preface: str = "",
                   preface_file: str | None = None) -> None:
    rows, runs = [], []
    for path in csv_paths:
        rows += read_csv(path)
        side = Path(path).with_suffix(".json")
        runs.append(json.loads(side.read_text()) if side.exists() else {"command": f"(rows from {path})"})
    main_sets = {}
    for r in rows:
        main_sets.setdefault(r.dataset, r.test_set)
    pixel_set = ("fl", "parasite-transplant") if "fl" in main_sets else (next(iter(main_sets)), "parasite-transplant")
    text = [
        "# Scorers compared: SUPN-VAE against the seed papers' alternatives",
        "",
        preface,
        "",
        "Date 2026-11-22; machine: 2-core x86_64 CPU, 24 GB, no GPU, shared with four other helpers' jobs "
        "(so timings are pessimistic; see the load averages).",
        "",
        GENERATED_ANCHOR,
        "",
        *[f"- `{r['command']}` (load average {r.get('load_start', '?')} at the start, {r.get('load_end', '?')} "
          f"at the end; {r.get('minutes', '?')} min; models: "
          + ", ".join(f"{k}: `{v}`" for k, v in r.get("models", {}).items()) + ")" for r in runs],
        "- `python benchmarks/evaluate_all.py --assemble " + ",".join(str(p) for p in csv_paths)
        + (f" --preface {preface_file}`" if preface_file else "`")
        + (" (keeps the page's hand-written findings above)" if preface and not preface_file else ""),
        "",
        "## One table",
        "",
        "Per-cell metrics on the real labels of each dataset (AUROC with a 95% bootstrap interval over cells); "
        f"pixel metrics on {pixel_set[0]} '{pixel_set[1]}': real parasites cut from infected cells and added "
        "to healthy validation cells (each healthy cell appears once clean, once with the parasite), the only "
        "real-parasite pixel truth we have. 'Dice fixed' uses the threshold that 1% of healthy "
        "calibration-cell pixels exceed; 'Dice best' is the oracle. Seconds per 100 cells: wall-clock scoring "
        "only, on the shared CPU.",
        "",
        summary_table(rows, main_sets, pixel_set),
        "## Where SUPN loses (per-cell AUROC, computed from the rows)",
        "",
        *where_supn_loses(rows),
        "",
        "## Every test set",
        "",
        markdown_table(rows),
        "",
        "Notes:",
        *[f"- {n}" for r in runs for n in r.get("notes", [])],
        f"- Full numbers: {', '.join(f'`{p}`' for p in csv_paths)}; ROC curves: `{images}/`.",
        "",
    ]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text("\n".join(text))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
