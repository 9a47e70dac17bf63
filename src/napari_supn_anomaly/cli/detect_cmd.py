"""supn-anomaly detect: find parasite candidates in whole fields and stacks, write heatmaps and tables."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from ..files import check_input_file, check_output_folder
from ..io import READABLE_FORMATS
from ..pipeline.intensity import MODES as INTENSITY_MODES
from ..pipeline.sensitivity import DEFAULT_FPR, describe_fpr
from ..supn.devices import DEVICE_CHOICES

if TYPE_CHECKING:
    import numpy as np

    from ..scoring import Scorer


def add_parser(sub, name):
    p = sub.add_parser(name, help="find parasite candidates in images (fields or stacks)",
                       description="Segment the cells of each image, score them with a model of healthy cells "
                                   "and write <stem>_heatmap.tif, <stem>_cells.tif, <stem>_cells.csv and "
                                   "<stem>_candidates.csv for every input (with --overlay also "
                                   "<stem>_overlay.png, one per plane of a stack).")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help=f"images or stacks: {READABLE_FORMATS}")
    p.add_argument("--model", required=True, help="a built-in model name (see 'supn-anomaly models') or a model file")
    p.add_argument("--out", required=True, help="folder for the results (created if missing)")
    p.add_argument("--channel", type=int, default=None, help="channel to analyse in multi-channel images (0-based)")
    p.add_argument("--cell-diameter", type=float, default=None, metavar="PX",
                   help="cell diameter in the images, pixels (default: measured from the cells found)")
    p.add_argument("--cells", default=None, metavar="LABELS.tif",
                   help="cell labels to use instead of the built-in segmentation (one input only)")
    p.add_argument("--axes", default=None,
                   help="name the image axes when the file gets them wrong, e.g. CYX for a (3, Y, X) TIFF of "
                        "three channels (read as RGB otherwise) or ZYX for three focal planes")
    p.add_argument("--scorer", default=None,
                   help="which scorer to use (default: the model's own); the seed papers' scorers the model is "
                        "calibrated for, and ssl-* scorers whose network ships with the model or is given by "
                        "--segmenter (see 'supn-anomaly models')")
    p.add_argument("--segmenter", default=None, metavar="FILE",
                   help="trained network of a self-supervised scorer (ssl-*) made for this model, e.g. by "
                        "'supn-anomaly train-scorer'; --scorer defaults to its scorer")
    group = p.add_mutually_exclusive_group()
    group.add_argument("--fpr", type=float, default=DEFAULT_FPR,
                       help=f"target fraction of healthy cells flagged; sets the threshold (default {DEFAULT_FPR}: "
                            f"{describe_fpr(DEFAULT_FPR)})")
    group.add_argument("--threshold", type=float, default=None, help="score threshold (overrides --fpr)")
    p.add_argument("--min-area", type=int, default=1, metavar="PX",
                   help="drop candidate regions smaller than this many pixels (default 1: keep all)")
    p.add_argument("--intensity", choices=INTENSITY_MODES, default="auto",
                   help="bring the image's intensities to the model's range: auto (only when they are clearly "
                        "off, e.g. a 12/16-bit camera), match (always) or off (default auto)")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="where the model runs (default auto)")
    p.add_argument("--batch-size", type=int, default=32, help="cells scored at once (default 32)")
    p.add_argument("--overlay", action="store_true",
                   help="also write <stem>_overlay.png per plane: the image as it is, with cells and candidates "
                        "outlined, beside the heatmap with its colour scale")
    p.add_argument("--quiet", action="store_true", help="print only the summary per input")
    return p


def output_stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".png", ".jpg", ".jpeg"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def read_labels(path: str) -> np.ndarray:
    import numpy as np
    import tifffile

    p = check_input_file(path, "cell labels")
    try:
        labels = tifffile.imread(p)
    except Exception as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{p.name} could not be read as a TIFF label image ({detail})") from exc
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"{p.name} is not a label image (its pixels are {labels.dtype}, not integers)")
    return labels


def resolve_scorer(model, name: str | None, network_file: str | None = None) -> Scorer:
    """The scorer to run; ``network_file`` is attached to the model first (its scorer is the default)."""
    from ..scoring import ScorerNetworks, resolve

    network = None
    if network_file:
        networks = ScorerNetworks()
        attached = networks.attach_file(model, network_file)
        if name is not None and name != attached:
            raise InputError(f"{Path(network_file).name} is the network of {attached!r}, not of {name!r}")
        name, network = attached, networks.get(model, attached)
    return resolve(model, name, network)


# how the command line names the detection settings, for messages
OPTION_NAMES = {"fpr": "--fpr", "threshold": "--threshold", "cell_diameter": "--cell-diameter",
                "batch_size": "--batch-size", "min_area": "--min-area", "intensity": "--intensity"}


def validate(args):
    """The settings, the inputs and the output folder, checked before anything is read or computed."""
    from ..io import result_paths
    from ..pipeline.stacks import DetectSettings

    if args.cells and len(args.inputs) > 1:
        raise InputError("--cells gives the cells of one image; run one input at a time with it")
    settings = DetectSettings(fpr=args.fpr, threshold=args.threshold, cell_diameter=args.cell_diameter,
                              batch_size=args.batch_size, device=args.device, min_area=args.min_area,
                              intensity=args.intensity).check(OPTION_NAMES)
    inputs = [check_input_file(p, "input") for p in args.inputs]
    stems = [output_stem(p) for p in inputs]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise InputError(f"two inputs are called {twice[0]}; their results would overwrite each other: "
                         "run them into different --out folders")
    given = [Path(p) for p in (args.cells, args.model, args.segmenter) if p and Path(p).is_file()]
    names = [p.name for stem in stems for p in result_paths(args.out, stem)]
    check_output_folder(args.out, names, inputs=inputs + given)
    return settings


def run(args) -> int:
    from ..io import open_image, with_axes, write_result
    from ..models import load_model
    from ..overlay import write_overlays
    from ..pipeline.stacks import iter_detect, run_to_end

    settings = validate(args)
    model = load_model(args.model)
    scorer = resolve_scorer(model, args.scorer, args.segmenter)
    labels = read_labels(args.cells) if args.cells else None
    for text in args.inputs:
        path = Path(text)
        image = open_image(path)
        try:
            image = with_axes(image, args.axes or image.axes)
        except InputError as exc:
            where = f"{path.name}: --axes {args.axes}" if args.axes else path.name
            raise InputError(f"{where}: {exc}") from None
        if not args.quiet:
            print(f"{path.name}: {image.describe()}", file=sys.stderr)

        def report(event, _quiet=args.quiet):
            if not _quiet and event.stage == "plane done":
                print(f"  {event.message}", file=sys.stderr)

        events = iter_detect(image.data, image.axes, scorer, channel=args.channel, labels=labels,
                             settings=settings, source={"input": str(path), "input_axes": image.axes})
        try:
            result = run_to_end(events, report)
        except ValueError as exc:
            raise InputError(f"{path.name}: {exc}") from exc
        paths = write_result(result, args.out, output_stem(path))
        if args.overlay:
            write_overlays(result, image.data, image.axes, args.out, output_stem(path), channel=args.channel,
                           title=path.name)
        print(f"{path.name}: {result.summary()} -> {paths[0].parent}")
    return 0
