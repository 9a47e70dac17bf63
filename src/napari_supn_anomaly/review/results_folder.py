"""A results folder as ``supn-anomaly detect`` or the Detect widget writes it, read back for review.

``<stem>_cells.csv`` is the record of the review: its ``status`` column. ``<stem>_candidates.csv``
carries each region's cell status too (so the Fine-tune widget finds the rejected ones); it is
only read for decisions when the cell table has no status column (a folder from before reviews).
Hand-edited tables are checked and refused with one line naming the file and the row.
"""
from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import InputError
from ..files import atomic_outputs
from ..io import RESULT_SUFFIXES, result_paths
from .parasitemia import Counts, count, count_per_plane, summary_table
from .statuses import (
    DECISIONS,
    cell_keys,
    check_statuses,
    clean_status,
    decisions_from_candidates,
    statuses_for_candidates,
    with_status,
)

CELLS_CSV, CANDIDATES_CSV = RESULT_SUFFIXES[2], RESULT_SUFFIXES[3]
SUMMARY_NAME = "summary.csv"
REQUIRED_CELL_COLUMNS = ("cell_id", "candidate")


@dataclass
class ReviewedImage:
    """One image's tables from a results folder, statuses checked."""

    stem: str
    folder: Path
    cells: pd.DataFrame
    candidates: pd.DataFrame
    provenance: dict = field(default_factory=dict)

    @property
    def counts(self) -> Counts:
        return count(self.cells)

    def counts_per_plane(self) -> dict[int, Counts]:
        return count_per_plane(self.cells)

    @property
    def paths(self) -> list[Path]:
        return result_paths(self.folder, self.stem)


def result_stems(folder: str | Path) -> list[str]:
    """The stems of the results in ``folder`` (one per ``<stem>_cells.csv``), sorted."""
    folder = Path(folder).expanduser()
    if not folder.is_dir():
        raise InputError(f"results folder not found: {folder}")
    stems = sorted(p.name[: -len(CELLS_CSV)] for p in folder.glob(f"*{CELLS_CSV}") if p.is_file())
    if not stems:
        raise InputError(f"{folder} holds no results (no *{CELLS_CSV}); give the --out folder of supn-anomaly detect")
    return stems


def _read_csv(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError(f"{path.name} is missing from {path.parent}")
    try:
        return pd.read_csv(path, dtype={"status": object})
    except (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError) as exc:
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise InputError(f"{path.name} is not a readable table ({detail})") from None


def _check_ids(table: pd.DataFrame, name: str, known: set[tuple[int, int]], what: str) -> None:
    for i, key in enumerate(cell_keys(table)):
        if key not in known:
            where = f" in plane {key[0]}" if "plane" in table.columns else ""
            raise InputError(f"{name} row {i + 2}: unknown cell id {key[1]}{where} ({what})")


def _numeric(table: pd.DataFrame, name: str, columns) -> None:
    for column in columns:
        if column not in table.columns:
            continue
        values = pd.to_numeric(table[column], errors="coerce")
        bad = np.flatnonzero(values.isna().to_numpy())
        if len(bad):
            raise InputError(f"{name} row {bad[0] + 2}: {column} {table[column].iloc[bad[0]]!r} is not a number")


def label_ids(labels: np.ndarray) -> set[tuple[int, int]]:
    """(plane, cell id) of every cell in a label image (plane axes flattened)."""
    planes = labels.reshape(-1, *labels.shape[-2:])
    return {(p, int(i)) for p, plane in enumerate(planes) for i in np.unique(plane) if i > 0}


def read_provenance(heatmap_path: Path) -> dict:
    """The settings and model a result was made with (the JSON in its heatmap TIFF); empty if unreadable."""
    import tifffile

    try:
        with tifffile.TiffFile(heatmap_path) as tif:
            return json.loads(tif.pages[0].description or "{}")
    except (OSError, ValueError):  # a report without settings beats no report
        return {}


def read_reviewed(folder: str | Path, stem: str, *, check_labels: bool = True) -> ReviewedImage:
    """The tables of ``stem`` with a checked ``status`` column (all candidates unreviewed in an old
    folder). InputError naming the row for an unknown status, missing columns, unknown cell ids."""
    import tifffile

    folder = Path(folder).expanduser()
    heatmap_path, labels_path, cells_path, candidates_path = result_paths(folder, stem)
    cells = _read_csv(cells_path)
    missing = [c for c in REQUIRED_CELL_COLUMNS if c not in cells.columns]
    if missing:
        raise InputError(f"{cells_path.name}: missing column {missing[0]!r} (a table written by supn-anomaly "
                         f"detect has {', '.join(REQUIRED_CELL_COLUMNS)})")
    _numeric(cells, cells_path.name, ["cell_id", "plane"])
    cells["candidate"] = cells["candidate"].astype(str).str.strip().str.lower().isin(["true", "1", "yes"])
    had_status = "status" in cells.columns
    if had_status:
        check_statuses(cells, cells_path.name)
    cells = with_status(cells)
    duplicate = np.flatnonzero(pd.Series(cell_keys(cells)).duplicated().to_numpy())
    if len(duplicate):
        raise InputError(f"{cells_path.name} row {duplicate[0] + 2}: cell id {cells['cell_id'].iloc[duplicate[0]]} "
                         "appears twice")
    candidates = _read_csv(candidates_path) if candidates_path.is_file() else pd.DataFrame(columns=["cell_id"])
    if "cell_id" not in candidates.columns:
        raise InputError(f"{candidates_path.name}: missing column 'cell_id'")
    _numeric(candidates, candidates_path.name, ["cell_id", "plane"])
    _check_ids(candidates, candidates_path.name, set(cell_keys(cells)), f"not in {cells_path.name}")
    if "status" in candidates.columns and len(candidates):
        status = clean_status(candidates["status"])
        bad = [i for i, s in enumerate(status) if s not in ("candidate", *DECISIONS)]
        if bad:
            raise InputError(f"{candidates_path.name} row {bad[0] + 2}: unknown status {status[bad[0]]!r}; use "
                             "candidate, accepted, rejected or unsure")
    if not had_status:
        cells = decisions_from_candidates(cells, candidates)
    if check_labels and labels_path.is_file():
        _check_ids(cells, cells_path.name, label_ids(tifffile.imread(labels_path)), f"not in {labels_path.name}")
    return ReviewedImage(stem, folder, cells, candidates, read_provenance(heatmap_path))


def read_folder(folder: str | Path) -> list[ReviewedImage]:
    return [read_reviewed(folder, stem) for stem in result_stems(folder)]


def summarize(images: list[ReviewedImage], *, rbc_per_ul: float | None = None,
              per_field: bool = False) -> pd.DataFrame:
    """The summary table: one row per image (and per field of a stack with ``per_field``), pooled ``ALL``."""
    counts: dict[str, Counts] = {}
    for image in images:
        counts[image.stem] = image.counts
    table = summary_table(counts, rbc_per_ul)
    if per_field:
        rows = []
        for image in images:
            planes = image.counts_per_plane()
            if len(planes) > 1:
                rows += [c.row(f"{image.stem} field {p}", rbc_per_ul) for p, c in planes.items()]
        if rows:
            pooled = table.iloc[[-1]]
            table = pd.concat([table.iloc[:-1], pd.DataFrame(rows), pooled], ignore_index=True)[table.columns]
    return table


def write_summary(table: pd.DataFrame, path: str | Path) -> Path:
    path = Path(path)
    with atomic_outputs([path]) as tmp:
        table.to_csv(tmp[0], index=False, float_format="%.6g")
    return path


def keep_old_review(folder: str | Path, stem: str) -> Path | None:
    """Before new results replace ``<stem>_cells.csv``: if it holds decisions, keep a copy
    ``<stem>_review-<date-time>.csv`` beside it and return its path."""
    path = Path(folder) / f"{stem}{CELLS_CSV}"
    if not path.is_file():
        return None
    try:
        table = pd.read_csv(path, dtype={"status": object}, keep_default_na=False)
    except (OSError, ValueError):
        return None
    if "status" not in table.columns or not np.isin(clean_status(table["status"]), DECISIONS).any():
        return None
    kept = path.with_name(f"{stem}_review-{time.strftime('%Y%m%d-%H%M%S')}.csv")
    n = 1
    while kept.exists():
        kept = path.with_name(f"{stem}_review-{time.strftime('%Y%m%d-%H%M%S')}-{n}.csv")
        n += 1
    kept.write_bytes(path.read_bytes())
    return kept


def write_statuses(image_cells: pd.DataFrame, candidates: pd.DataFrame, folder: str | Path, stem: str) -> list[Path]:
    """Write the reviewed cell table and the candidate table (each region with its cell's status)."""
    folder = Path(folder)
    candidates = candidates.copy()
    if len(candidates):
        candidates["status"] = statuses_for_candidates(image_cells, candidates)
    paths = [folder / f"{stem}{CELLS_CSV}", folder / f"{stem}{CANDIDATES_CSV}"]
    with atomic_outputs(paths) as tmp:
        image_cells.to_csv(tmp[0], index=False, float_format="%.4f")
        candidates.to_csv(tmp[1], index=False, float_format="%.4f")
    return paths
