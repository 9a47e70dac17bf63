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
READABLE_FORMATS = "TIFF, OME-TIFF, OME-Zarr, PNG or JPEG"
LAZY_TIFF_PIXELS = 2048 * 2048  # TIFF planes from this size on are read chunk by chunk


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


def is_zarr_folder(path: str | Path) -> bool:
    return Path(path).name.lower().endswith(".zarr") and Path(path).is_dir()


def open_image(path: str | Path) -> ImageData:
    """Read an image lazily: data, axes (without length-1 axes), pixel size, channel names.

    The data is a Dask array that reads only the chunks asked for: OME-Zarr folders through
    bioio-ome-zarr, TIFF files through tifffile's zarr store (one chunk per TIFF tile or strip),
    so a window of a whole-slide image costs the window's memory, not the slide's.
    """
    if is_zarr_folder(path):
        return _open_zarr(Path(path).expanduser())
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
            except Exception as exc:  # noqa: BLE001 - readers raise many types for unreadable files
                errors.append(str(exc).split(". ")[0] or type(exc).__name__)
                image = None
        if image is None:
            detail = errors[0] if errors else "no reader"
            if path.name.lower().endswith(READABLE_SUFFIXES):
                raise InputError(f"{path.name} could not be read: it is damaged or not an image ({detail})")
            raise InputError(f"{path.name} could not be read ({detail}); {READABLE_FORMATS} files are read, "
                             "other formats need their bioio plugin (for example pip install bioio-nd2 for .nd2)")
        order = [a for a in dims.order if a in KNOWN_AXES and (getattr(dims, a) > 1 or a in "YX")]
        if "S" in dims.order and dims.S > 1:
            order = [a for a in order if a != "S"] + ["S"]
        axes = "".join(order)
        data = image.get_image_dask_data(axes)
        try:
            channel_names = [str(c) for c in image.channel_names]
        except Exception:  # noqa: BLE001 - a reader without channel names
            channel_names = []
        try:
            sizes = image.physical_pixel_sizes
            pixel_size = (float(sizes.Y), float(sizes.X)) if sizes.Y and sizes.X else None
        except Exception:  # noqa: BLE001 - a reader without pixel sizes
            pixel_size = None
    if "C" not in axes:
        channel_names = channel_names[:1]
    if path.name.lower().endswith((".tif", ".tiff")):
        data = _tiff_in_chunks(path, data)
    return ImageData(data, axes, pixel_size, channel_names, path,
                     {"reader": type(getattr(image, "reader", image)).__module__.split(".")[0]})


def _tiff_in_chunks(path: Path, data):
    """The TIFF's pixels through tifffile's zarr store (read per tile or strip), when bioio holds them
    as one chunk and the store has the same shape; ``data`` otherwise."""
    chunks = getattr(data, "chunks", None)
    if chunks is None or any(len(c) > 1 for c in chunks) or int(np.prod(data.shape[-2:])) < LAZY_TIFF_PIXELS:
        return data
    try:
        import dask.array as da
        import tifffile
        import zarr

        store = tifffile.imread(path, aszarr=True, series=0, level=0)
        lazy = da.from_zarr(zarr.open(store, mode="r"))
        squeezed = lazy.reshape(tuple(n for n in lazy.shape if n > 1))
    except Exception:  # noqa: BLE001 - an exotic TIFF: bioio reads it right, if less frugally
        return data
    return squeezed if tuple(squeezed.shape) == tuple(data.shape) and squeezed.dtype == data.dtype else data


def _open_zarr(path: Path) -> ImageData:
    """An OME-Zarr image (its first, full-resolution level) as a Dask array."""
    try:
        from bioio_ome_zarr import Reader
    except ImportError:  # pragma: no cover - a regular dependency
        raise InputError("reading OME-Zarr needs bioio-ome-zarr: pip install bioio-ome-zarr") from None
    with _quiet():
        try:
            image = Reader(str(path))
            dims = image.dims
        except Exception as exc:  # noqa: BLE001 - zarr and bioio raise many types for a damaged folder
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise InputError(f"{path.name} could not be read as OME-Zarr ({detail})") from None
        order = [a for a in dims.order if a in KNOWN_AXES and (getattr(dims, a) > 1 or a in "YX")]
        axes = "".join(order)
        data = image.get_image_dask_data(axes)
        sizes = image.physical_pixel_sizes
        pixel_size = (float(sizes.Y), float(sizes.X)) if sizes.Y and sizes.X else None
        names = [str(c) for c in (image.channel_names or [])]
    if "C" not in axes:
        names = names[:1]
    return ImageData(data, axes, pixel_size, names, path, {"reader": "bioio_ome_zarr"})


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


def write_waiting_result(result, path: str | Path) -> None:
    """A whole result kept until a run's threshold is known: arrays and tables in one .npz (no pickle)."""
    import json

    arrays = {"heatmap": result.heatmap, "cells": result.cells}
    tables = {}
    for name in ("cell_table", "candidate_table"):
        table = getattr(result, name)
        tables[name] = [str(c) for c in table.columns]
        for i, column in enumerate(table.columns):
            values = table[column].to_numpy()
            arrays[f"{name}.{i}"] = values.astype(str) if values.dtype == object else values
    meta = {"tables": tables, "threshold": float(result.threshold), "plane_axes": result.plane_axes,
            "min_area": int(result.min_area), "provenance": _jsonable(result.provenance)}
    arrays["meta"] = np.array(json.dumps(meta))
    with atomic_outputs([Path(path)]) as tmp, open(tmp[0], "wb") as handle:
        np.savez(handle, **arrays)


def read_waiting_result(path: str | Path):
    """The result :func:`write_waiting_result` kept."""
    import json

    import pandas as pd

    from .pipeline.result import DetectionResult

    with np.load(path, allow_pickle=False) as data:
        meta = json.loads(str(data["meta"]))
        tables = {name: pd.DataFrame({column: data[f"{name}.{i}"] for i, column in enumerate(columns)},
                                     columns=columns)
                  for name, columns in meta["tables"].items()}
        return DetectionResult(data["heatmap"], data["cells"], tables["cell_table"], tables["candidate_table"],
                               meta["threshold"], meta["provenance"], meta["plane_axes"], meta["min_area"])


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    return obj


# ---------------------------------------------------------------------------------------------
# big results: OME-Zarr, written block by block

ZARR_RESULT_SUFFIXES = ("_heatmap.ome.zarr", "_cells.ome.zarr", "_cells.csv", "_candidates.csv")
ZARR_CHUNK_PX = 1024


def zarr_result_paths(out_dir: str | Path, stem: str) -> list[Path]:
    """Where :class:`ZarrResultWriter` puts the results of the input ``stem``."""
    return [Path(out_dir) / f"{stem}{suffix}" for suffix in ZARR_RESULT_SUFFIXES]


def _ngff_axes(axes: str) -> list[dict]:
    kinds = {"T": ("t", "time"), "C": ("c", "channel"), "Z": ("z", "space"), "Y": ("y", "space"),
             "X": ("x", "space")}
    out = []
    for a in axes:
        name, kind = kinds.get(a, (a.lower(), "space"))
        out.append(dict({"name": name, "type": kind}, **({"unit": "micrometer"} if a in "YX" else {})))
    return out


def create_ome_zarr(path: str | Path, shape: tuple[int, ...], dtype, axes: str,
                    pixel_size: tuple[float, float] | None, chunk_px: int = ZARR_CHUNK_PX, attrs: dict | None = None):
    """An empty OME-Zarr image (NGFF 0.4, one level, zeros) at ``path``; returns its zarr array.

    ``axes`` names the dimensions (e.g. "YX", "ZYX"); the last two are Y, X, chunked ``chunk_px``.
    """
    import zarr

    group = zarr.open_group(str(path), mode="w", zarr_format=2)
    chunks = tuple(1 for _ in shape[:-2]) + (min(chunk_px, shape[-2]), min(chunk_px, shape[-1]))
    array = group.create_array("0", shape=shape, chunks=chunks, dtype=dtype, fill_value=0)
    scale = [1.0] * (len(shape) - 2) + list(pixel_size or (1.0, 1.0))
    group.attrs["multiscales"] = [{
        "version": "0.4", "name": Path(path).name, "axes": _ngff_axes(axes),
        "datasets": [{"path": "0", "coordinateTransformations": [{"type": "scale", "scale": scale}]}],
    }]
    if attrs:
        group.attrs["supn_anomaly"] = _jsonable(attrs)
    return array


@dataclass(frozen=True)
class ZarrResultStores:
    """The two unfinished (``.partial``) images of a big result, named by path so that any process
    can write its block into them and read it back. Opened at each call and never created here:
    a result discarded meanwhile is not brought back by a task still running."""

    heatmap: str
    cells: str

    def _arrays(self, mode: str):
        import zarr

        return zarr.open_group(self.cells, mode=mode)["0"], zarr.open_group(self.heatmap, mode=mode)["0"]

    def write(self, plane: tuple[int, ...], window: tuple[slice, slice], labels: np.ndarray,
              heatmap: np.ndarray, lock=None) -> None:
        """Put one block's cells in place: only their pixels, as a neighbour's cells may share the window.

        Written chunk by chunk. Two blocks' windows overlap, and a zarr chunk is rewritten whole, so
        processes writing at once need ``lock(name)``: a context manager that makes one chunk's
        read-modify-write exclusive (e.g. ``distributed.Lock``); None when one process writes.
        """
        if labels.size == 0:
            return
        cells, heat = self._arrays("r+")
        chunk_y, chunk_x = cells.chunks[-2:]
        (y0, y1), (x0, x1) = (window[0].start, window[0].stop), (window[1].start, window[1].stop)
        mine = labels > 0
        for cy in range(y0 // chunk_y * chunk_y, y1, chunk_y):
            for cx in range(x0 // chunk_x * chunk_x, x1, chunk_x):
                part = slice(max(cy, y0), min(cy + chunk_y, y1)), slice(max(cx, x0), min(cx + chunk_x, x1))
                local = slice(part[0].start - y0, part[0].stop - y0), slice(part[1].start - x0, part[1].stop - x0)
                if not mine[local].any():
                    continue
                index = tuple(plane) + part
                name = f"{self.cells}:{tuple(plane)}:{cy // chunk_y}:{cx // chunk_x}"
                with lock(name) if lock is not None else contextlib.nullcontext():
                    if not Path(self.cells).is_dir():  # discarded meanwhile (Ctrl-C): leave no chunk behind
                        raise FileNotFoundError(f"{self.cells} was removed")
                    cells[index] = np.where(mine[local], labels[local], cells[index])
                    heat[index] = np.where(mine[local], heatmap[local], heat[index]).astype(np.float32)

    def read(self, plane: tuple[int, ...], window: tuple[slice, slice]) -> tuple[np.ndarray, np.ndarray]:
        cells, heat = self._arrays("r")
        index = tuple(plane) + tuple(window)
        return cells[index], heat[index]


class ZarrResultWriter:
    """A big result written block by block under temporary names, renamed when it is complete.

    The heatmap (float32) and the cell labels (int32) are OME-Zarr images with the input's pixel
    size; the tables are CSV. Until :meth:`finish` the folders are called ``.<name>.partial``:
    an interrupted run never leaves a result that looks done, and :meth:`discard` removes it.
    The blocks are written through :attr:`stores`, by this process or by the workers.
    """

    def __init__(self, out_dir: str | Path, stem: str, shape: tuple[int, ...], axes: str,
                 pixel_size: tuple[float, float] | None, provenance: dict | None = None):
        self.paths = zarr_result_paths(out_dir, stem)
        self.temps = [p.with_name(f".{p.name}.partial") for p in self.paths[:2]]
        self.discard()
        create_ome_zarr(self.temps[0], shape, np.float32, axes, pixel_size, attrs=provenance)
        create_ome_zarr(self.temps[1], shape, np.int32, axes, pixel_size, attrs=provenance)
        self.stores = ZarrResultStores(str(self.temps[0]), str(self.temps[1]))

    def finish(self, cell_table, candidate_table, provenance: dict | None = None) -> list[Path]:
        """Rename the images to their final names, then write the tables (the tables' presence means done)."""
        import shutil

        import zarr

        if provenance:
            for temp in self.temps:
                zarr.open_group(str(temp), mode="r+").attrs["supn_anomaly"] = _jsonable(provenance)
        for temp, final in zip(self.temps, self.paths[:2]):
            if final.exists():
                shutil.rmtree(final)
            temp.rename(final)
        with atomic_outputs(self.paths[2:]) as tmp:
            cell_table.to_csv(tmp[0], index=False, float_format="%.4f")
            candidate_table.to_csv(tmp[1], index=False, float_format="%.4f")
        return self.paths

    def discard(self) -> None:
        import shutil

        for temp in self.temps:
            shutil.rmtree(temp, ignore_errors=True)


def results_complete(out_dir: str | Path, stem: str) -> bool:
    """Whether the results of ``stem`` are all there (TIFF or OME-Zarr form): what --resume skips."""
    return any(all(p.exists() for p in paths) for paths in (result_paths(out_dir, stem),
                                                             zarr_result_paths(out_dir, stem)))
