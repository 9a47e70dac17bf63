"""Healthy cells for fine-tuning, from what a person marks on whole fields.

Three ways to say where healthy cells are: regions (rectangles or polygons drawn in a Shapes
layer, or rows of a REGIONS.csv), a Labels layer of cells, or detection candidates the person
rejected. Each ends as single-cell crops ``[C, h, w]`` with the cell's mask, ready for
:func:`training.fit.fit_anomaly_model`, and a record of where every cell came from (stored in
the fine-tuned model's metadata). Everything is checked here, before any training starts, with
messages a person can act on.
"""
from __future__ import annotations

import csv
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from skimage import draw, measure

from ..cells import segment_cells
from ..errors import InputError, NoCellsFound
from ..files import check_input_file
from .fit import MIN_CELLS, split_holdout

REGION_COLUMNS = ("image", "y0", "x0", "y1", "x1")
REGION_KINDS = ("rectangle", "polygon", "ellipse")
# a cell counts as inside a region when at least this fraction of its area is
INSIDE_FRACTION = 0.6
# crops are cut this many cell diameters wide (the standardisation rescales and re-centres them)
CROP_DIAMETERS = 2.4


@dataclass
class Region:
    """A region of healthy cells on one image, in the image's pixel coordinates (y, x)."""

    image: str
    vertices: np.ndarray           # [K, 2] (y, x); for a rectangle or ellipse its 4 corners
    kind: str = "rectangle"
    source: str = ""               # e.g. "REGIONS.csv line 3" or "shape 2", for messages

    @property
    def bbox(self) -> tuple[float, float, float, float]:
        (y0, x0), (y1, x1) = self.vertices.min(0), self.vertices.max(0)
        return float(y0), float(x0), float(y1), float(x1)

    def describe(self) -> dict:
        y0, x0, y1, x1 = self.bbox
        return {"image": self.image, "kind": self.kind, "y0": round(y0, 1), "x0": round(x0, 1),
                "y1": round(y1, 1), "x1": round(x1, 1)}

    def mask(self, shape: tuple[int, int]) -> np.ndarray:
        """Boolean [Y, X] mask of the region, clipped to the image."""
        if self.kind == "ellipse":
            y0, x0, y1, x1 = self.bbox
            rr, cc = draw.ellipse((y0 + y1) / 2, (x0 + x1) / 2, (y1 - y0) / 2, (x1 - x0) / 2, shape=shape)
            out = np.zeros(shape, bool)
            out[rr, cc] = True
            return out
        return draw.polygon2mask(shape, self.vertices)


def rectangle(image: str, y0: float, x0: float, y1: float, x1: float, source: str = "") -> Region:
    return Region(image, np.array([[y0, x0], [y0, x1], [y1, x1], [y1, x0]], float), "rectangle", source)


@dataclass
class TrainingCells:
    """Single-cell crops of healthy cells and where each came from."""

    images: list[np.ndarray] = field(default_factory=list)   # [C, h, w] raw intensities
    masks: list[np.ndarray] = field(default_factory=list)    # [h, w] bool, the cell
    sources: list[dict] = field(default_factory=list)        # image, centre (y, x), how it was marked
    regions: list[dict] = field(default_factory=list)        # the regions or layers they came from
    skipped: list[str] = field(default_factory=list)         # regions that held no whole cell, as named to people

    def __len__(self) -> int:
        return len(self.images)

    def extend(self, other: "TrainingCells") -> None:
        self.images += other.images
        self.masks += other.masks
        self.sources += other.sources
        self.regions += other.regions
        self.skipped += other.skipped

    def subset(self, index) -> "TrainingCells":
        index = list(index)
        return TrainingCells([self.images[i] for i in index], [self.masks[i] for i in index],
                             [self.sources[i] for i in index], list(self.regions), list(self.skipped))

    def describe(self) -> dict:
        """What the model saw, for its metadata: images, regions and cell centres."""
        images = sorted({s["image"] for s in self.sources})
        return {"n_cells": len(self), "images": images, "regions": self.regions, "skipped_regions": self.skipped,
                "cells": [{"image": s["image"], "y": s["y"], "x": s["x"]} for s in self.sources]}


# -- reading regions ------------------------------------------------------------------------
def read_regions_csv(path: str | Path) -> list[Region]:
    """Rectangles from a CSV with columns image,y0,x0,y1,x1 (pixels; other columns are ignored)."""
    path = check_input_file(path, "regions file")
    try:
        return _read_regions(path)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise InputError(f"{path.name} is not a text CSV file of regions (columns {','.join(REGION_COLUMNS)}): "
                         f"{str(exc).splitlines()[0]}") from None


def _read_regions(path: Path) -> list[Region]:
    with open(path, newline="", encoding="utf-8-sig") as fh:
        reader = csv.DictReader(fh)
        header = [h.strip().lower() for h in (reader.fieldnames or [])]
        missing = [c for c in REGION_COLUMNS if c not in header]
        if missing:
            raise InputError(f"{path.name} must have the columns {','.join(REGION_COLUMNS)}; "
                             f"missing: {', '.join(missing)}")
        reader.fieldnames = header
        regions = []
        for row in reader:
            if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
                continue
            where = f"{path.name} line {reader.line_num}"
            name = (row["image"] or "").strip()
            if not name:
                raise InputError(f"{where}: the image column is empty")
            try:
                y0, x0, y1, x1 = (float(row[c]) for c in ("y0", "x0", "y1", "x1"))
            except (TypeError, ValueError):
                raise InputError(f"{where}: y0, x0, y1, x1 must be numbers (pixels)") from None
            if not (y1 > y0 and x1 > x0):
                raise InputError(f"{where}: the rectangle is empty (y1 must be larger than y0 and x1 than x0)")
            regions.append(rectangle(name, y0, x0, y1, x1, where))
    if not regions:
        raise InputError(f"{path.name} lists no regions")
    return regions


def regions_from_shapes(shapes: list[np.ndarray], kinds: list[str], image: str) -> list[Region]:
    """Regions from napari Shapes data already in the image's pixel coordinates (last two axes y, x).

    Lines and paths enclose nothing and are refused with a message.
    """
    regions = []
    for i, (vertices, kind) in enumerate(zip(shapes, kinds), start=1):
        if kind not in REGION_KINDS:
            raise InputError(f"shape {i} is a {kind}; draw rectangles, polygons or ellipses around healthy cells")
        regions.append(Region(image, np.asarray(vertices, float)[:, -2:], kind, f"shape {i}"))
    if not regions:
        raise InputError("the Shapes layer is empty: draw rectangles around some healthy cells first")
    return regions


# -- images -----------------------------------------------------------------------------------
def as_channels_first(image: np.ndarray, rgb: bool = False) -> np.ndarray:
    """A 2D plane as [C, Y, X] float32: [Y, X] -> [1, Y, X]; RGB(A) [Y, X, 3|4] -> [3, Y, X]."""
    image = np.asarray(image)
    if rgb:
        if image.ndim != 3 or image.shape[-1] not in (3, 4):
            raise InputError(f"an RGB image must be [Y, X, 3], got shape {image.shape}")
        return np.moveaxis(image[..., :3], -1, 0).astype(np.float32)
    if image.ndim == 2:
        return image[None].astype(np.float32)
    if image.ndim == 3:
        return image.astype(np.float32)
    raise InputError(f"expected one 2D plane, got an array of shape {image.shape}; choose a single plane")


# -- cells -------------------------------------------------------------------------------------
def crop_cell(image: np.ndarray, cell: np.ndarray, diameter: float) -> tuple[np.ndarray, np.ndarray, tuple]:
    """Cut a square of ``CROP_DIAMETERS`` cell diameters around one cell mask [Y, X].

    Returns (crop [C, h, w], the cell's mask in the crop, centre (y, x)). Pixels of the
    square beyond the image edge are filled with the median of the crop's background.
    """
    ys, xs = np.nonzero(cell)
    cy, cx = float(ys.mean()), float(xs.mean())
    half = int(np.ceil(CROP_DIAMETERS * diameter / 2))
    y0, x0 = int(round(cy)) - half, int(round(cx)) - half
    size = 2 * half
    h, w = cell.shape
    sy0, sx0, sy1, sx1 = max(0, y0), max(0, x0), min(h, y0 + size), min(w, x0 + size)
    part = image[:, sy0:sy1, sx0:sx1]
    part_mask = cell[sy0:sy1, sx0:sx1]
    outside = ~part_mask
    fill = np.median(part[:, outside], axis=1) if outside.any() else np.median(part, axis=(1, 2))
    crop = np.empty((image.shape[0], size, size), np.float32)
    crop[:] = fill[:, None, None]
    crop[:, sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = part
    mask = np.zeros((size, size), bool)
    mask[sy0 - y0:sy1 - y0, sx0 - x0:sx1 - x0] = part_mask
    return crop, mask, (round(cy, 1), round(cx, 1))


def _touches_edge(cell: np.ndarray) -> bool:
    return bool(cell[0].any() or cell[-1].any() or cell[:, 0].any() or cell[:, -1].any())


def cells_from_labels(image: np.ndarray, labels: np.ndarray, image_name: str, ids=None,
                      how: str = "cell labels") -> TrainingCells:
    """Crops of the labelled cells (all, or only ``ids``) of one plane [C, Y, X].

    Cells cut by the image edge are left out: half a cell would teach the model half-cells.
    """
    labels = np.asarray(labels)
    if labels.shape != image.shape[1:]:
        raise InputError(f"the cell labels ({labels.shape[0]} x {labels.shape[1]}) do not have the size of "
                         f"the image ({image.shape[1]} x {image.shape[2]})")
    props = {p.label: p for p in measure.regionprops(labels.astype(np.int32))}
    ids = sorted(props) if ids is None else [int(i) for i in ids if int(i) in props]
    if not ids:
        return TrainingCells()
    diameters = np.array([props[i].equivalent_diameter_area for i in ids])
    diameter = float(np.median(diameters))
    out = TrainingCells()
    for i in ids:
        p = props[i]
        cell = labels == i
        if _touches_edge(cell) or p.area < 16:
            continue
        crop, mask, (cy, cx) = crop_cell(image, cell, diameter)
        out.images.append(crop)
        out.masks.append(mask)
        out.sources.append({"image": image_name, "y": cy, "x": cx, "how": how})
    return out


def segment_plane(image: np.ndarray, modality: str, cell_diameter: float | None = None) -> np.ndarray:
    """Cell labels of a whole plane, with the plugin's classical segmentation."""
    try:
        return segment_cells(image, modality, cell_diameter).labels
    except NoCellsFound as exc:
        raise InputError(f"no cells could be found in the image: {exc}") from None


def cells_in_regions(image: np.ndarray, regions: list[Region], modality: str,
                     labels: np.ndarray | None = None, cell_diameter: float | None = None,
                     ) -> TrainingCells:
    """Healthy cells inside the regions drawn on one plane [C, Y, X].

    Cells come from ``labels`` when given, else from segmenting the whole plane (a cell that a
    region cuts in half is still segmented whole). A cell is taken when most of it lies in a
    region. Regions entirely outside the image are errors (a wrong image or coordinates);
    regions holding no whole cell (a box at the field's edge, around touching cells found as
    one object) are skipped and named in ``skipped``: :func:`skipped_warning` says so in one line,
    and :func:`check_training_cells` fails only when too few cells remain.
    """
    h, w = image.shape[1:]
    for r in regions:
        y0, x0, y1, x1 = r.bbox
        if y1 <= 0 or x1 <= 0 or y0 >= h or x0 >= w:
            raise InputError(f"{r.source or 'a region'} (y {y0:.0f}-{y1:.0f}, x {x0:.0f}-{x1:.0f}) lies outside "
                             f"the image {r.image!r}, which is {h} x {w} pixels")
    if labels is None:
        labels = segment_plane(image, modality, cell_diameter)
    labels = np.asarray(labels)
    areas = np.bincount(labels.ravel())
    chosen: list[int] = []
    skipped: list[str] = []
    for r in regions:
        inside = np.bincount(labels[r.mask((h, w))].ravel(), minlength=len(areas))
        frac = np.divide(inside, np.maximum(areas, 1), dtype=np.float64)
        frac[0] = 0
        ids = np.nonzero(frac >= INSIDE_FRACTION)[0]
        if len(ids) == 0:
            skipped.append(r.source or f"the region at y {r.bbox[0]:.0f}, x {r.bbox[1]:.0f} on {r.image}")
            continue
        chosen += [int(i) for i in ids if i not in chosen]
    out = cells_from_labels(image, labels, regions[0].image, chosen, how="region")
    out.regions = [r.describe() for r in regions]
    out.skipped = skipped
    return out


def skipped_warning(cells: TrainingCells, n_regions: int | None = None) -> str | None:
    """One line naming every region that held no whole cell, or None when none was skipped."""
    if not cells.skipped:
        return None
    n = len(cells.skipped)
    what = f"{n} of {n_regions} regions" if n_regions else f"{n} region{'s' if n > 1 else ''}"
    return (f"{what} held no whole cell (cut by the image's edge, or around touching cells found as one "
            f"object) and {'were' if n > 1 else 'was'} skipped: " + ", ".join(cells.skipped))


def cells_at_points(image: np.ndarray, points: np.ndarray, image_name: str, modality: str,
                    labels: np.ndarray | None = None, cell_diameter: float | None = None) -> TrainingCells:
    """Cells under points [N, 2] (y, x): candidates a person marked as not a parasite."""
    points = np.asarray(points, float).reshape(-1, 2)
    if len(points) == 0:
        raise InputError("no candidates are marked as rejected; reject some false candidates first")
    if labels is None:
        labels = segment_plane(image, modality, cell_diameter)
    h, w = labels.shape
    iy = np.clip(np.round(points[:, 0]).astype(int), 0, h - 1)
    ix = np.clip(np.round(points[:, 1]).astype(int), 0, w - 1)
    ids = sorted({int(i) for i in labels[iy, ix] if i > 0})
    out = cells_from_labels(image, labels, image_name, ids, how="rejected candidate")
    out.regions = [{"image": image_name, "kind": "rejected candidates", "n_points": int(len(points))}]
    return out


# -- checks before training ---------------------------------------------------------------
def cells_needed(holdout_fraction: float = 0.0, seed: int = 0) -> int:
    """Fewest marked cells that leave MIN_CELLS to train on after the held-back slice."""
    n = MIN_CELLS
    while len(split_holdout(n, holdout_fraction, seed)[0]) < MIN_CELLS:
        n += 1
    return n


def check_training_cells(cells: TrainingCells, base_channels: int | None = None, base_name: str = "the base model",
                         holdout_fraction: float = 0.0) -> None:
    """Everything that would make fine-tuning fail or mislead, as one message, before it starts."""
    if base_channels is not None and len(cells):
        c = cells.images[0].shape[0]
        if c != base_channels:
            what = {1: "1 channel (grey)", 3: "3 channels (RGB)"}
            raise InputError(f"{base_name} works on {what.get(base_channels, f'{base_channels} channels')} but the "
                             f"image has {what.get(c, f'{c} channels')}; choose a base model made for this kind of image")
    need = cells_needed(holdout_fraction)
    if len(cells) < need:
        why = f" ({MIN_CELLS} to train on, {need - MIN_CELLS} held back to calibrate the threshold)" if need > MIN_CELLS else ""
        empty = (f" ({len(cells.skipped)} region(s) held no whole cell: {', '.join(cells.skipped[:5])}"
                 f"{', ...' if len(cells.skipped) > 5 else ''})" if cells.skipped else "")
        raise InputError(f"only {len(cells)} healthy cell(s) were found in the marked regions{empty}; at least "
                         f"{need} are needed{why}: mark more healthy cells, or larger regions around whole cells")


def _match_image(name: str, names: list[str]) -> str | None:
    """An image named in a region, among the given images: by exact name, file name or stem."""
    if name in names:
        return name
    for n in names:
        if Path(n).name == Path(name).name or Path(n).stem == Path(name).stem:
            return n
    return None


def cells_from_fields(fields: dict[str, np.ndarray], regions: list[Region], modality: str,
                      cell_diameter: float | None = None, labels_out: dict | None = None) -> TrainingCells:
    """Healthy cells of several whole fields ``{name: [C, Y, X]}``, each region on its named field.

    ``labels_out``, when given, receives each field's cell labels (the segmentation used)."""
    names = list(fields)
    by_field: dict[str, list[Region]] = {}
    for r in regions:
        match = _match_image(r.image, names)
        if match is None:
            raise InputError(f"{r.source or 'a region'} is on {r.image!r}, which is not among the images given "
                             f"({', '.join(Path(n).name for n in names)})")
        by_field.setdefault(match, []).append(r)
    out = TrainingCells()
    for name, field_regions in by_field.items():
        for r in field_regions:
            r.image = Path(name).name
        labels = segment_plane(fields[name], modality, cell_diameter)
        if labels_out is not None:  # the fine-tuning check scores the fields' other cells
            labels_out[name] = labels
        out.extend(cells_in_regions(fields[name], field_regions, modality, labels=labels))
    return out
