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


def field_cells(args, base) -> tuple[TrainingCells, str]:
    """The healthy cells of --fields inside --regions, and the fields' modality."""
    from ..cells import guess_modality
    from ..training.regions import cells_from_fields, read_regions_csv

    if not args.regions:
        raise InputError("--fields needs --regions REGIONS.csv (columns image,y0,x0,y1,x1) saying where healthy cells are")
    regions = read_regions_csv(args.regions)
    fields = dict(read_field(p, base) for p in args.fields)
    # how the cells look is read from the fields (dark on light: bright-field), not from --modality,
    # whose default describes crops for training from scratch
    modality = args.modality or guess_modality(next(iter(fields.values())))
    return cells_from_fields(fields, regions, modality), modality
