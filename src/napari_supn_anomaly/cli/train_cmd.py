"""supn-anomaly train: train (or fine-tune) a model of healthy cells and save it to a file.

The input is chosen by ``training_cells(args)``, which returns (images, masks, description);
other inputs (e.g. whole fields with regions) add an option to the mutually exclusive group in
``add_input_options`` and a branch there.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..crop_folders import match_channels, read_crop_folder
from ..models import AnomalyModel, load_model
from ..models.model_file import MODEL_SUFFIX
from ..supn.devices import describe_device, resolve_device
from ..training import TrainConfig, fit_anomaly_model
from ..training.fit import DEFAULT_SCORE_RULES
from ..training.trainer import Progress
from .errors import InputError
from .progress import ProgressLine
from .train_fields import add_field_options, check_budget_options, run_fields


def add_input_options(p):
    """Where the healthy training cells come from: exactly one of these options."""
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", metavar="DIR", help="folder of single-cell crops of healthy cells (PNG, JPEG, TIFF)")
    p.add_argument("--masks", metavar="DIR",
                   help="folder of cell masks matched to --images by file name; without it the cell is found in each crop")
    add_field_options(source, p)  # --fields IMAGE... --regions REGIONS.csv (fine-tuning on whole fields)
    return source


def add_parser(sub, name):
    p = sub.add_parser(name, help="train a model of healthy cells (from scratch or from --init)",
                       description="Train a SUPN-VAE on crops of healthy cells and save it, calibrated on a "
                                   "held-back tenth of the cells, as a model file for score-cells and napari.")
    add_input_options(p)
    p.add_argument("--out", required=True, metavar="FILE", help=f"model file to write ({MODEL_SUFFIX} is added if missing)")
    p.add_argument("--init", metavar="MODEL",
                   help="start from this model (built-in name or file) instead of from scratch: fine-tuning")
    p.add_argument("--minutes", type=float, metavar="M", help="stop training after about M minutes")
    p.add_argument("--iterations", type=int, metavar="N",
                   help="iterations of each training stage (default: the built-in recipe)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument("--modality", default="fluorescence", choices=sorted(DEFAULT_SCORE_RULES),
                   help="how cells look: decides how cells are found and the score rule (default fluorescence)")
    p.add_argument("--channel-names", nargs="+", metavar="NAME", help="names of the image channels")
    p.add_argument("--name", help="model name stored in the file (default: the file name)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda", "mps"))
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for training (default: all)")
    return p


def training_cells(args, channels: int | None = None, channel_names=(), model_name: str = ""):
    """(images [C, H, W] list, masks list, description of the data) from the chosen input."""
    if args.images is not None:
        folder = read_crop_folder(args.images, args.masks)
        images = folder.images
        if channels is not None:
            images = match_channels(images, channels, list(channel_names), model_name)
        return images, folder.masks, {"images": str(folder.root), "n_files": len(folder)}
    raise InputError("give the healthy training cells with --images")


def _train_config(args, init: AnomalyModel | None) -> TrainConfig:
    cfg = TrainConfig(seed=args.seed, max_minutes=args.minutes, num_threads=args.threads)
    if init is not None:  # fine-tuning: a short schedule at a lower rate
        cfg.stage1_iters, cfg.stage2_iters = max(1, cfg.stage1_iters // 5), max(1, cfg.stage2_iters // 5)
        cfg.lr, cfg.lr_stage2 = cfg.lr / 4, cfg.lr_stage2 / 4
    if args.iterations is not None:
        cfg.stage1_iters = cfg.stage2_iters = args.iterations
    return cfg


def run(args) -> int:
    if getattr(args, "fields", None):
        return run_fields(args)
    check_budget_options(args)
    out = Path(args.out).expanduser()
    if out.is_dir():
        raise InputError(f"--out {out} is a folder; give a model file name")
    if not out.parent.exists():
        raise InputError(f"the folder for --out does not exist: {out.parent}")
    init = load_model(args.init) if args.init else None
    images, masks, data = training_cells(args, None if init is None else init.channels,
                                         () if init is None else init.channel_names,
                                         "" if init is None else init.name)
    device = resolve_device(args.device)
    cfg = _train_config(args, init)
    name = args.name or (out.name[: -len(MODEL_SUFFIX)] if out.name.endswith(MODEL_SUFFIX) else out.stem)
    channel_names = args.channel_names
    if channel_names is not None and len(channel_names) != images[0].shape[0]:
        raise InputError(f"{len(channel_names)} channel name(s) given but the images have {images[0].shape[0]} channel(s)")
    print(f"training on {len(images)} cells ({describe_device(device)})", file=sys.stderr)
    model = None
    line = ProgressLine("training")
    for event in fit_anomaly_model(images, masks, name=name, modality=args.modality,
                                   channel_names=channel_names, cfg=cfg, init=init,
                                   description=f"trained with supn-anomaly train on {data.get('images', '')}",
                                   training_data=data, device=device):
        if isinstance(event, Progress):
            if event.message:
                line.close()
                print(event.message, file=sys.stderr)
            total = event.iteration if event.stage == "done" else event.total
            line(event.iteration, total, f"{event.stage} stage, loss {event.loss:.4f}, {event.elapsed_s:.0f} s")
        else:
            model = event
    line.close()
    path = model.save(out)
    cal = model.metadata.get("calibration", {}).get("supn", {})
    print(f"saved {path} ({len(images)} cells, {model.metadata['training']['seconds']:.0f} s of training, "
          f"calibrated on {cal.get('n_cells', 0)} held-back cells)", file=sys.stderr)
    return 0
