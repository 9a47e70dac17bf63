"""``supn-anomaly train --init MODEL --fields IMAGE... --regions REGIONS.csv``: fine-tuning on whole fields.

The same job as the Fine-tune widget: the cells inside the rectangles of REGIONS.csv (columns
image,y0,x0,y1,x1, pixels) are found by segmentation and used as healthy examples; the base
model is copied, a slice of cells is held back for calibration, and the result is saved.
"""
from __future__ import annotations

import sys
from pathlib import Path

from ..io import open_image
from ..models import load_model
from ..models.model_file import MODEL_SUFFIX
from ..pipeline.stacks import normalise_axes, plane_axes_of, read_plane, select_channels
from ..training.finetune import FinetuneSettings, finetune
from ..training.regions import cells_from_fields, guess_modality, read_regions_csv
from ..training.trainer import Progress
from .errors import InputError
from .progress import ProgressLine



def check_budget_options(args) -> None:
    """The time, iteration and thread options shared by both ways of training."""
    if args.minutes is not None and args.minutes <= 0:
        raise InputError("--minutes must be positive")
    if args.iterations is not None and args.iterations < 1:
        raise InputError("--iterations must be at least 1")
    if args.threads is not None and args.threads < 1:
        raise InputError("--threads must be at least 1")

def add_field_options(source, p) -> None:
    """Add --fields to the mutually exclusive input group and --regions beside it."""
    source.add_argument("--fields", nargs="+", metavar="IMAGE",
                        help="whole fields (TIFF, OME-TIFF, PNG) with healthy cells marked in --regions; needs --init")
    p.add_argument("--regions", metavar="CSV",
                   help="with --fields: rectangles around healthy cells, columns image,y0,x0,y1,x1 (pixels)")


def read_field(path: str, model) -> tuple[str, object]:
    """(file name, one plane [C, Y, X]) of a field, with the channels the model reads."""
    image = open_image(path)
    axes = normalise_axes(image.axes, len(image.data.shape))
    if plane_axes_of(axes):
        raise InputError(f"{Path(path).name} is a stack ({image.axes}); give single fields to train on")
    chan_axis, channels = select_channels(axes, image.data.shape, model, None)
    return Path(path).name, read_plane(image.data, axes, (), chan_axis, channels)


def run_fields(args) -> int:
    if not args.init:
        raise InputError("--fields fine-tunes a model: give the base model with --init MODEL")
    if not args.regions:
        raise InputError("--fields needs --regions REGIONS.csv (columns image,y0,x0,y1,x1) saying where healthy cells are")
    check_budget_options(args)
    out = Path(args.out).expanduser()
    if out.is_dir() or not out.parent.exists():
        raise InputError(f"--out {out} must be a model file name in an existing folder")
    regions = read_regions_csv(args.regions)
    base = load_model(args.init)
    fields = dict(read_field(p, base) for p in args.fields)
    # how the cells look is read from the fields (dark on light: bright-field), not from --modality,
    # whose default describes crops for training from scratch
    modality = guess_modality(next(iter(fields.values())))
    cells = cells_from_fields(fields, regions, modality)
    settings = FinetuneSettings(minutes=args.minutes if args.minutes is not None else FinetuneSettings.minutes,
                                seed=args.seed, modality=modality, device=args.device, num_threads=args.threads)
    if args.iterations is not None:
        settings.mean_iters = settings.precision_iters = args.iterations
    name = args.name or (out.name[: -len(MODEL_SUFFIX)] if out.name.endswith(MODEL_SUFFIX) else out.stem)
    print(f"fine-tuning {base.name} on {len(cells)} healthy cells of {len(fields)} field(s) "
          f"({modality}; at most {settings.minutes:g} min)", file=sys.stderr)
    line = ProgressLine("fine-tuning")
    model = None
    for event in finetune(base, cells, settings, name=name, base_source=str(args.init)):
        if isinstance(event, Progress):
            if event.message:
                line.close()
                print(event.message, file=sys.stderr)
            elif event.stage in ("mean", "precision"):
                line(event.iteration, event.total, f"{event.stage} stage, loss {event.loss:.4f}, "
                                                   f"{event.elapsed_s:.0f} s")
        else:
            model = event
    line.close()
    path = model.save(out)
    print(f"saved {path} ({model.metadata['training']['seconds']:.0f} s of training, calibrated on "
          f"{model.metadata['training']['n_held_back']} held-back cells; base model {base.name} unchanged)",
          file=sys.stderr)
    return 0
