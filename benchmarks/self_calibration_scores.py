"""Per-cell scores of real fields, cached for benchmarks/self_calibration.py (scoring is the slow part).

    python benchmarks/self_calibration_scores.py [--chula-every 3] [--cache runs/self_calibration]

Runs ``detect`` as it ships (the package's segmentation, the built-in ``giemsa-rbc`` model and
its default scorer, default settings) on every MalariaNet field and every ``--chula-every``-th
Chula field (sorted by number), and writes one CSV of cells and one of MalariaNet parasites:

- cells.csv: source, slide, field, cell_id, area, score, red_cell (Chula: the cell holds a
  labelled red-cell centre), parasite_px (MalariaNet: parasite-mask pixels in the cell);
- parasites.csv: slide, field, parasite (connected component of the mask), best_score (highest
  score of the cells it touches; -inf when it touches no cell found).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage as ndi

from napari_supn_anomaly.models import load_model
from napari_supn_anomaly.pipeline.stacks import DetectSettings, detect
from napari_supn_anomaly.scoring import resolve

DATA = Path(os.environ.get("SUPN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
MODEL = "giemsa-rbc"


def chula_fields(every: int) -> list[Path]:
    paths = sorted((DATA / "chula_rbc_fields" / "images").glob("*.jpg"), key=lambda p: int(p.stem))
    return paths[::every]


def malarianet_fields() -> list[Path]:
    return sorted((DATA / "malarianet_giemsa_fields" / "images").glob("*.jpg"))


def detect_field(path: Path, scorer):
    image = np.asarray(Image.open(path).convert("RGB"))
    result = detect(image, "YXS", scorer, settings=DetectSettings(calibration="model")
                    if "calibration" in DetectSettings.__dataclass_fields__ else DetectSettings())
    return result.cells, result.cell_table


def chula_rows(path: Path, labels: np.ndarray, table: pd.DataFrame) -> pd.DataFrame:
    centres = pd.read_csv(DATA / "chula_rbc_fields" / "cells" / f"{path.stem}.csv")
    y = np.clip(centres["y"].to_numpy(int), 0, labels.shape[0] - 1)
    x = np.clip(centres["x"].to_numpy(int), 0, labels.shape[1] - 1)
    hit = set(labels[y, x].tolist()) - {0}
    return table.assign(source="chula", slide=f"chula_{path.stem}", field=path.stem,
                        red_cell=table["cell_id"].isin(hit), parasite_px=0)


def malarianet_rows(path: Path, labels: np.ndarray, table: pd.DataFrame):
    mask = np.asarray(Image.open(DATA / "malarianet_giemsa_fields" / "masks" / f"{path.stem}.png").convert("L")) > 127
    slide = path.stem.split("_Image")[0]
    ids = table["cell_id"].to_numpy()
    px = np.asarray(ndi.sum_labels(mask, labels, ids)) if len(ids) else np.zeros(0)
    cells = table.assign(source="malarianet", slide=slide, field=path.stem, red_cell=True,
                         parasite_px=px.astype(int))
    comps, _ = ndi.label(mask, structure=np.ones((3, 3), bool))
    score_of = dict(zip(ids.tolist(), table["score"].tolist()))
    parasites = []
    for k, box in enumerate(ndi.find_objects(comps), start=1):
        touched = set(np.unique(labels[box][comps[box] == k]).tolist()) - {0}
        best = max((score_of[c] for c in touched if c in score_of), default=-np.inf)
        parasites.append({"slide": slide, "field": path.stem, "parasite": k, "best_score": best})
    return cells, pd.DataFrame(parasites)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--chula-every", type=int, default=3)
    ap.add_argument("--cache", default="runs/self_calibration")
    args = ap.parse_args(argv)
    out = Path(args.cache)
    out.mkdir(parents=True, exist_ok=True)
    scorer = resolve(load_model(MODEL))
    cells, parasites = [], []
    started = time.perf_counter()
    for path in malarianet_fields():
        labels, table = detect_field(path, scorer)
        c, p = malarianet_rows(path, labels, table)
        cells.append(c)
        parasites.append(p)
        print(f"{path.name}: {len(c)} cells, {len(p)} parasites", file=sys.stderr)
    pd.concat(parasites, ignore_index=True).to_csv(out / "parasites.csv", index=False)
    for path in chula_fields(args.chula_every):
        labels, table = detect_field(path, scorer)
        cells.append(chula_rows(path, labels, table))
        print(f"chula {path.name}: {len(table)} cells", file=sys.stderr)
    columns = ["source", "slide", "field", "cell_id", "area", "score", "red_cell", "parasite_px"]
    pd.concat(cells, ignore_index=True)[columns].to_csv(out / "cells.csv", index=False)
    (out / "scored.txt").write_text(f"model {MODEL}, scorer {scorer.name}; {time.perf_counter() - started:.0f} s; "
                                    f"load average {os.getloadavg()}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
