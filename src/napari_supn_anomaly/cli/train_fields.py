"""``supn-anomaly train --init MODEL --fields IMAGE... --regions REGIONS.csv``: the healthy cells of
whole fields, found by segmentation inside the rectangles of REGIONS.csv (columns image,y0,x0,y1,x1)."""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError
from ..io import READABLE_FORMATS, open_image

if TYPE_CHECKING:
    from ..training.regions import TrainingCells


def add_field_options(source, p) -> None:
    """Add --fields to the mutually exclusive input group and --regions beside it."""
    source.add_argument("--fields", nargs="+", metavar="IMAGE",
                        help=f"whole fields ({READABLE_FORMATS}) with healthy cells marked in --regions; needs --init")
    p.add_argument("--regions", metavar="CSV",
                   help="with --fields: rectangles around healthy cells, columns image,y0,x0,y1,x1 (pixels)")


def read_field(path: str, model) -> tuple[str, object]:
    """(file name, one plane [C, Y, X]) of a field, with the channels the model reads."""
    from ..pipeline.axes import normalise_axes, plane_axes_of, read_plane, select_channels

    image = open_image(path)
    axes = normalise_axes(image.axes, len(image.data.shape))
    if plane_axes_of(axes):
        raise InputError(f"{Path(path).name} is a stack ({image.axes}); give single fields to train on")
    chan_axis, channels = select_channels(axes, image.data.shape, model, None)
    return Path(path).name, read_plane(image.data, axes, (), chan_axis, channels)


def fields_modality(fields: dict, base) -> str:
    """How the fields' cells look. A dense smear is mostly cell, which can fool a guess from the image's
    median: when the guess disagrees with the base model's contrast, the cells the base's own
    segmentation finds decide (darker than their background or not)."""
    from ..cells import dark_cells, guess_modality
    from ..training.finetune import cells_are_dark
    from ..training.regions import TrainingCells, segment_plane

    first = next(iter(fields.values()))
    guess = guess_modality(first)
    # only a colour image guessed as fluorescence for a stained base is re-checked: unstained grey
    # fields against a fluorescence base really have the opposite contrast (Remoscope)
    if dark_cells(guess) == dark_cells(base.modality) or first.shape[0] < 3 or not dark_cells(base.modality):
        return guess
    try:
        labels = segment_plane(first, base.modality)
    except InputError:
        return guess
    dark = cells_are_dark(TrainingCells(), {"f": first}, {"f": labels})
    return base.modality if dark == dark_cells(base.modality) else guess


def field_cells(args, base) -> tuple[TrainingCells, str, dict, dict]:
    """The healthy cells of --fields inside --regions, the fields' modality, the fields and their cell labels.

    Regions that hold no whole cell are skipped and named in one warning line on stderr."""
    import sys

    from ..training.regions import cells_from_fields, read_regions_csv, skipped_warning

    if not args.regions:
        raise InputError("--fields needs --regions REGIONS.csv (columns image,y0,x0,y1,x1) saying where healthy cells are")
    regions = read_regions_csv(args.regions)
    fields = dict(read_field(p, base) for p in args.fields)
    # how the cells look is read from the fields (dark on light: bright-field), not from --modality,
    # whose default describes crops for training from scratch
    modality = args.modality or fields_modality(fields, base)
    labels: dict = {}
    cells = cells_from_fields(fields, regions, modality, labels_out=labels)
    warning = skipped_warning(cells, len(regions))
    if warning:
        print(f"warning: {warning}", file=sys.stderr)
    return cells, modality, fields, labels
