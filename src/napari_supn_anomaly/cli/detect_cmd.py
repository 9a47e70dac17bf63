"""supn-anomaly detect: find parasite candidates in whole fields and stacks, write heatmaps and tables."""
from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from ..files import check_input_file, check_output_folder
from ..io import READABLE_FORMATS
from ..models.data_range import MODES as INTENSITY_MODES
from ..pipeline.sensitivity import describe_default_fprs
from ..supn.devices import DEVICE_CHOICES

if TYPE_CHECKING:
    from ..scoring import Scorer


def add_parser(sub, name):
    p = sub.add_parser(name, help="find parasite candidates in images (fields or stacks)",
                       description="Segment the cells of each image, score them with a model of healthy cells "
                                   "and write <stem>_heatmap.tif, <stem>_cells.tif, <stem>_cells.csv and "
                                   "<stem>_candidates.csv for every input (with --overlay also "
                                   "<stem>_overlay.png, one per plane of a stack); images with planes above "
                                   "4096 x 4096 pixels are read block by block and get <stem>_heatmap.ome.zarr "
                                   "and <stem>_cells.ome.zarr instead of the TIFFs.")
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
    group.add_argument("--fpr", type=float, default=None,
                       help="target fraction of healthy cells flagged; sets the threshold (default: the model's, "
                            f"{describe_default_fprs()})")
    group.add_argument("--threshold", type=float, default=None, help="score threshold (overrides --fpr)")
    p.add_argument("--calibration", choices=("slide", "model"), default="slide",
                   help="whose healthy cells set the threshold: slide (default: the cells of all the inputs "
                        "together, taken as fields of one slide, a stack's planes together, so another lab's "
                        "stain does not flag every cell; too few cells: the model's, moved to where their cells "
                        "score) or model (the healthy cells the model was trained on)")
    p.add_argument("--calibrate-per-input", action="store_true",
                   help="with --calibration slide: calibrate each input on its own cells instead of pooling the "
                        "inputs (use it when the inputs come from different slides)")
    p.add_argument("--min-area", type=int, default=1, metavar="PX",
                   help="drop candidate regions smaller than this many pixels (default 1: keep all)")
    p.add_argument("--intensity", choices=INTENSITY_MODES, default="auto",
                   help="bring the image's intensities to the model's range, and a stained smear's colours to the "
                        "stain of a stained model's training cells: auto (only when they are clearly off, e.g. a "
                        "12/16-bit camera or another lab's stain), match (always) or off (default auto)")
    p.add_argument("--device", choices=DEVICE_CHOICES, default="auto", help="where the model runs (default auto)")
    p.add_argument("--batch-size", type=int, default=32, help="cells scored at once (default 32)")
    p.add_argument("--overlay", action="store_true",
                   help="also write <stem>_overlay.png per plane: the image as it is, with cells and candidates "
                        "outlined, beside the heatmap with its colour scale")
    p.add_argument("--quiet", action="store_true", help="print only the summary per input")
    cluster = p.add_mutually_exclusive_group()
    cluster.add_argument("--workers", type=int, default=None, metavar="N",
                         help="run on N local worker processes (Dask); fields and the blocks of whole-slide "
                              "images are spread over them")
    cluster.add_argument("--scheduler", default=None, metavar="ADDRESS",
                         help="run on an existing Dask cluster: tcp://host:port or a scheduler file "
                              "(see the user guide for SLURM)")
    p.add_argument("--resume", action="store_true",
                   help="skip inputs whose results in --out are complete (after an interrupted run)")
    return p


def output_stem(path: Path) -> str:
    name = path.name
    for suffix in (".ome.tiff", ".ome.tif", ".tiff", ".tif", ".png", ".jpg", ".jpeg", ".ome.zarr", ".zarr"):
        if name.lower().endswith(suffix):
            return name[: -len(suffix)]
    return path.stem


def resolve_scorer(model, name: str | None, network_file: str | None = None) -> Scorer:
    """The scorer to run; ``network_file`` is attached to the model first (its scorer is the default)."""
    from ..cluster.scorers import resolve_scorer as resolve

    return resolve(model, name, network_file)


# how the command line names the detection settings, for messages
OPTION_NAMES = {"fpr": "--fpr", "threshold": "--threshold", "cell_diameter": "--cell-diameter",
                "batch_size": "--batch-size", "min_area": "--min-area", "intensity": "--intensity",
                "calibration": "--calibration"}


def validate(args):
    """The settings, the inputs and the output folder, checked before anything is read or computed."""
    from ..io import is_zarr_folder, result_paths
    from ..pipeline.stacks import DetectSettings

    if args.workers is not None and args.workers < 1:
        raise InputError("--workers must be a whole number of at least 1")
    if args.cells and len(args.inputs) > 1:
        raise InputError("--cells gives the cells of one image; run one input at a time with it")
    settings = DetectSettings(fpr=args.fpr, threshold=args.threshold, cell_diameter=args.cell_diameter,
                              batch_size=args.batch_size, device=args.device, min_area=args.min_area,
                              intensity=args.intensity, calibration=args.calibration).check(OPTION_NAMES)
    inputs = [Path(p) if is_zarr_folder(p) else check_input_file(p, "input") for p in args.inputs]
    if args.cells:
        check_input_file(args.cells, "cell labels")
    stems = [output_stem(p) for p in inputs]
    twice = sorted({s for s in stems if stems.count(s) > 1})
    if twice:
        raise InputError(f"two inputs are called {twice[0]}; their results would overwrite each other: "
                         "run them into different --out folders")
    given = [Path(p) for p in (args.cells, args.model, args.segmenter) if p and Path(p).is_file()]
    names = [p.name for stem in stems for p in result_paths(args.out, stem)] + ["summary.csv"]
    check_output_folder(args.out, names, inputs=inputs + given)
    return settings


def run(args) -> int:
    from ..cluster.detect_run import run_detect
    from ..cluster.scorers import ScorerSpec, load_scorer
    from ..io import results_complete
    from ..review.results_folder import keep_old_review

    settings = validate(args)
    spec = ScorerSpec(args.model, args.scorer, args.segmenter, settings.device)
    load_scorer(spec)  # a bad model or scorer is refused before any worker starts
    paths = [Path(p) for p in args.inputs]
    stems = [output_stem(p) for p in paths]
    for path, stem in zip(paths, stems):
        if not (args.resume and results_complete(args.out, stem)):
            kept = keep_old_review(args.out, stem)
            if kept is not None:
                print(f"  the earlier review of {path.name} is kept as {kept.name}", file=sys.stderr)
    runner = make_runner(args)

    def show(outcome):
        if outcome.ok:
            if outcome.described and not args.quiet:
                print(f"{outcome.name}: {outcome.described}", file=sys.stderr)
            print(f"{outcome.name}: {outcome.message} -> {Path(args.out)}")
        else:
            print(f"{outcome.name}: FAILED: {outcome.message}", file=sys.stderr)

    try:
        report = run_detect(paths, stems, spec, settings, args.out, runner, channel=args.channel, axes=args.axes,
                            labels=args.cells, overlay=args.overlay, resume=args.resume, quiet=args.quiet,
                            calibrate_per_input=args.calibrate_per_input, on_outcome=show)
    finally:
        runner.close()
    for name in report.skipped:
        print(f"{name}: results complete already, skipped (--resume)", file=sys.stderr)
    for note in report.notes:
        print(f"warning: {note}", file=sys.stderr)
    if report.outcomes or report.skipped:
        write_folder_summary(args.out)
    failed = report.failed
    if len(paths) > 1 or failed:
        done = len(report.outcomes) - len(failed)
        print(f"{done} of {len(paths)} inputs done, {len(report.skipped)} skipped, {len(failed)} failed"
              + (": " + ", ".join(o.name for o in failed) if failed else "")
              + f" ({runner.where}, {report.seconds:.1f} s)", file=sys.stderr)
    if failed and len(paths) == 1:
        message = failed[0].message
        raise InputError(message if failed[0].name in message else f"{failed[0].name}: {message}")  # exit 2
    return SOME_INPUTS_FAILED if failed else 0


SOME_INPUTS_FAILED = 3  # exit status: the run finished, but some inputs have no results (listed on stderr)


def make_runner(args):
    from ..cluster.runners import DaskRunner, InProcessRunner

    if args.scheduler:
        return DaskRunner(scheduler=args.scheduler)
    if args.workers:
        return DaskRunner(workers=args.workers)
    return InProcessRunner()


def write_folder_summary(folder) -> None:
    """summary.csv of every result in the folder (as 'supn-anomaly summarize' makes it)."""
    from ..review.results_folder import SUMMARY_NAME, read_folder, write_summary
    from ..review.results_folder import summarize as summary_of

    try:
        table = summary_of(read_folder(folder))
    except InputError as exc:
        print(f"summary.csv not written: {exc}; fix it and run supn-anomaly summarize {folder}", file=sys.stderr)
        return
    write_summary(table, Path(folder) / SUMMARY_NAME)
