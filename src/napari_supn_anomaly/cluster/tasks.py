"""The tasks a run hands out: one per field, two per block of a big plane. Plain functions with
arguments that pickle; each process opens an input once and loads a model once.

A block's first task detects its cells and writes them into the big result's unfinished OME-Zarr
images itself, sending back only their table; its second, once the slide's threshold is known,
reads them back and cuts their candidate regions. Both may run again when Dask retries them after
a worker died: the first writes the same pixels again, the second only reads.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import USER_ERRORS, InputError
from ..io import ImageData, ZarrResultStores, open_image, with_axes
from ..pipeline.blocks import (
    Block,
    BlockPlan,
    block_candidates,
    detect_block,
    window_of,
)
from .scorers import ScorerSpec, load_scorer


@dataclass(frozen=True)
class InputSpec:
    path: str
    axes: str | None = None       # the person's naming of the axes (--axes), or the file's
    channel: int | None = None
    labels: str | None = None     # a label image to use instead of segmentation


@dataclass
class FieldOutcome:
    """What became of one input: its results, or why there are none."""

    name: str
    ok: bool
    message: str                  # the summary line, or the reason it failed
    paths: list[str] = field(default_factory=list)
    cell_table: pd.DataFrame | None = None
    candidate_table: pd.DataFrame | None = None
    provenance: dict = field(default_factory=dict)
    described: str = ""           # the image's dimensions, for the log
    deferred: str = ""            # defer=True: the result waiting for the run's threshold (a .partial file)


_IMAGES: dict[InputSpec, ImageData] = {}


def open_input(spec: InputSpec) -> ImageData:
    """The input as a lazy array with the axes the person confirmed (opened once per process)."""
    if spec not in _IMAGES:
        image = open_image(spec.path)
        try:
            image = with_axes(image, spec.axes or image.axes)
        except InputError as exc:
            where = f"--axes {spec.axes}: " if spec.axes else ""
            raise InputError(f"{where}{exc}") from None
        _IMAGES.clear()  # one open input per process: a folder of 1,000 fields must not hold 1,000 files
        _IMAGES[spec] = image
    return _IMAGES[spec]


@contextlib.contextmanager
def reading_here():
    """Compute lazy reads in this thread: inside a Dask worker a nested scheduler would only contend."""
    import dask

    with dask.config.set(scheduler="synchronous"):
        yield


def read_labels_window(path: str, plane: tuple[int, ...], outer: tuple[slice, slice]) -> np.ndarray:
    """One window of a label image, read through tifffile's zarr store (only its tiles or strips)."""
    import tifffile
    import zarr

    store = tifffile.imread(path, aszarr=True, series=0, level=0)
    try:
        array = zarr.open(store, mode="r")
        lead = tuple(plane) if array.ndim > 2 else ()
        return np.asarray(array[lead + tuple(outer)])
    finally:
        store.close()


@dataclass
class BlockCells:
    """What a block's first task sends back: its cells' table rows and the window that holds their
    pixels (the pixels themselves are in the result's OME-Zarr images)."""

    block: Block
    window: tuple[slice, slice]
    cell_table: pd.DataFrame
    timings: dict = field(default_factory=dict)


def block_task(spec: InputSpec, layout, block: Block, scorer: ScorerSpec, plan: BlockPlan,
               stores: ZarrResultStores) -> BlockCells:
    """Detection on one block of a big plane, read from the input file; its cells written into ``stores``."""
    image = open_input(spec)
    with reading_here():
        window = window_of(image.data, layout.axes, block.plane, layout.chan_axis, layout.channels, block.outer)
    labels = read_labels_window(spec.labels, block.plane, block.outer) if spec.labels else None
    result = detect_block(window, block, load_scorer(scorer), plan, labels)
    if len(result.cell_table):
        write_block(stores, block.plane, result.window, result.labels, result.heatmap)
    return BlockCells(block, result.window, result.cell_table, result.timings)


def write_block(stores: ZarrResultStores, plane: tuple[int, ...], window: tuple[slice, slice], labels: np.ndarray,
                heatmap: np.ndarray) -> None:
    """One block's cells into ``stores``, safe while other workers write their neighbours (whose
    windows share zarr chunks with this one): inside a Dask worker each chunk is written under a lock."""
    stores.write(plane, window, labels, heatmap, lock=_chunk_lock())


def block_candidates_task(stores: ZarrResultStores, cells: BlockCells, threshold: float,
                          min_area: int) -> pd.DataFrame:
    """The candidate regions of one block's cells at the slide's ``threshold`` (plane coordinates)."""
    labels, heatmap = stores.read(cells.block.plane, cells.window)
    labels = np.where(np.isin(labels, cells.cell_table["cell_id"].to_numpy()), labels, 0)
    return block_candidates(heatmap, labels, (cells.window[0].start, cells.window[1].start), threshold, min_area)


_LOCKS: dict[str, object] = {}


def _chunk_lock():
    """Inside a Dask worker, one ``distributed.Lock`` per zarr chunk (the scheduler grants it, so it
    holds across machines); None in a process that writes alone (the in-process runner)."""
    try:
        from distributed import Lock, get_worker

        get_worker()
    except (ImportError, ValueError):
        return None

    def lock(name: str):
        if name not in _LOCKS:
            if len(_LOCKS) > 4096:  # a long-lived worker of many runs: forget the oldest slides' locks
                _LOCKS.clear()
            _LOCKS[name] = Lock(name)
        return _LOCKS[name]

    return lock


def deferred_path(out_dir: str | Path, stem: str) -> Path:
    """Where a field's result waits, whole, for the threshold of the run (``field_task(defer=True)``)."""
    return Path(out_dir) / f".{stem}.detect.partial.npz"


def field_task(spec: InputSpec, scorer: ScorerSpec, settings, out_dir: str, stem: str,
               overlay: bool = False, defer: bool = False) -> FieldOutcome:
    """Detection on one field or stack, its results written to ``out_dir``; failures become an outcome.
    ``defer``: the result is kept whole in a hidden .partial file instead (its cell table comes
    back), to be cut at the threshold of all the run's inputs and written then (cluster.detect_run)."""
    from ..pipeline.stacks import iter_detect, run_to_end

    name = Path(spec.path).name
    try:
        image = open_input(spec)
        labels = _read_labels(spec.labels) if spec.labels else None
        with reading_here():
            events = iter_detect(image.data, image.axes, load_scorer(scorer), channel=spec.channel, labels=labels,
                                 settings=settings, source={"input": spec.path, "input_axes": image.axes})
            result = run_to_end(events)
        if defer:
            from ..io import write_waiting_result

            waiting = deferred_path(out_dir, stem)
            write_waiting_result(result, waiting)
            return FieldOutcome(name, True, result.summary(), [], result.cell_table, result.candidate_table,
                                result.provenance, image.describe(), str(waiting))
        return _written(result, spec, out_dir, stem, overlay, name, image.describe())
    except USER_ERRORS as exc:
        return FieldOutcome(name, False, " ".join(str(exc).split()) or type(exc).__name__)
    finally:
        _IMAGES.pop(spec, None)


def _written(result, spec: InputSpec, out_dir: str, stem: str, overlay: bool, name: str,
             described: str) -> FieldOutcome:
    """``result`` written to ``out_dir`` (with ``overlay``, its pictures too), as its input's outcome."""
    from ..io import write_result

    paths = write_result(result, out_dir, stem)
    if overlay:
        from ..overlay import write_overlays

        image = open_input(spec)
        with reading_here():
            write_overlays(result, image.data, image.axes, out_dir, stem, channel=spec.channel, title=name)
    return FieldOutcome(name, True, result.summary(), [str(p) for p in paths], result.cell_table,
                        result.candidate_table, result.provenance, described)


def finish_field_task(outcome: FieldOutcome, spec: InputSpec, stem: str, choice, out_dir: str,
                      overlay: bool = False) -> FieldOutcome:
    """The second half of a deferred ``field_task``: its waiting result cut at the run's threshold
    (``choice``) and written. The waiting file stays for the caller to remove once it has the outcome:
    Dask may run this again when the worker holding its result dies, and it must find the file."""
    from ..io import read_waiting_result

    try:
        result = read_waiting_result(Path(outcome.deferred)).with_choice(choice)
        return _written(result, spec, out_dir, stem, overlay, outcome.name, outcome.described)
    except USER_ERRORS as exc:
        return FieldOutcome(outcome.name, False, " ".join(str(exc).split()))
    finally:
        _IMAGES.pop(spec, None)


def _read_labels(path: str) -> np.ndarray:
    import tifffile

    try:
        labels = tifffile.imread(path)
    except Exception as exc:
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InputError(f"{Path(path).name} could not be read as a TIFF label image ({detail})") from exc
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"{Path(path).name} is not a label image (its pixels are {labels.dtype}, not integers)")
    return labels
