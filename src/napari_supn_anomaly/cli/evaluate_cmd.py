"""supn-anomaly evaluate: compare scorers on a labelled dataset (table + ROC curves)."""
from __future__ import annotations

import os
import re
from pathlib import Path

from ..errors import InputError
from ..files import atomic_outputs, check_output_folder
from ..scoring.registry import INSTANT, REGISTRY, scorer_names
from ..supn.devices import DEVICE_CHOICES

# every instant scorer: the slow and the self-supervised ones are asked for by name (or 'all')
DEFAULT_SCORERS = ",".join(n for n, info in REGISTRY.items() if info.cost == INSTANT and not info.needs_network)


def add_parser(sub, name):
    p = sub.add_parser(name, help="compare anomaly scorers on labelled cells: AUROC/AUPRC tables and ROC curves",
                       description="Score labelled healthy and infected cells with several scorers and write a "
                                   "table (CSV and Markdown) and ROC curves. Pixel metrics come from synthetic "
                                   "perturbations of real healthy cells (ellipses and transplanted parasites).")
    p.add_argument("--model", required=True, help="built-in model name or model file")
    p.add_argument("--dataset", required=True,
                   help="fl, giemsa or remoscope (the project's data, see --data-root), or a folder with "
                        "healthy/ and infected/ single-cell images (optional healthy_train/ to calibrate on)")
    p.add_argument("--scorers", default=DEFAULT_SCORERS,
                   help=f"comma-separated scorer names (default: {DEFAULT_SCORERS}); 'all' for every scorer")
    p.add_argument("--out", required=True, help="folder for results.csv, results.md and roc_*.png")
    p.add_argument("--data-root", default=os.environ.get("SUPN_SHARED_DATA"),
                   help="folder holding supn_fl_cells/, plymouth_pf_giemsa_cells/, remoscope_pf_unstained/ "
                        "(default: $SUPN_SHARED_DATA)")
    p.add_argument("--test-fields", default=None,
                   help="giemsa/remoscope: comma-separated fields to test on (default: the last third)")
    p.add_argument("--no-perturbations", action="store_true", help="skip the synthetic pixel-truth sets")
    p.add_argument("--ssl-iterations", type=int, default=300, help="training steps of self-supervised scorers")
    p.add_argument("--bootstrap", type=int, default=1000, help="bootstrap resamples for the 95%% intervals")
    p.add_argument("--max-healthy", type=int, default=300, help="giemsa: healthy test cells drawn (seeded)")
    p.add_argument("--save-segmenters", default=None, help="folder to save trained self-supervised networks in")
    p.add_argument("--device", default="cpu", choices=DEVICE_CHOICES, help="where the models run (default cpu)")
    return p


def _names(text: str) -> list[str]:
    names = scorer_names() if text.strip() == "all" else [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in scorer_names()]
    if unknown or not names:
        raise InputError(f"unknown scorer(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(scorer_names())}")
    return names


def runnable_on(model, names: list[str]) -> list[str]:
    """``names`` without the scorers not made for the model's cells (a stain's colour on cells that are not RGB,
    bright spots on stained cells)."""
    return [n for n in names if REGISTRY[n].made_for(model.channels, model.modality)]


def _fields(all_fields: list[str], test: str | None) -> tuple[list[str], list[str]]:
    if test:
        wanted = [f.strip() for f in test.split(",") if f.strip()]
        chosen = [f for f in all_fields if any(f == w or f.endswith(w) for w in wanted)]
        if not chosen:
            raise InputError(f"no field matches {test!r}; fields are {', '.join(all_fields)}")
    else:
        chosen = all_fields[len(all_fields) - len(all_fields) // 3:]
    rest = [f for f in all_fields if f not in chosen]
    if not rest:
        raise InputError("keep at least one field for calibration (do not test on every field)")
    return chosen, rest


def build_eval_data(model, args):
    from ..evaluation import eval_sets
    from ..evaluation.datasets import giemsa_fields, load_remoscope_fields

    perturb = not args.no_perturbations
    if args.dataset in eval_sets.DATASETS:
        if not args.data_root:
            raise InputError(f"--dataset {args.dataset} needs --data-root (or $SUPN_SHARED_DATA)")
        root = Path(args.data_root)
        if not root.is_dir():
            raise InputError(f"data folder not found: {root}")
        if args.dataset == "fl":
            return eval_sets.fl_eval_data(model, root, perturbations=perturb)
        if args.dataset == "giemsa":
            test, train = _fields(giemsa_fields(root), args.test_fields)
            return eval_sets.giemsa_eval_data(model, root, test, train, max_healthy_test=args.max_healthy,
                                              perturbations=perturb)
        names = [f.name for f in load_remoscope_fields(root)]
        test, train = _fields(names, args.test_fields)
        return eval_sets.remoscope_eval_data(model, root, test, train, perturbations=perturb)
    folder = Path(args.dataset)
    if not folder.is_dir():
        raise InputError(f"--dataset must be fl, giemsa, remoscope or a folder; {folder} does not exist")
    return eval_sets.folder_eval_data(model, folder)


def run(args) -> int:
    from ..evaluation.harness import evaluate_scorers, markdown_table, write_csv
    from ..evaluation.roc import plot_roc
    from ..models import load_model
    from ..scoring import save_network

    names = _names(args.scorers)
    if args.ssl_iterations < 1 or args.bootstrap < 1:
        raise InputError("--ssl-iterations and --bootstrap must be positive")
    out = check_output_folder(args.out)  # before the scoring, not after it
    if args.save_segmenters:
        check_output_folder(args.save_segmenters, option="--save-segmenters")
    model = load_model(args.model).to(args.device)
    if args.scorers.strip() == "all":
        names = runnable_on(model, names)
    data = build_eval_data(model, args)
    segmenters, calibrations = {}, {}
    result = evaluate_scorers(model, data, names, ssl_iterations=args.ssl_iterations, n_boot=args.bootstrap,
                              segmenters=segmenters, calibrations=calibrations)
    write_csv(result.rows, out / "results.csv")
    notes = "".join(f"\n- {n}" for n in data.notes)
    with atomic_outputs([out / "results.md"]) as (tmp,):
        tmp.write_text(f"# Scorers on {data.dataset} with model {model.name}\n\n" + markdown_table(result.rows)
                       + notes + "\n")
    for set_name, scores in result.scores.items():
        slug = re.sub(r"[^A-Za-z0-9]+", "_", set_name).strip("_")
        plot_roc(result.labels[set_name], scores, out / f"roc_{slug}.png", f"{set_name} ({model.name})")
    if args.save_segmenters:
        for name, seg in segmenters.items():
            save_network(Path(args.save_segmenters) / f"{model.name}-{name}", seg, model, calibrations.get(name))
    print(markdown_table(result.rows), end="")
    print(f"wrote {out / 'results.csv'}, {out / 'results.md'} and ROC curves to {out}")
    return 0
