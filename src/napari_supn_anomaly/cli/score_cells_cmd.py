"""supn-anomaly score-cells: score a folder of single-cell crops and write one CSV row per crop."""
from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from ..files import atomic_outputs, check_output_file
from ..pipeline.sensitivity import default_fpr, describe_default_fprs
from ..scoring.registry import scorer_info, scorer_names
from ..supn.devices import DEVICE_CHOICES
from .progress import ProgressLine

if TYPE_CHECKING:
    from ..scoring import Scorer

COLUMNS = ("file", "score", "healthy_fpr", "candidate", "mask", "cell_diameter_px")


def add_parser(sub, name):
    p = sub.add_parser(name, help="score single-cell crops (higher = more anomalous) into a CSV table",
                       description="Score every single-cell crop in a folder with a model of healthy cells. "
                                   "Writes one CSV row per image: file, score (higher = more anomalous), "
                                   "healthy_fpr (the fraction of the model's held-back healthy cells that "
                                   "score at least as high) and candidate (healthy_fpr <= --fpr).")
    p.add_argument("--model", required=True, metavar="MODEL",
                   help="a built-in model name (see 'supn-anomaly models') or a model file")
    p.add_argument("--images", required=True, metavar="DIR", help="folder of single-cell crops (PNG, JPEG, TIFF)")
    p.add_argument("--masks", metavar="DIR",
                   help="folder of cell masks matched by file name; without it the cell is found in each crop")
    p.add_argument("--out", required=True, metavar="FILE.csv", help="CSV file to write")
    p.add_argument("--scorer", default="supn", choices=scorer_names(), metavar="NAME",
                   help="supn: learned sparse precision (default); diag, l2: the paper's baselines; or one of "
                        "the seed papers' scorers: " + ", ".join(n for n in scorer_names() if not scorer_info(n).likelihood))
    p.add_argument("--healthy", metavar="DIR",
                   help="folder of healthy single-cell crops, to calibrate a scorer the model has no healthy "
                        "calibration for (needed by the seed papers' scorers)")
    p.add_argument("--segmenter", metavar="FILE",
                   help="trained network of a self-supervised (ssl-*) scorer made for this model, as saved by "
                        "'supn-anomaly train-scorer' or 'supn-anomaly evaluate --save-segmenters' (default: the "
                        "network shipped with a built-in model)")
    p.add_argument("--fpr", type=float, default=None, metavar="F",
                   help="a cell is a candidate when at most this fraction of healthy cells scores as high "
                        f"(default: the model's, {describe_default_fprs()})")
    p.add_argument("--cell-diameter", type=float, metavar="PX",
                   help="typical cell diameter in the crops, in pixels (default: measured from the cells)")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES, help="where the model runs (default auto)")
    p.add_argument("--batch-size", type=int, default=64, metavar="N", help="cells scored at once (default 64)")
    return p


def run(args) -> int:
    import numpy as np

    from ..models import load_model
    from ..scoring import calibrate

    from ..cells.measure import check_cell_diameter
    from ..crop_folders import list_image_files

    if args.fpr is not None and not 0.0 <= args.fpr <= 1.0:
        raise InputError("--fpr must lie between 0 and 1")
    if args.cell_diameter is not None:
        check_cell_diameter(args.cell_diameter, "--cell-diameter")
    if args.batch_size < 1:
        raise InputError("--batch-size must be at least 1")
    # a table of scores is replaced by a new run; an input (model, network, crop or mask) never is
    inputs = [p for p in (args.model, args.segmenter) if p] + [
        f for folder in (args.images, args.masks, args.healthy) if folder for f in list_image_files(folder)]
    out = check_output_file(args.out, overwrite=True, inputs=inputs)
    model = load_model(args.model)
    if args.fpr is None:
        args.fpr = default_fpr(model.modality)
    scorer = _resolve(model, args.scorer, args.segmenter)
    scale = None if args.cell_diameter is None else model.cell_diameter_px / args.cell_diameter
    folder, crops, masks, scale = read_standardised(model, args.images, args.masks, scale, "reading crops")
    model.to(args.device)
    if not scorer.calibrated and not scorer.info.likelihood:
        if not args.healthy:
            raise InputError(f"model {model.name!r} has no healthy calibration for scorer {scorer.name!r}; "
                             f"give --healthy DIR with healthy single-cell crops")
        _, h_crops, h_masks, _ = read_standardised(model, args.healthy, None, scale, "reading healthy crops")
        calibrate(scorer, h_crops, h_masks, batch_size=args.batch_size)
    result = scorer.score(crops, masks, batch_size=args.batch_size,
                          on_progress=ProgressLine(f"scoring with {model.name} ({scorer.name})"))
    return _write_scores(args, scorer, out, folder, masks, result.scores.astype(np.float64), scale)


def _resolve(model, name: str, network_file: str | None) -> Scorer:
    """The scorer asked for, uncalibrated if need be (--healthy calibrates it); a network file attached first."""
    from ..scoring import ScorerNetworks, resolve

    if not network_file:
        return resolve(model, name, require_calibration=False)
    if not scorer_info(name).needs_network:
        raise InputError(f"scorer {name!r} has no network of its own; leave out --segmenter")
    networks = ScorerNetworks()
    attached = networks.attach_file(model, network_file)  # its own calibration (if any) replaces the model's
    if attached != name:
        raise InputError(f"{Path(network_file).name} is the network of {attached!r}, not of {name!r}")
    return resolve(model, name, networks.get(model, name), require_calibration=False)


def _write_scores(args, scorer: Scorer, out, folder, masks, scores, scale) -> int:
    """One CSV row per crop, written under a temporary name first; a summary line on stderr."""
    from ..cells import equivalent_diameter

    found = masks.reshape(len(masks), -1).any(1)
    threshold = scorer.threshold_for_fpr(args.fpr)
    with atomic_outputs([out]) as (tmp,), open(tmp, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(COLUMNS)
        for i, name in enumerate(folder.names):
            fpr = scorer.healthy_fpr(scores[i])
            mask_source = "given" if folder.masks[i] is not None else ("found" if found[i] else "none")
            writer.writerow([name, f"{scores[i]:.6g}", f"{fpr:.4g}", int(scores[i] > threshold), mask_source,
                             f"{equivalent_diameter(masks[i]) / scale:.1f}" if found[i] else ""])
    n_cand = int((scores > threshold).sum())
    print(f"{len(scores)} cells scored, {n_cand} candidate(s) at healthy false-positive rate {args.fpr:g}; "
          f"wrote {out}", file=sys.stderr)
    if (~found).any():
        print(f"warning: no cell found in {int((~found).sum())} crop(s); they were scored over the whole crop "
              f"(column mask = none)", file=sys.stderr)
    return 0


def read_standardised(model, images_dir, masks_dir, scale, label):
    """(folder, crops, masks, scale) of a folder of single-cell crops, cut at the model's scale."""
    from ..cells import standardise_crops
    from ..crop_folders import match_channels, read_crop_folder

    folder = read_crop_folder(images_dir, masks_dir, progress=ProgressLine(label))
    images = match_channels(folder.images, model.channels, model.channel_names, model.name)
    try:
        crops, masks, scale = standardise_crops(images, folder.masks, model.geometry, scale=scale)
    except ValueError as exc:
        hint = "; give --masks or --cell-diameter" if masks_dir is None and scale is None else ""
        raise InputError(f"{exc}{hint}") from exc
    return folder, crops, masks, scale
