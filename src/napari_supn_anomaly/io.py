"""Reading microscope images (bioio, with aicsimageio as a fallback) and writing detection results.

Axis letters follow bioio: T (time), C (channels), Z (focus), Y, X and S (RGB samples).
:func:`open_image` drops axes of length 1 and returns the rest in the file's order;
:func:`with_axes` lets a person correct them (a plain (3, Y, X) TIFF is read as RGB, which may
really be three channels or three focal planes) and puts them in the order the plugin shows:
channels first, then the plane axes, then Y, X (and RGB last).
"""
from __future__ import annotations

import contextlib
import logging
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from .errors import InputError
from .files import atomic_outputs, check_input_file

KNOWN_AXES = "TCZYXS"
# What open_image reads with the plugins this package installs (bioio-tifffile, -ome-tiff, -imageio).
READABLE_SUFFIXES = (".tif", ".tiff", ".png", ".jpg", ".jpeg")
READABLE_FORMATS = "TIFF, OME-TIFF, PNG or JPEG"


@dataclass
class ImageData:
    data: object                  # numpy or dask array
    axes: str                     # one letter per dimension, e.g. "ZYX", "CYX", "YXS"
    pixel_size: tuple[float, float] | None  # (y, x) in micrometres when the file says so
    channel_names: list[str]
    path: Path | None = None
    metadata: dict = field(default_factory=dict)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(np.shape(self.data))

    @property
    def is_rgb(self) -> bool:
        return self.axes.endswith("S") and self.shape[-1] in (3, 4)

    def describe(self) -> str:
        dims = ", ".join(f"{a}={n}" for a, n in zip(self.axes, self.shape))
        return f"{dims} ({np.dtype(self.data.dtype).name})"


@contextlib.contextmanager
def _quiet():
    """bioio logs a failed attempt for every reader it tries; a person only needs the outcome."""
    loggers = [logging.getLogger(n) for n in ("bioio", "bioio_base", "bioio_ome_tiff", "bioio_tifffile", "xmlschema")]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for lg, level in zip(loggers, levels):
            lg.setLevel(level)


def _bioio_reader_for(path: Path):
    name = path.name.lower()
    try:
        if name.endswith((".ome.tif", ".ome.tiff")):
            from bioio_ome_tiff import Reader
            return Reader
        if name.endswith((".tif", ".tiff")):
            from bioio_tifffile import Reader
            return Reader
    except ImportError:
        pass
    return None  # bioio picks among the installed plugins


def _open_with_bioio(path: Path):
    import bioio

    reader = _bioio_reader_for(path)
    try:
        return bioio.BioImage(path, reader=reader) if reader else bioio.BioImage(path)
    except Exception:
        if reader is None:
            raise
        return bioio.BioImage(path)  # e.g. an OME-TIFF without the .ome suffix


def _open_with_aicsimageio(path: Path):
    from aicsimageio import AICSImage  # legacy, only when installed

    return AICSImage(path)


def open_image(path: str | Path) -> ImageData:
    """Read an image lazily: data, axes (without length-1 axes), pixel size, channel names."""
    path = check_input_file(path, "image")
    image = None
    errors = []
    with _quiet():
        for opener in (_open_with_bioio, _open_with_aicsimageio):
            try:
                image = opener(path)
                dims = image.dims
                break
            except ImportError as exc:
                errors.append(str(exc))
            except Exception as exc:  # readers raise many types for unreadable files
                errors.append(str(exc).split(". ")[0] or type(exc).__name__)
                image = None
        if image is None:
            detail = errors[0] if errors else "no reader"
            if path.name.lower().endswith(READABLE_SUFFIXES):
                raise InputError(f"{path.name} could not be read: it is damaged or not an image ({detail})")
            raise InputError(f"{path.name} could not be read ({detail}); {READABLE_FORMATS} files are read, "
                             "other formats need their bioio plugin (for example pip install bioio-nd2 for .nd2)")
        order = [a for a in dims.order if a in KNOWN_AXES and (getattr(dims, a) > 1 or a in "YX")]
        if "S" in dims.order and getattr(dims, "S") > 1:
            order = [a for a in order if a != "S"] + ["S"]
        axes = "".join(order)
        data = image.get_image_dask_data(axes)
        try:
            channel_names = [str(c) for c in image.channel_names]
        except Exception:
            channel_names = []
        try:
            sizes = image.physical_pixel_sizes
            pixel_size = (float(sizes.Y), float(sizes.X)) if sizes.Y and sizes.X else None
        except Exception:
            pixel_size = None
    if "C" not in axes:
        channel_names = channel_names[:1]
    return ImageData(data, axes, pixel_size, channel_names, path,
                     {"reader": type(getattr(image, "reader", image)).__module__.split(".")[0]})


def with_axes(image: ImageData, axes: str) -> ImageData:
    """The same data with axes named by a person, reordered to channels, planes, Y, X (, RGB).

    Renaming only: ``axes`` names the current dimensions in their current order.
    """
    axes = axes.upper().strip()
    if len(axes) != len(image.axes):
        raise InputError(f"give one letter per dimension: the image has {len(image.axes)} ({image.describe()})")
    if len(set(axes)) != len(axes) or any(a not in KNOWN_AXES + "Q" for a in axes):
        raise InputError(f"axes {axes!r}: use each of the letters T, C, Z, Y, X, S at most once")
    if "Y" not in axes or "X" not in axes:
        raise InputError("the axes must include Y and X")
    if "S" in axes and image.shape[axes.index("S")] not in (3, 4):
        raise InputError("S (RGB) must be an axis of length 3 or 4")
    target = [a for a in "C" if a in axes] + [a for a in axes if a not in "CYXS"] + ["Y", "X"] + [a for a in "S" if a in axes]
    perm = [axes.index(a) for a in target]
    data = image.data.transpose(perm) if hasattr(image.data, "transpose") else np.transpose(image.data, perm)
    names = image.channel_names
    if "C" in target:
        n = image.shape[axes.index("C")]
        if len(names) != n:
            names = [f"channel {i}" for i in range(n)]
    return replace(image, data=data, axes="".join(target), channel_names=names)


# ---------------------------------------------------------------------------------------------
# writing results

RESULT_SUFFIXES = ("_heatmap.tif", "_cells.tif", "_cells.csv", "_candidates.csv")


def write_result(result, out_dir: str | Path, stem: str) -> list[Path]:
    """``<stem>_heatmap.tif`` (float32), ``<stem>_cells.tif``, ``<stem>_cells.csv`` and
    ``<stem>_candidates.csv`` in ``out_dir``; returns the paths."""
    import json

    import tifffile

    paths = result_paths(out_dir, stem)
    description = json.dumps(_jsonable(result.provenance))
    cells = result.cells
    with atomic_outputs(paths) as tmp:  # all four appear together, complete, or none does
        tifffile.imwrite(tmp[0], result.heatmap.astype(np.float32), description=description)
        tifffile.imwrite(tmp[1], cells.astype(np.uint16 if cells.max() < 65536 else np.uint32),
                         description=description)
        result.cell_table.to_csv(tmp[2], index=False, float_format="%.4f")
        result.candidate_table.to_csv(tmp[3], index=False, float_format="%.4f")
    return paths


def result_paths(out_dir: str | Path, stem: str) -> list[Path]:
    """Where :func:`write_result` writes the results of the input ``stem``."""
    return [Path(out_dir) / f"{stem}{suffix}" for suffix in RESULT_SUFFIXES]


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj
