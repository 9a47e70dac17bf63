"""Detection on an image or a stack, plane by plane: the one entry point the widget and CLI share.

Axes are named as in ``pipeline.axes``. :func:`iter_detect` is a generator: it yields a
``progress.Progress`` after each batch of cells and each plane and returns a
:class:`DetectionResult`; closing it (or ``should_stop`` returning True, which raises
``errors.Cancelled``) stops the work between two batches. The scorer comes resolved
(``scoring.resolve``): the pipeline only calls its methods.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from .. import __version__
from ..cells import check_plane, field_scale, median_cell_diameter, number_consecutively, segment_cells
from ..cells.measure import check_cell_diameter, is_finite_number
from ..cells.plausibility import field_warning
from ..errors import Cancelled, InputError
from ..models import AnomalyModel
from ..models.data_range import MODES as INTENSITY_MODES
from ..models.data_range import apply_match, plan_match
from ..progress import Progress
from ..supn.devices import DEVICE_CHOICES, describe_device, release_memory
from .axes import check_image_array, normalise_axes, plane_axes_of, read_plane, select_channels
from .candidates import cell_table
from .fields import iter_score_field
from .memory import check_plane_fits
from .result import DetectionResult, _with_plane_columns
from .self_calibration import CALIBRATIONS, DEFAULT_CALIBRATION, ThresholdChoice, choose_threshold, user_threshold
from .sensitivity import default_fpr
from .tiles import CORE_PX, PlaneOutcome, iter_plane_in_tiles, needs_tiles

if TYPE_CHECKING:
    from ..scoring import Scorer


@dataclass
class DetectSettings:
    fpr: float | None = None            # target fraction of healthy cells flagged; None: the model's default
    threshold: float | None = None      # overrides fpr when given
    cell_diameter: float | None = None  # cell diameter in the image, pixels; None: measured
    batch_size: int = 32
    min_area: int = 1
    device: str = "auto"
    exclude_edge_cells: bool = False    # True: leave out cells cut by the field's edge (else found and flagged `edge`)
    intensity: str = "auto"             # match the field's intensities to the model's: auto / match / off
    calibration: str = DEFAULT_CALIBRATION  # threshold from this slide's own cells ("slide") or the model's ("model")

    def check(self, names: dict[str, str] | None = None) -> "DetectSettings":
        """InputError for a setting no detection can use. ``names``: what a person calls each
        setting where it is not its field name (the command line: ``{"fpr": "--fpr", ...}``)."""
        def name(key: str) -> str:
            return (names or {}).get(key, key)

        if self.fpr is not None and (not is_finite_number(self.fpr) or not 0 < self.fpr < 1):
            raise InputError(f"{name('fpr')} must lie between 0 and 1, e.g. 0.01 for one healthy cell in a hundred")
        if self.threshold is not None and not is_finite_number(self.threshold):
            raise InputError(f"{name('threshold')} must be a number (a score)")
        if self.cell_diameter is not None:
            check_cell_diameter(self.cell_diameter, name("cell_diameter"))
        for key in ("batch_size", "min_area"):
            value = getattr(self, key)
            if not isinstance(value, (int, np.integer)) or isinstance(value, bool) or value < 1:
                raise InputError(f"{name(key)} must be a whole number of at least 1")
        if not isinstance(self.device, str) or self.device.lower() not in DEVICE_CHOICES:
            raise InputError(f"{name('device')}: unknown device {self.device!r}; choose one of "
                             f"{', '.join(DEVICE_CHOICES)}")
        if self.intensity not in INTENSITY_MODES:
            raise InputError(f"{name('intensity')}: unknown intensity matching {self.intensity!r}; choose one of "
                             f"{', '.join(INTENSITY_MODES)}")
        if self.calibration not in CALIBRATIONS:
            raise InputError(f"{name('calibration')}: unknown calibration {self.calibration!r}; choose one of "
                             f"{', '.join(CALIBRATIONS)}")
        return self


def _progress(plane: int, n_planes: int, done: int, total: int, stage: str, message: str) -> Progress:
    """A detection event: ``stage`` is "segmenting", "scoring" or "plane done"."""
    within = 1.0 if stage == "plane done" else (done / total if total else 0.0)
    return Progress(stage, done, total, message, overall=(plane + within) / n_planes, plane=plane)


def target_fpr(scorer: Scorer, settings: DetectSettings) -> float:
    """The share of healthy cells to flag: the one asked for, else the default for the model's modality."""
    return float(settings.fpr) if settings.fpr is not None else default_fpr(scorer.model.modality)


def resolve_threshold(scorer: Scorer, settings: DetectSettings) -> tuple[float, float | None]:
    if settings.threshold is not None:
        thr = float(settings.threshold)
        try:
            return thr, scorer.healthy_fpr(thr)
        except ValueError:
            return thr, None
    fpr = target_fpr(scorer, settings)
    try:
        return scorer.threshold_for_fpr(fpr), fpr
    except ValueError as exc:
        raise InputError(f"{exc}; give a threshold instead") from exc


def calibration_inputs(scorer: Scorer) -> dict:
    """What a scorer brings to a slide's calibration (``choose_threshold``'s keywords): the model's stored
    calibration as fpr -> threshold and its held-back healthy scores (None when it has none), and the
    scale its scores are fitted on. Every run and every re-cut takes them from here, so none is left out."""
    return {"model_threshold": scorer.threshold_for_fpr if scorer.calibrated else None,
            "model_healthy": scorer.calibration.healthy_scores if scorer.calibrated else None,
            "scale": scorer.info.score_scale}


def choose_run_threshold(scorer: Scorer, settings: DetectSettings, scores) -> ThresholdChoice:
    """The threshold of one run (a field, a stack or the pooled fields of one slide) from its cell
    ``scores``: a threshold given by hand, else the slide's self-calibration or the model's."""
    if settings.threshold is not None:
        _, fpr = resolve_threshold(scorer, settings)
        return user_threshold(settings.threshold, len(scores), fpr)
    try:
        return choose_threshold(scores, target_fpr(scorer, settings), settings.calibration,
                                **calibration_inputs(scorer))
    except ValueError as exc:
        raise InputError(f"{exc}; give a threshold instead") from exc


def _plane_labels(labels, plane_shape, idx, yx_shape) -> np.ndarray | None:
    if labels is None:
        return None
    lab = np.asarray(labels)
    if lab.shape == tuple(yx_shape):
        out = lab
    elif lab.shape == tuple(plane_shape) + tuple(yx_shape):
        out = lab[idx]
    else:
        raise InputError(f"the cell labels have shape {lab.shape} but the image planes are {tuple(yx_shape)}")
    if not np.issubdtype(out.dtype, np.integer):
        raise InputError("the cell labels must be an integer label image")
    if out.size and out.min() < 0:
        raise InputError("the cell labels hold negative numbers; label the cells 1, 2, 3, ... and the background 0")
    if out.size and int(out.max()) > out.size:
        # ids beyond the pixel count are sparse (there cannot be that many cells): number them
        # 1..N in their order, rather than size per-cell tables by the largest id
        return number_consecutively(out)
    return out.astype(np.int32, copy=False)


def _iter_whole_plane(plane: np.ndarray, plane_labels: np.ndarray | None, scorer: Scorer,
                      settings: DetectSettings) -> Iterator[Progress]:
    """Segment (unless labels are given) and score one plane [C, Y, X] at once; returns a PlaneOutcome."""
    model = scorer.model
    t0 = time.perf_counter()
    marks = None
    if plane_labels is None:
        seg = segment_cells(plane, model.modality, settings.cell_diameter, exclude_edges=settings.exclude_edge_cells)
        plane_labels, marks = seg.labels, seg.marks
    diameter = settings.cell_diameter or median_cell_diameter(plane_labels)
    seg_s = time.perf_counter() - t0
    window = model.crop_size / field_scale(model.geometry, diameter)  # a crop's width in this plane's pixels
    match = plan_match(plane, plane_labels, model.data_range, window, settings.intensity)
    scores = yield from iter_score_field(apply_match(plane, match), plane_labels, scorer, diameter,
                                         settings.batch_size, recorded=plane, marks=marks)
    return PlaneOutcome(scores.heatmap, plane_labels, float(diameter), scores.scale, match,
                        dict(scores.timings, segmentation_s=seg_s))


@dataclass
class _Layout:
    """Where the planes, channels and pixels of an image are."""

    axes: str
    plane_axes: str
    plane_shape: tuple[int, ...]
    yx: tuple[int, int]
    chan_axis: str | None
    channels: list[int] | None

    @property
    def n_planes(self) -> int:
        return int(np.prod(self.plane_shape)) if self.plane_shape else 1

    def plane_index(self, flat: int) -> tuple[int, ...]:
        return tuple(int(i) for i in np.unravel_index(flat, self.plane_shape)) if self.plane_shape else ()


def _layout(data, axes: str, model: AnomalyModel, channel) -> _Layout:
    axes = normalise_axes(axes, np.ndim(data))
    shape = tuple(np.shape(data))
    chan_axis, channels = select_channels(axes, shape, model, channel)
    plane_axes = plane_axes_of(axes)
    dims = dict(zip(axes, shape))
    return _Layout(axes, plane_axes, tuple(dims[a] for a in plane_axes), (dims["Y"], dims["X"]), chan_axis, channels)


def _check_settings_and_memory(layout: _Layout, settings: DetectSettings, model: AnomalyModel) -> None:
    yx = layout.yx
    diameter = settings.cell_diameter
    if diameter is not None and diameter > min(yx):
        raise InputError(f"the cell diameter of {diameter:g} px is larger than the image ({yx[1]} x {yx[0]} px); "
                         "give the diameter of one cell in pixels")
    n_channels = 1 if layout.channels is None else len(layout.channels)
    # heatmap + labels of every plane, one plane read as float32, and the candidate regions of one plane
    outputs = layout.n_planes * yx[0] * yx[1] * 8 + yx[0] * yx[1] * (4 * n_channels + 12)
    work = (min(yx[0], 2 * CORE_PX), min(yx[1], 2 * CORE_PX)) if needs_tiles(*yx) else yx
    scale = 1.0 if diameter is None else field_scale(model.geometry, diameter)
    check_plane_fits(*work, n_channels, extra_bytes=outputs, plane_shape=yx, scale=scale)


def _no_cells(flat: int, n_planes: int) -> InputError:
    return InputError(f"no cells in plane {flat + 1}" if n_planes > 1 else "no cells were found")


def _iter_plane(data, layout: _Layout, flat: int, labels, scorer: Scorer, settings: DetectSettings,
                should_stop: Callable[[], bool] | None) -> Iterator[Progress]:
    """Read, segment and score one plane, with progress and cancel between batches; returns a PlaneOutcome."""
    n_planes, idx = layout.n_planes, layout.plane_index(flat)
    where = f"plane {flat + 1} of {n_planes}"
    yield _progress(flat, n_planes, 0, 0, "segmenting", f"{where}: finding cells")
    plane = read_plane(data, layout.axes, idx, layout.chan_axis, layout.channels)
    check_plane(plane)
    warning = field_warning(plane)
    plane_labels = _plane_labels(labels, layout.plane_shape, idx, layout.yx)
    if plane_labels is not None and not plane_labels.any():
        where = f" in plane {flat + 1}" if n_planes > 1 else ""
        raise InputError(f"the cell labels mark no cell (every pixel is 0){where}")
    if needs_tiles(*layout.yx):
        job = iter_plane_in_tiles(plane, scorer, labels=plane_labels, cell_diameter=settings.cell_diameter,
                                  intensity=settings.intensity, batch_size=settings.batch_size,
                                  exclude_edges=settings.exclude_edge_cells)
    else:
        job = _iter_whole_plane(plane, plane_labels, scorer, settings)
    while True:
        try:
            step = next(job)
        except StopIteration as done:
            outcome = done.value
            break
        if should_stop is not None and should_stop():
            job.close()
            raise Cancelled("detection was cancelled")
        what = step.message or f"scored {step.done} of {step.total} cells"
        yield _progress(flat, n_planes, step.done, step.total, "scoring", f"{where}: {what}")
    if not outcome.labels.any():
        raise _no_cells(flat, n_planes)
    outcome.warning = warning if n_planes == 1 or warning is None else f"plane {flat + 1}: {warning}"
    return outcome


def _one_or_each(values: list):
    return values[0] if len(set(values)) == 1 else values


def _provenance(scorer: Scorer, settings: DetectSettings, layout: _Layout, outcomes: list[PlaneOutcome],
                threshold: float, fpr: float | None, labels_given: bool, timings: dict, started: float) -> dict:
    model = scorer.model
    channels = layout.channels
    matches = [o.match for o in outcomes]
    return {
        "software": f"napari-supn-anomaly {__version__}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": model.name,
        "model_description": model.metadata.get("description", ""),
        "base_model": model.metadata.get("base_model"),
        "modality": model.modality,
        "scorer": scorer.name,
        "score_rule": model.score_rule(scorer.name),
        "heatmap_units": scorer.units,
        "threshold": threshold,
        "target_fpr": fpr,
        "cell_diameter_px": _one_or_each([o.diameter for o in outcomes]),
        "cell_diameter_source": "user" if settings.cell_diameter else ("labels" if labels_given else "measured"),
        "model_cell_diameter_px": model.cell_diameter_px,
        "scale": _one_or_each([o.scale for o in outcomes]),
        "device": describe_device(model.device),
        "axes": layout.axes,
        "channel": None if channels is None else (channels[0] if len(channels) == 1 else channels),
        "cells_from": "labels" if labels_given else "segmentation",
        "tiles": outcomes[0].n_tiles if layout.n_planes == 1 else [o.n_tiles for o in outcomes],
        "intensity_matching": dict({"mode": settings.intensity}, **(
            {"planes": [m.to_dict() for m in matches]} if layout.n_planes > 1 else matches[0].to_dict())),
        "warnings": [o.warning for o in outcomes if o.warning],
        "timings_s": {k: round(v, 4) for k, v in timings.items()},
        "total_s": round(time.perf_counter() - started, 4),
    }


def iter_detect(data, axes: str, scorer: Scorer, *, channel: int | Sequence[int] | None = None,
                labels=None, settings: DetectSettings | None = None,
                should_stop: Callable[[], bool] | None = None,
                source: dict | None = None) -> Iterator[Progress]:
    """Detect parasite candidates in every plane of ``data`` with ``scorer``; returns a DetectionResult."""
    settings = (settings or DetectSettings()).check()
    data = check_image_array(data)
    model = scorer.model
    if settings.calibration == "model" or settings.threshold is not None:
        resolve_threshold(scorer, settings)  # an uncalibrated model is refused before the work
    layout = _layout(data, axes, model, channel)
    _check_settings_and_memory(layout, settings, model)

    try:
        model.to(settings.device)
    except ValueError as exc:  # a GPU asked for that this machine does not have
        raise InputError(str(exc)) from None
    if labels is None and needs_tiles(*layout.yx):
        from .blocks import is_lazy, iter_detect_blocks

        if is_lazy(data):  # a whole-slide image read lazily: block by block, never whole (pipeline/blocks.py)
            return (yield from iter_detect_blocks(data, layout.axes, scorer, channel=channel, settings=settings,
                                                  should_stop=should_stop, source=source))
    heatmap = np.zeros(layout.plane_shape + layout.yx, np.float32)
    cells = np.zeros(layout.plane_shape + layout.yx, np.int32)
    cell_tables, outcomes = [], []
    timings = {"segmentation_s": 0.0, "rescale_s": 0.0, "score_s": 0.0, "paste_s": 0.0, "tables_s": 0.0}
    started = time.perf_counter()
    try:
        for flat in range(layout.n_planes):
            if should_stop is not None and should_stop():
                raise Cancelled("detection was cancelled")
            outcome = yield from _iter_plane(data, layout, flat, labels, scorer, settings, should_stop)
            for key in ("segmentation_s", "rescale_s", "score_s", "paste_s"):
                timings[key] += outcome.timings[key]
            t1 = time.perf_counter()
            idx = layout.plane_index(flat)
            heatmap[idx] = outcome.heatmap
            cells[idx] = outcome.labels
            table = cell_table(outcome.heatmap, outcome.labels)
            cell_tables.append(_with_plane_columns(table, flat, idx, layout.plane_axes))
            outcomes.append(outcome)
            timings["tables_s"] += time.perf_counter() - t1
            yield _progress(flat, layout.n_planes, len(table), len(table), "plane done",
                            f"plane {flat + 1} of {layout.n_planes}: {len(table)} cells")
    finally:
        release_memory(model.device)

    table = pd.concat(cell_tables, ignore_index=True)
    # all planes of a stack are one slide: one calibration for them all
    choice = choose_run_threshold(scorer, settings, table["score"].to_numpy())
    provenance = _provenance(scorer, settings, layout, outcomes, choice.threshold, choice.fpr, labels is not None,
                             timings, started)
    if source:
        provenance.update(source)
    result = DetectionResult(heatmap, cells, table, None, choice.threshold, provenance, layout.plane_axes,
                             settings.min_area)
    return result.with_choice(choice)


def run_to_end(events: Iterator[Progress], on_progress: Callable[[Progress], None] | None = None) -> DetectionResult:
    """Drive :func:`iter_detect` and return its result."""
    while True:
        try:
            event = next(events)
        except StopIteration as done:
            return done.value
        if on_progress is not None:
            on_progress(event)


def detect(data, axes: str, scorer: Scorer, **kwargs) -> DetectionResult:
    """Blocking form of :func:`iter_detect` for scripts and notebooks."""
    on_progress = kwargs.pop("on_progress", None)
    return run_to_end(iter_detect(data, axes, scorer, **kwargs), on_progress)
