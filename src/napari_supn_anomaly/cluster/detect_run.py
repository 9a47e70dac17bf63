"""One detection run over many inputs: fields become one task each, big planes one task per block.

Small inputs (planes up to ``BIG_PLANE_PIXELS``) are detected whole in a task that writes today's
TIFF and CSV results. Bigger planes are cut into blocks (``pipeline.blocks``): each block's task
writes its cells into the input's unfinished OME-Zarr images and sends back their table; once
every cell score of the slide is in, this process sets the threshold, a second task per block
cuts that block's candidates, and only when all are in do the results get their final names.
The pixels never pass through this process, so it does not compete with the workers for the
cores. A failed input is reported and the run goes on; Ctrl-C cancels what is left and removes
what is unfinished.

The fields of one run are taken as fields of one slide: with the slide's self-calibration (the
default) their tasks keep each result whole in a hidden .partial file and send back its cell
scores; once every field is in, one threshold is chosen on all their scores (and on those of
fields completed before a --resume) and each field is cut at it and written. With
``calibrate_per_input`` (or a threshold given by hand, or the model's calibration) each field is
calibrated and written on its own as it finishes. A big plane is a slide of its own.
"""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd

from .. import __version__
from ..errors import USER_ERRORS, NoCellsFound
from ..io import ZarrResultWriter, is_zarr_folder, results_complete
from ..pipeline.blocks import (
    block_halo,
    plan_blocks,
    plan_by_probes,
    plane_layout,
    window_of,
)
from ..pipeline.candidates import empty_candidate_table, mark_candidate_cells
from ..pipeline.self_calibration import outlying_fields, pooled_scores
from ..pipeline.stacks import choose_run_threshold, resolve_threshold
from ..pipeline.tiles import AUTO_TILE_PIXELS, CORE_PX
from .scorers import ScorerSpec, load_scorer
from .tasks import (
    BlockCells,
    FieldOutcome,
    InputSpec,
    block_candidates_task,
    block_task,
    deferred_path,
    field_task,
    finish_field_task,
    open_input,
    read_labels_window,
    reading_here,
)

BIG_PLANE_PIXELS = AUTO_TILE_PIXELS  # above this a plane is processed in blocks and written as OME-Zarr


@dataclass
class RunReport:
    outcomes: list[FieldOutcome] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # complete already (--resume)
    tasks: int = 0
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)  # warnings about the run as a whole, one line each

    @property
    def failed(self) -> list[FieldOutcome]:
        return [o for o in self.outcomes if not o.ok]


def plane_pixels(path: Path) -> int:
    """Pixels of one plane of the input, read from its header only (0 when unknown: treated as a field)."""
    try:
        if is_zarr_folder(path):
            shape = open_input(InputSpec(str(path))).shape
            return int(shape[-2] * shape[-1])
        if path.name.lower().endswith((".tif", ".tiff")):
            import tifffile

            with tifffile.TiffFile(path) as tif:
                series = tif.series[0]
                dims = dict(zip(series.axes, series.shape))
                return int(dims.get("Y", 0) * dims.get("X", 0))
    except Exception:  # noqa: BLE001 - unreadable: its field task says why
        return 0
    return 0


class _BigInput:
    """The state of one big input while its blocks run: first their cells, then their candidates."""

    def __init__(self, spec: InputSpec, stem: str, writer: ZarrResultWriter, layout, plans: dict, blocks: list):
        self.spec, self.stem, self.writer, self.layout, self.plans = spec, stem, writer, layout, plans
        self.blocks = blocks
        self.pending = len(blocks)    # tasks of the current stage not yet in
        self.finished = False         # results under their final names, or the input failed
        self.tables: dict[tuple, pd.DataFrame] = {}      # (plane, block index) -> its cells
        self.owned: list[BlockCells] = []                # every block with cells
        self.candidates: dict[tuple, pd.DataFrame] = {}  # (plane, block index) -> its candidate regions
        self.choice = None                               # the slide's threshold, once every block is in
        self.futures: list = []


def _plan_big_input(spec: InputSpec, stem: str, scorer, settings, out_dir: str, core: int):
    image = open_input(spec)
    layout = plane_layout(image.data, image.axes, scorer.model, spec.channel)
    height, width = layout.yx
    plans, blocks = {}, []
    for flat in range(layout.n_planes):
        plane = layout.plane_index(flat)
        n_blocks = len(plan_blocks(height, width, 0, core))
        plan = _plan_by_probes(image, layout, plane, scorer, settings, n_blocks, core, spec.labels)
        crop_px = scorer.model.crop_size * plan.diameter / scorer.model.cell_diameter_px
        plans[plane] = plan
        blocks += plan_blocks(height, width, block_halo(plan.diameter, crop_px), core, plane)
    axes = layout.plane_axes + "YX"
    writer = ZarrResultWriter(out_dir, stem, layout.plane_shape + layout.yx, axes, image.pixel_size)
    return _BigInput(spec, stem, writer, layout, plans, blocks)


def _plan_by_probes(image, layout, plane, scorer, settings, n_blocks, core, labels_path):
    def read(outer):
        with reading_here():
            probe = window_of(image.data, layout.axes, plane, layout.chan_axis, layout.channels, outer)
        return probe, read_labels_window(labels_path, plane, outer) if labels_path else None

    return plan_by_probes(read, *layout.yx, scorer, settings, n_blocks, core)


def slide_threshold(scorer, settings, scores: np.ndarray):
    """The threshold of one slide (a ThresholdChoice), set once all its cell scores are in: the
    slide's self-calibration needs the pooled scores of every block, never one block's."""
    return choose_run_threshold(scorer, settings, scores)


def _cut_candidates(big: _BigInput, scorer, settings, runner) -> list[tuple]:
    """Every block is in: set the slide's threshold and hand out one candidate task per block with
    cells; returns (future, that block's BlockCells)."""
    if not big.tables:
        raise NoCellsFound("no cells were found")
    cells = pd.concat(big.tables.values(), ignore_index=True)
    big.choice = slide_threshold(scorer, settings, cells["score"].to_numpy())
    tasks = [(runner.submit(block_candidates_task, big.writer.stores, owned, big.choice.threshold,
                            settings.min_area), owned) for owned in big.owned]
    big.futures = [future for future, _ in tasks]
    big.pending = len(tasks)
    return tasks


def _finish_big(big: _BigInput, scorer, settings) -> FieldOutcome:
    name = Path(big.spec.path).name
    cells = pd.concat([big.tables[k] for k in sorted(big.tables)], ignore_index=True)  # in block order
    choice = big.choice
    threshold = choice.threshold
    pieces = [big.candidates[k] for k in sorted(big.candidates)]  # numbered in block order, however they came in
    candidates = pd.concat(pieces, ignore_index=True) if pieces else empty_candidate_table()
    candidates["candidate_id"] = np.arange(1, len(candidates) + 1)
    cells = mark_candidate_cells(cells, candidates)
    plan = next(iter(big.plans.values()))
    provenance = {
        "software": f"napari-supn-anomaly {__version__}",
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": scorer.model.name, "scorer": scorer.name, "heatmap_units": scorer.units,
        "threshold": threshold, "target_fpr": choice.fpr, "calibration": choice.to_dict(),
        "cell_diameter_px": plan.diameter,
        "intensity_matching": dict({"mode": settings.intensity}, **plan.match.to_dict()),
        "blocks": len(big.blocks), "input": big.spec.path, "input_axes": big.layout.axes,
        "cell_ids": "block k numbers its cells from k * id_stride + 1" if not plan.labels_given else "given",
        "id_stride": plan.id_stride,
    }
    paths = big.writer.finish(cells, candidates, provenance)
    big.finished = True
    n_flagged = int(cells["candidate"].sum())
    summary = (f"{len(cells)} cells; {n_flagged} with candidates; {len(candidates)} candidate regions at "
               f"threshold {threshold:.3g} ({choice.describe()}; {len(big.blocks)} blocks)")
    return FieldOutcome(name, True, summary, [str(p) for p in paths], cells, candidates, provenance)


def pools_fields(settings, n_fields: int, calibrate_per_input: bool) -> bool:
    """Whether the fields of a run share one threshold from all their cells (see the module's doc)."""
    return (n_fields > 1 and not calibrate_per_input and settings.threshold is None
            and getattr(settings, "calibration", "model") == "slide")


def _finish_fields(waiting: list[tuple[FieldOutcome, InputSpec, str]], earlier: list[pd.DataFrame], scorer,
                   settings, out_dir: str, overlay: bool, runner, done: Callable[[FieldOutcome], None]) -> list[str]:
    """Cut every waiting field at the one threshold of all the run's fields; the workers write them.
    Returns a line for each field with far more candidates than the others (``outlying_fields``)."""
    tables = [o.cell_table for o, _, _ in waiting]
    try:
        choice = choose_run_threshold(scorer, settings, pooled_scores(earlier + tables))
    except USER_ERRORS as exc:
        for outcome, _, _ in waiting:
            Path(outcome.deferred).unlink(missing_ok=True)
            done(FieldOutcome(outcome.name, False, " ".join(str(exc).split())))
        return []
    notes = [f.describe(waiting[f.index][0].name, "inputs") + " (or run with --calibrate-per-input)."
             for f in outlying_fields(tables + earlier, choice.threshold) if f.index < len(waiting)]
    outcomes = {runner.submit(finish_field_task, outcome, spec, stem, choice, out_dir, overlay): outcome
                for outcome, spec, stem in waiting}
    for future in runner.as_completed(list(outcomes)):
        waiting_outcome = outcomes.pop(future)
        try:
            finished = future.result()
        except Exception as exc:  # noqa: BLE001 - a worker lost too often: this field fails, the others go on
            finished = FieldOutcome(waiting_outcome.name, False, f"{type(exc).__name__}: {exc}")
        Path(waiting_outcome.deferred).unlink(missing_ok=True)
        done(finished)
    return notes


def _earlier_scores(out_dir: str, stems: list[str]) -> list[pd.DataFrame]:
    """The cell scores of fields whose results are complete already (skipped by --resume)."""
    from ..io import result_paths

    tables = []
    for stem in stems:
        cells = result_paths(out_dir, stem)[2]
        if cells.exists():
            tables.append(pd.read_csv(cells, usecols=["score"]))
    return tables


def _with_plane(table: pd.DataFrame, layout, plane: tuple[int, ...]) -> pd.DataFrame:
    if not layout.plane_axes:
        return table
    flat = int(np.ravel_multi_index(plane, layout.plane_shape))
    table = table.copy()
    for pos, axis in enumerate(layout.plane_axes):
        table.insert(pos, axis.lower(), np.full(len(table), plane[pos], np.int64))
    table.insert(0, "plane", np.full(len(table), flat, np.int64))
    return table


class ProgressBar:
    """One bar over every block and field of the run, on stderr."""

    def __init__(self, total: int, quiet: bool, stream=None):
        self.total, self.quiet, self.stream = total, quiet, stream or sys.stderr
        self.done, self.last = 0, -1.0
        self.tty = getattr(stream, "isatty", lambda: False)()

    def step(self) -> None:
        self.done += 1
        if self.quiet or not self.total:
            return
        share = self.done / self.total
        if self.tty:
            filled = int(30 * share)
            end = "\n" if self.done == self.total else ""
            print(f"\r[{'#' * filled}{'.' * (30 - filled)}] {self.done}/{self.total} blocks and fields", end=end,
                  file=self.stream, flush=True)
        elif share - self.last >= 0.1 or self.done == self.total:
            self.last = share
            print(f"  {self.done}/{self.total} blocks and fields done", file=self.stream, flush=True)


def run_detect(paths: list[Path], stems: list[str], scorer_spec: ScorerSpec, settings, out_dir: str, runner, *,
               channel: int | None = None, axes: str | None = None, labels: str | None = None,
               overlay: bool = False, resume: bool = False, quiet: bool = False, core: int = CORE_PX,
               calibrate_per_input: bool = False,
               on_outcome: Callable[[FieldOutcome], None] | None = None) -> RunReport:
    """Detect in every input with ``runner``; each finished input is passed to ``on_outcome``.
    The fields share one threshold from all their cells unless ``calibrate_per_input``."""
    started = time.perf_counter()
    report = RunReport()
    scorer = load_scorer(scorer_spec)
    if getattr(settings, "calibration", "model") == "model" or settings.threshold is not None:
        resolve_threshold(scorer, settings)  # an uncalibrated model is refused before the work
    # future -> ("field", (spec, stem)), ("block", _BigInput) or ("candidates", (_BigInput, BlockCells))
    owner: dict = {}
    bigs: list[_BigInput] = []
    small = [plane_pixels(path) <= BIG_PLANE_PIXELS for path in paths]
    pool = pools_fields(settings, sum(small), calibrate_per_input)
    waiting: list[tuple[FieldOutcome, InputSpec, str]] = []  # fields waiting for the pooled threshold
    skipped_fields: list[str] = []

    def done(outcome: FieldOutcome) -> None:
        report.outcomes.append(outcome)
        if on_outcome is not None:
            on_outcome(outcome)

    try:
        for path, stem, is_field in zip(paths, stems, small):
            if resume and results_complete(out_dir, stem):
                report.skipped.append(path.name)
                skipped_fields += [stem] if is_field else []
                continue
            spec = InputSpec(str(path), axes, channel, labels)
            if is_field:
                future = runner.submit(field_task, spec, scorer_spec, settings, out_dir, stem, overlay, pool)
                owner[future] = ("field", (spec, stem))
                continue
            try:
                big = _plan_big_input(spec, stem, scorer, settings, out_dir, core)
            except USER_ERRORS as exc:
                done(FieldOutcome(path.name, False, " ".join(str(exc).split())))
                continue
            bigs.append(big)
            for block in big.blocks:
                future = runner.submit(block_task, spec, big.layout, block, scorer_spec, big.plans[block.plane],
                                       big.writer.stores)
                big.futures.append(future)
                owner[future] = ("block", big)
        report.tasks = len(owner)
        bar = ProgressBar(len(owner) + sum(len(big.blocks) for big in bigs), quiet)  # a big plane's blocks count twice
        completed = runner.as_completed(list(owner))
        for future in completed:
            kind, what = owner.pop(future)
            bar.step()
            if kind == "field":
                try:
                    outcome = future.result()
                except Exception as exc:  # noqa: BLE001 - a worker lost too often, or a bug: this input fails
                    done(FieldOutcome(f"{what[1]}", False, f"{type(exc).__name__}: {exc}"))
                    continue
                if outcome.ok and outcome.deferred:
                    waiting.append((outcome, *what))
                else:
                    done(outcome)
                continue
            big, cut = what if kind == "candidates" else (what, None)
            if big.finished:  # failed already: what its other tasks bring is not wanted
                continue
            # A future kept alive keeps its result in the worker's memory: release each one as it is read.
            big.futures.remove(future)
            try:
                result = future.result()
                if kind == "block":
                    if len(result.cell_table):
                        key = (result.block.plane, result.block.index)
                        big.tables[key] = _with_plane(result.cell_table, big.layout, result.block.plane)
                        big.owned.append(result)
                else:
                    big.candidates[(cut.block.plane, cut.block.index)] = _with_plane(result, big.layout,
                                                                                     cut.block.plane)
                big.pending -= 1
                if big.pending == 0 and kind == "block":
                    for task, owned in _cut_candidates(big, scorer, settings, runner):
                        owner[task] = ("candidates", (big, owned))
                        completed.add(task)
                    bar.total -= len(big.blocks) - big.pending  # blocks without cells have no candidates to cut
                    report.tasks += big.pending
                elif big.pending == 0:
                    done(_finish_big(big, scorer, settings))
            except Exception as exc:  # noqa: BLE001 - any failure of a block fails its input only
                big.finished = True
                runner.cancel([f for f in big.futures if f in owner])
                big.writer.discard()
                message = " ".join(str(exc).split()) if isinstance(exc, USER_ERRORS) else f"{type(exc).__name__}: {exc}"
                done(FieldOutcome(Path(big.spec.path).name, False, message))
        if waiting:
            report.notes += _finish_fields(waiting, _earlier_scores(out_dir, skipped_fields), scorer, settings,
                                           out_dir, overlay, runner, done)
            waiting = []
    except BaseException:  # Ctrl-C or a failure of the run itself: nothing unfinished may look done
        runner.cancel(list(owner))
        for big in bigs:
            if not big.finished:
                big.writer.discard()
        if pool:  # the fields waiting for the threshold, and any task stopped after it kept its result
            for stem, is_field in zip(stems, small):
                if is_field:
                    deferred_path(out_dir, stem).unlink(missing_ok=True)
        raise
    report.seconds = time.perf_counter() - started
    return report
