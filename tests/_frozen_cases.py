"""Inputs, command lines and comparisons shared by test_behaviour_frozen.py and frozen/regenerate.py.

The cases themselves (which scorers, which options) live in frozen/cases.json, the values the
commands wrote when it was made next to it; nothing here asks the package which scorers exist.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import tifffile
from PIL import Image

from napari_supn_anomaly.cli import main
from napari_supn_anomaly.sample_data import load_sample

FROZEN = Path(__file__).resolve().parent / "frozen"
CASES_FILE = FROZEN / "cases.json"
# 1e-4: the project's bar for "the same scores"; PyTorch releases round the CPU's channels-last
# decoders differently by about 1e-5 of a score (2.13 against 2.14 moved one score 7.6088 -> 7.6089)
RTOL = ATOL = 1e-4
# The energy projection accepts or undoes each of its 30 steps by comparing two energies: a CPU
# that rounds differently can flip one decision, and its scores then move by a few 1e-4 (one
# fluorescence score 0.9032 on one Xeon, 0.9037 on another, same code and torch).
STEP_ACCEPTING_SCORERS = {"projection": 2e-3}

CELL_COLUMNS = ["cell_id", "y", "x", "area", "score", "candidate"]
SCORE_COLUMNS = ["file", "score", "healthy_fpr", "candidate", "mask", "cell_diameter_px"]


@dataclass(frozen=True)
class Window:
    sample: str
    plane: int | None
    y: int
    x: int
    size: int


# field name -> the sub-window of a built-in sample that `detect` runs on
FIELDS = {
    "fluorescence": Window("fluorescence", 0, 80, 80, 360),
    "giemsa": Window("giemsa", 0, 112, 100, 400),
}

# crop set name -> (sample, plane, crop side in cell diameters, infected, healthy, healthy for calibration)
CROP_SETS = {
    "fluorescence": ("fluorescence", 0, 1.6, 6, 6, 6),
    "giemsa": ("giemsa", 0, 1.6, 6, 6, 6),
}


# -- inputs ---------------------------------------------------------------------------------

def _plane(array: np.ndarray, plane: int | None) -> np.ndarray:
    return array if plane is None else array[plane]


def field_image(name: str) -> np.ndarray:
    w = FIELDS[name]
    image = _plane(load_sample(w.sample).image, w.plane)
    return np.ascontiguousarray(image[w.y:w.y + w.size, w.x:w.x + w.size])


def write_field(name: str, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.tif"
    image = field_image(name)
    tifffile.imwrite(path, image, photometric="rgb" if image.ndim == 3 else "minisblack")
    return path


def _cell_centres(cells: np.ndarray) -> dict[int, tuple[int, int]]:
    ids = np.unique(cells)
    ids = ids[ids > 0]
    return {int(i): tuple(int(round(v)) for v in np.argwhere(cells == i).mean(0)) for i in ids}


def _crop_windows(sample, plane: int | None, side: int) -> tuple[list, list]:
    """(y0, x0) of every whole crop window around an infected / a healthy cell, in label order."""
    cells, parasites = _plane(sample.cells, plane), _plane(sample.parasites, plane)
    infected = set(np.unique(cells[parasites > 0]).tolist())
    inside = {}
    for i, (cy, cx) in _cell_centres(cells).items():
        y0, x0 = cy - side // 2, cx - side // 2
        if 0 <= y0 and 0 <= x0 and y0 + side <= cells.shape[0] and x0 + side <= cells.shape[1]:
            inside[i] = (y0, x0)
    return ([w for i, w in inside.items() if i in infected], [w for i, w in inside.items() if i not in infected])


def write_crop_sets(name: str, root: Path) -> tuple[Path, Path]:
    """Cut the crop set's cells into root/<name>/cells and root/<name>/healthy; returns both folders."""
    sample_key, plane, diameters, n_infected, n_healthy, n_calibration = CROP_SETS[name]
    sample = load_sample(sample_key)
    image = _plane(sample.image, plane)
    side = int(round(diameters * sample.cell_diameter_px))
    infected, healthy = _crop_windows(sample, plane, side)
    cells_dir, healthy_dir = root / name / "cells", root / name / "healthy"
    groups = {cells_dir: [("infected", w) for w in infected[:n_infected]]
              + [("healthy", w) for w in healthy[:n_healthy]],
              healthy_dir: [("healthy", w) for w in healthy[n_healthy:n_healthy + n_calibration]]}
    for folder, windows in groups.items():
        folder.mkdir(parents=True, exist_ok=True)
        for k, (kind, (y0, x0)) in enumerate(windows):
            crop = np.ascontiguousarray(image[y0:y0 + side, x0:x0 + side])
            Image.fromarray(crop).save(folder / f"{kind}_{k:02d}_y{y0}_x{x0}.png")
    return cells_dir, healthy_dir


# -- the commands ---------------------------------------------------------------------------

# The default sensitivity when the behaviour was frozen; the default is now 5% (issue 15,
# pipeline/sensitivity.py), a deliberate change of a setting, not of any score.
FROZEN_DEFAULT_FPR = "0.01"


def detect_argv(case: dict, field: Path, out: Path) -> list[str]:
    argv = ["detect", str(field), "--model", case["model"], "--out", str(out), "--device", "cpu", "--quiet"]
    if case["scorer"] is not None:
        argv += ["--scorer", case["scorer"]]
    argv += ["--fpr", FROZEN_DEFAULT_FPR if case["fpr"] is None else str(case["fpr"])]
    return argv


def score_cells_argv(case: dict, cells_dir: Path, healthy_dir: Path, out: Path) -> list[str]:
    argv = ["score-cells", "--model", case["model"], "--images", str(cells_dir), "--out", str(out),
            "--scorer", case["scorer"], "--device", "cpu", "--fpr", FROZEN_DEFAULT_FPR]
    if case["healthy"]:
        argv += ["--healthy", str(healthy_dir)]
    return argv


def read_table(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, keep_default_na=False, na_values=[""])


def run_detect(case: dict, field: Path, out: Path) -> dict[str, pd.DataFrame]:
    """The cell and candidate tables `detect` wrote for one case."""
    code = main(detect_argv(case, field, out))
    if code != 0:
        raise RuntimeError(f"detect exited with {code} for {case['id']}")
    return {table: read_table(out / f"{field.stem}_{table}.csv") for table in ("cells", "candidates")}


def run_score_cells(case: dict, cells_dir: Path, healthy_dir: Path, out_dir: Path) -> pd.DataFrame:
    out_dir.mkdir(parents=True, exist_ok=True)
    out = out_dir / f"{case['id']}.csv"
    code = main(score_cells_argv(case, cells_dir, healthy_dir, out))
    if code != 0:
        raise RuntimeError(f"score-cells exited with {code} for {case['id']}")
    return read_table(out)


# -- stored values --------------------------------------------------------------------------

def load_cases() -> dict:
    return json.loads(CASES_FILE.read_text())


def stored_detect_path(case_id: str, table: str) -> Path:
    return FROZEN / "detect" / f"{case_id}_{table}.csv"


def stored_score_cells_path(case_id: str) -> Path:
    return FROZEN / "score_cells" / f"{case_id}.csv"


def write_table(table: pd.DataFrame, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(path, index=False)


def _column_differences(name: str, actual: pd.Series, expected: pd.Series, rtol: float = RTOL) -> list[str]:
    if actual.dtype.kind != expected.dtype.kind:
        return [f"{name}: dtype {actual.dtype} != stored {expected.dtype}"]
    if expected.dtype.kind == "f":
        a, e = actual.to_numpy(np.float64), expected.to_numpy(np.float64)
        close = np.isclose(a, e, rtol=rtol, atol=ATOL, equal_nan=True)
        return [] if close.all() else [f"{name}: rows {np.flatnonzero(~close).tolist()} differ: "
                                       f"{a[~close].tolist()} != stored {e[~close].tolist()}"]
    same = actual.to_numpy() == expected.to_numpy()
    return [] if same.all() else [f"{name}: rows {np.flatnonzero(~same).tolist()} differ: "
                                  f"{actual[~same].tolist()} != stored {expected[~same].tolist()}"]


def table_differences(actual: pd.DataFrame, expected: pd.DataFrame, all_columns: bool,
                      rtol: float = RTOL) -> list[str]:
    """What differs between a table and its stored version (empty when they match).

    ``all_columns``: the table must have exactly the stored columns; otherwise only those are compared.
    """
    missing = [c for c in expected.columns if c not in actual.columns]
    if missing or (all_columns and list(actual.columns) != list(expected.columns)):
        return [f"columns {list(actual.columns)} != stored {list(expected.columns)}"]
    if len(actual) != len(expected):
        return [f"{len(actual)} rows != stored {len(expected)}"]
    return [d for col in expected.columns for d in _column_differences(col, actual[col], expected[col], rtol)]


def _rtol(case: dict) -> float:
    return STEP_ACCEPTING_SCORERS.get(case.get("scorer"), RTOL)


def detect_differences(case: dict, tables: dict[str, pd.DataFrame]) -> list[str]:
    return [f"{name}: {d}" for name, all_columns in (("cells", False), ("candidates", True))
            for d in table_differences(tables[name], read_table(stored_detect_path(case["id"], name)), all_columns,
                                       _rtol(case))]


def score_cells_differences(case: dict, table: pd.DataFrame) -> list[str]:
    return table_differences(table, read_table(stored_score_cells_path(case["id"])), all_columns=False,
                             rtol=_rtol(case))


def store_detect(case: dict, tables: dict[str, pd.DataFrame]) -> None:
    write_table(tables["cells"][CELL_COLUMNS], stored_detect_path(case["id"], "cells"))
    write_table(tables["candidates"], stored_detect_path(case["id"], "candidates"))


def store_score_cells(case: dict, table: pd.DataFrame) -> None:
    write_table(table[SCORE_COLUMNS], stored_score_cells_path(case["id"]))
