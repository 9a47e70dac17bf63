"""supn-anomaly train-scorer: train a self-supervised scorer's network (ssl-*) for a model and save it.

The network learns on most of the given healthy cells and is calibrated on a seeded held-back
share of them, so the saved file (safetensors) carries its own healthy threshold and runs as it
is in the Detect widget ('Scorer network…'), `detect --segmenter` and `score-cells --segmenter`.
"""
from __future__ import annotations

import sys

from ..errors import InputError
from ..files import check_output_file
from ..progress import Progress
from ..scoring.registry import network_scorer_names
from ..supn.devices import DEVICE_CHOICES
from .progress import ProgressLine


def add_parser(sub, name):
    p = sub.add_parser(name, help="train a self-supervised scorer's network (ssl-*) on healthy cells for a model",
                       description="Train the segmentation network of a self-supervised scorer on healthy "
                                   "single-cell crops (with synthetic anomalies), calibrate it on a held-back "
                                   "share of them and save it for use with that model.")
    p.add_argument("--model", required=True, help="the model the network will score with (built-in name or file)")
    p.add_argument("--scorer", default="ssl-ppii", choices=network_scorer_names(), help="which scorer (default ssl-ppii)")
    p.add_argument("--images", required=True, metavar="DIR", help="folder of single-cell crops of healthy cells")
    p.add_argument("--masks", metavar="DIR", help="folder of cell masks matched by file name")
    p.add_argument("--out", required=True, metavar="FILE", help="network file to write (.safetensors is added)")
    p.add_argument("--overwrite", action="store_true", help="replace --out if it exists (never the --model file)")
    p.add_argument("--cell-diameter", type=float, metavar="PX",
                   help="typical cell diameter in the crops, in pixels (default: measured from the cells)")
    p.add_argument("--holdout", type=float, default=0.1, metavar="F",
                   help="share of the cells held back for calibration (default 0.1)")
    p.add_argument("--iterations", type=int, default=400, metavar="N", help="training steps (default 400)")
    p.add_argument("--pool", type=int, default=512, metavar="N", help="synthetic training samples (default 512)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=DEVICE_CHOICES, help="where the network trains (default cpu)")
    return p


def run(args) -> int:
    from ..cells.measure import check_cell_diameter
    from ..models import load_model
    from ..models.model_file import model_file_path
    from ..scoring import save_network, train_calibrated_network
    from ..supn.devices import resolve_device
    from ..training.fit import split_holdout
    from .score_cells_cmd import read_standardised

    if not 0.0 < args.holdout < 1.0:
        raise InputError("--holdout must lie between 0 and 1, e.g. 0.1")
    if args.iterations < 1 or args.pool < 2:
        raise InputError("--iterations must be at least 1 and --pool at least 2")
    if args.cell_diameter is not None:
        check_cell_diameter(args.cell_diameter, "--cell-diameter")
    # before the training, not after it; the model the network is for is never replaced
    out = check_output_file(model_file_path(args.out), overwrite=args.overwrite, inputs=[args.model])
    model = load_model(args.model)
    scale = None if args.cell_diameter is None else model.cell_diameter_px / args.cell_diameter
    _, crops, masks, _ = read_standardised(model, args.images, args.masks, scale, "reading healthy crops")
    found = masks.reshape(len(masks), -1).any(1)
    crops, masks = crops[found], masks[found]
    train, hold = split_holdout(len(crops), args.holdout, args.seed)
    if len(train) < 2 or len(hold) < 2:
        raise InputError(f"{len(crops)} cells were found; at least 4 healthy cells are needed (2 to train, "
                         f"2 to calibrate), and a few hundred give a useful network")
    report = ProgressLine(f"{args.scorer} on {len(train)} cells")
    for event in train_calibrated_network(args.scorer, model, crops[train], masks[train], crops[hold], masks[hold],
                                          iterations=args.iterations, pool_size=args.pool, seed=args.seed,
                                          device=resolve_device(args.device)):
        if isinstance(event, Progress):
            report(event.done, event.total, event.stage + ("" if event.loss is None else f" loss {event.loss:.4f}"))
        else:
            network, calibration = event
    path = save_network(out, network, model, calibration)
    print(f"{args.scorer}: trained on {len(train)} cells in {network.seconds:.0f} s, calibrated on "
          f"{calibration.n_cells}; wrote {path}", file=sys.stderr)
    return 0
