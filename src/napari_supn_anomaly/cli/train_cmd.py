"""supn-anomaly train: train a model of healthy cells from scratch, or fine-tune one (--init), and save it.

From scratch, healthy single-cell crops go through ``training.fit_anomaly_model``. With --init,
crops (--images) or whole fields with healthy regions (--fields, --regions) go through
``training.finetune``: the same recipe as the Fine-tune widget.
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..cells.modality import MODALITIES
from ..errors import InputError
from ..files import check_output_file
from ..progress import Progress
from ..supn.devices import DEVICE_CHOICES
from .progress import ProgressLine
from .train_fields import add_field_options

if TYPE_CHECKING:
    from ..training.regions import TrainingCells


def add_parser(sub, name):
    p = sub.add_parser(name, help="train a model of healthy cells (from scratch or from --init)",
                       description="Train a SUPN-VAE on crops of healthy cells and save it, calibrated on a "
                                   "held-back share of the cells, as a model file for score-cells and napari. "
                                   "With --init, fine-tune that model instead (the Fine-tune widget's recipe).")
    source = p.add_mutually_exclusive_group(required=True)
    source.add_argument("--images", metavar="DIR", help="folder of single-cell crops of healthy cells (PNG, JPEG, TIFF)")
    p.add_argument("--masks", metavar="DIR",
                   help="folder of cell masks matched to --images by file name; without it the cell is found in each crop")
    add_field_options(source, p)  # --fields IMAGE... --regions REGIONS.csv (fine-tuning on whole fields)
    p.add_argument("--out", required=True, metavar="FILE", help="model file to write (.safetensors is added if missing)")
    p.add_argument("--overwrite", action="store_true",
                   help="replace --out if it exists (never the --init model: fine-tuning writes a new file)")
    p.add_argument("--init", metavar="MODEL",
                   help="start from this model (built-in name or file) instead of from scratch: fine-tuning")
    p.add_argument("--minutes", type=float, metavar="M", help="stop training after about M minutes")
    p.add_argument("--iterations", type=int, metavar="N",
                   help="iterations of each training stage (default: the built-in recipe)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    p.add_argument("--modality", default=None, choices=MODALITIES,
                   help="how cells look: decides how cells are found and the score rule (default: fluorescence "
                        "from scratch; with --init, read from the images)")
    p.add_argument("--channel-names", nargs="+", metavar="NAME", help="names of the image channels")
    p.add_argument("--name", help="model name stored in the file (default: the file name)")
    p.add_argument("--device", default="auto", choices=DEVICE_CHOICES)
    p.add_argument("--threads", type=int, metavar="N", help="CPU threads for training (default: all)")
    return p


def check_options(args) -> Path:
    """The checks both ways of training share, before any training; the model file to write."""
    from ..models.builtin import builtin_model_names, builtin_model_path
    from ..models.model_file import model_file_path
    from ..training.trainer import check_minutes

    try:
        check_minutes(args.minutes, "--minutes")
    except ValueError as exc:
        raise InputError(str(exc)) from None
    if args.iterations is not None and args.iterations < 1:
        raise InputError("--iterations must be at least 1")
    if args.threads is not None and args.threads < 1:
        raise InputError("--threads must be at least 1")
    if args.fields and not args.init:
        raise InputError("--fields fine-tunes a model: give the base model with --init MODEL")
    out = Path(args.out).expanduser()
    if out.is_dir():
        raise InputError(f"--out {out} is a folder; give a model file name")
    base = builtin_model_path(args.init) if args.init in builtin_model_names() else args.init
    inputs = [p for p in [base, args.regions, *(args.fields or [])] if p]
    return check_output_file(model_file_path(out), overwrite=args.overwrite, inputs=inputs)


def model_name(args, out: Path) -> str:
    from ..models.model_file import MODEL_SUFFIX

    return args.name or (out.name[: -len(MODEL_SUFFIX)] if out.name.endswith(MODEL_SUFFIX) else out.stem)


def run(args) -> int:
    out = check_options(args)
    model = _finetune(args, out) if args.init else _from_scratch(args, out)
    path = model.save(out)
    check = model.metadata.get("finetune_check") or {}
    if check.get("verdict") == "base":
        print(f"saved {path}: the base model {model.metadata['base_model']['name']}, unchanged - fine-tuning made "
              f"it worse on these fields, so it was not kept", file=sys.stderr)
        return 0
    training = model.metadata["training"]
    base = f"; base model {model.metadata['base_model']['name']} unchanged" if args.init else ""
    print(f"saved {path} ({training['n_cells']} cells, {training['seconds']:.0f} s of training, calibrated on "
          f"{training['n_held_back']} held-back cells{base})", file=sys.stderr)
    return 0


def _from_scratch(args, out: Path):
    from ..crop_folders import read_crop_folder
    from ..supn.devices import describe_device, resolve_device
    from ..training import TrainConfig, fit_anomaly_model

    folder = read_crop_folder(args.images, args.masks)
    images = folder.images
    channel_names = args.channel_names
    if channel_names is not None and len(channel_names) != images[0].shape[0]:
        raise InputError(f"{len(channel_names)} channel name(s) given but the images have {images[0].shape[0]} channel(s)")
    device = resolve_device(args.device)
    cfg = TrainConfig(seed=args.seed, max_minutes=args.minutes, num_threads=args.threads)
    if args.iterations is not None:
        cfg.stage1_iters = cfg.stage2_iters = args.iterations
    print(f"training on {len(images)} cells ({describe_device(device)})", file=sys.stderr)
    data = {"images": str(folder.root), "n_files": len(folder)}
    return _run(fit_anomaly_model(images, folder.masks, name=model_name(args, out),
                                  modality=args.modality or "fluorescence", channel_names=channel_names, cfg=cfg,
                                  description=f"trained with supn-anomaly train on {folder.root}",
                                  training_data=data, device=device), "training")


def _finetune(args, out: Path):
    from ..models import load_model
    from ..training.finetune import FinetuneSettings, finetune
    from .train_fields import field_cells

    base = load_model(args.init)
    fields = labels = None
    if args.fields:
        cells, modality, fields, labels = field_cells(args, base)
    else:
        cells, modality = _crop_cells(args, base), args.modality or "auto"
    settings = FinetuneSettings(minutes=args.minutes if args.minutes is not None else FinetuneSettings.minutes,
                                seed=args.seed, modality=modality, device=args.device, num_threads=args.threads)
    if args.iterations is not None:
        settings.mean_iters = settings.precision_iters = args.iterations
    print(f"fine-tuning {base.name} on {len(cells)} healthy cells (at most {settings.minutes:g} min)",
          file=sys.stderr)
    return _run(finetune(base, cells, settings, name=model_name(args, out), base_source=str(args.init),
                         fields=fields, field_labels=labels), "fine-tuning")


def _crop_cells(args, base) -> TrainingCells:
    from ..crop_folders import match_channels, read_crop_folder
    from ..training.regions import TrainingCells

    folder = read_crop_folder(args.images, args.masks)
    images = match_channels(folder.images, base.channels, base.channel_names, base.name)
    sources = [{"image": name, "y": 0.0, "x": 0.0, "how": "crop"} for name in folder.names]
    return TrainingCells(images, list(folder.masks), sources, [{"images": str(folder.root)}])


def _run(events, label: str):
    """Drive a training generator with a progress line; its model."""
    line = ProgressLine(label)
    model = None
    for event in events:
        if not isinstance(event, Progress):
            model = event
        elif event.message:
            line.close()
            print(event.message, file=sys.stderr)
        elif event.loss is not None:
            total = event.done if event.stage == "done" else event.total
            line(event.done, total, f"{event.stage} stage, loss {event.loss:.4f}, {event.elapsed_s:.0f} s")
    line.close()
    return model
