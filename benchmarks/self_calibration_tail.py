"""The shape of healthy log scores that the slide's self-calibration assumes (issue 12): how many
healthy cells each shape flags when 5% and 1% are asked, on whole MalariaNet and Chula fields.

    python benchmarks/self_calibration_tail.py [--model giemsa-rbc]

Every field is detected once with the pipeline's defaults (stain matching, edge cells kept); the
per-cell scores are kept, and each shape's slide fit (``pipeline.self_calibration.fit_healthy``) is
then applied to them. Fields whose default run took the model's calibration (too few cells, or
scoring like the model's own healthy cells) keep that run's threshold at 5% and are counted. The
shape is chosen on the MalariaNet selection and training slides; the test slides and Chula chose
nothing. Writes a block into docs/benchmarks/self_calibration.md.
"""
from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parent))
from generalisation import field_source  # noqa: E402
from page_block import replace_block  # noqa: E402

import napari_supn_anomaly.pipeline.self_calibration as self_calibration  # noqa: E402
from napari_supn_anomaly.evaluation.generalisation import _parasite_hits, detect_field  # noqa: E402
from napari_supn_anomaly.models import load_model  # noqa: E402
from napari_supn_anomaly.scoring import resolve  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data"
PAGE = REPO / "docs" / "benchmarks" / "self_calibration.md"
START, END = "<!-- tail-shape -->", "<!-- /tail-shape -->"
SOURCES = {"selection": "MN selection (chose)", "train": "MN training slides (chose)",
           "test": "MN test (held out)", "chula": "Chula, 40 fields (held out)"}
SHAPES = {"normal": stats.norm, "logistic": stats.logistic,
          **{f"t, {dof} dof": stats.t(df=dof) for dof in (30, 10, 6, 4, 3)}}
RATES = (0.05, 0.01)


def flagged_at(runs, fpr: float, shape) -> tuple[float, float, int]:
    """False candidates per 100 healthy cells, share of parasites on a candidate, fields on the model's calibration."""
    kept = self_calibration.HEALTHY_SHAPE
    self_calibration.HEALTHY_SHAPE = shape
    try:
        flags, on_model = [], 0
        for r in runs:
            if r.provenance.get("calibration", {}).get("method") == "slide":
                flags.append(r.scores >= self_calibration.fit_healthy(r.scores).threshold(fpr))
            else:
                on_model += 1
                flags.append(r.scores >= r.provenance["threshold"])
    finally:
        self_calibration.HEALTHY_SHAPE = kept
    healthy = sum(int(r.healthy.sum()) for r in runs)
    false = sum(int((f & r.healthy).sum()) for f, r in zip(flags, runs))
    total, _, hit = _parasite_hits(runs, flags)
    return 100.0 * false / healthy, (hit / total if total else float("nan")), on_model


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="giemsa-rbc")
    p.add_argument("--cells", type=Path, default=REPO / "runs" / "stain" / "cells")
    p.add_argument("--write", type=Path, default=PAGE)
    args = p.parse_args(argv)
    started = time.time()
    scorer = resolve(load_model(args.model))
    runs = {s: [r for r in (detect_field(scorer, f, c) for f, c in field_source(DATA, s, args.cells)) if r is not None]
            for s in SOURCES}
    heads = [f"{SOURCES[s]}, {int(100 * fpr)}% asked" for s in SOURCES for fpr in RATES]
    lines = [START, "## The tail's shape", "",
             f"`python benchmarks/self_calibration_tail.py --model {args.model}`, "
             f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC, {platform.machine()}, {os.cpu_count()}-core CPU, "
             f"{time.time() - started:.0f} s. Each field alone, stain matching, edge cells kept. Each entry: healthy "
             "cells flagged per 100 (parasites on a candidate). Fields on the model's calibration at the default run "
             "(kept as run): " + ", ".join(f"{SOURCES[s]} {flagged_at(runs[s], 0.05, stats.norm)[2]} of {len(runs[s])}"
                                           for s in SOURCES) + ".", "",
             "| shape of healthy log scores | " + " | ".join(heads) + " |", "| --- " * (len(heads) + 1) + "|"]
    for name, shape in SHAPES.items():
        cells = []
        for s in SOURCES:
            for fpr in RATES:
                false, hit, _ = flagged_at(runs[s], fpr, shape)
                cells.append(f"{false:.1f}" + ("" if np.isnan(hit) else f" ({100 * hit:.0f}%)"))
        chosen = " (**used**)" if name == f"t, {self_calibration.HEALTHY_DOF} dof" else ""
        lines.append(f"| {name}{chosen} | " + " | ".join(cells) + " |")
    lines.append(END)
    replace_block(args.write, START, END, "\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
