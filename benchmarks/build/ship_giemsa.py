"""Make one candidate Giemsa model file the built-in ``giemsa-rbc``, with the default scorer and
score rule that ``benchmarks/generalisation.py select`` chose on the MalariaNet selection slides.

    python benchmarks/build/ship_giemsa.py runs/h4/models/giemsa-aug-s0.safetensors --default-scorer diag \
        [--score-rule purple] [--cell-cache runs/h4/cells]
    python benchmarks/build/scorer_calibrations.py --models giemsa-rbc   # then the other scorers' calibrations

Given the shipped file itself, only its default scorer changes (its selection record is kept):
``ship_giemsa.py src/napari_supn_anomaly/models/weights/giemsa-rbc.safetensors --default-scorer supn+saturation``.

The weights are not touched. The likelihood scorers are recalibrated on the model's own held-back
healthy cells when the rule changes (napari_supn_anomaly.evaluation.builtin_splits.giemsa_held_back).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from napari_supn_anomaly.evaluation.builtin_splits import giemsa_held_back
from napari_supn_anomaly.models import AnomalyModel
from napari_supn_anomaly.models.builtin import builtin_model_path
from napari_supn_anomaly.scoring.registry import SUPN_SATURATION
from napari_supn_anomaly.training.fit import calibrate

REPO = Path(__file__).resolve().parents[2]
DEFAULT_DATA_ROOT = REPO.parent / "shared" / "data"
PLYMOUTH_CELL_DIAMETER_PX = 70.2  # as benchmarks/build/giemsa_model.py


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("model", type=Path)
    p.add_argument("--default-scorer", choices=("supn", "diag", SUPN_SATURATION), required=True,
                   help=f"{SUPN_SATURATION}: takes effect once scorer_calibrations.py has calibrated it")
    p.add_argument("--score-rule", default=None, help="the likelihood scorers' rule (default: keep the file's)")
    p.add_argument("--selection", type=Path, default=REPO / "runs" / "generalisation" / "selection.json",
                   help="the selection results, summarised into the model's metadata")
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    p.add_argument("--cell-cache", type=Path, default=REPO / "runs" / "h4" / "cells")
    args = p.parse_args(argv)
    model = AnomalyModel.from_file(args.model)
    model.metadata["name"] = "giemsa-rbc"
    data = model.metadata["training"]["data"]
    data.setdefault("malarianet_cell_diameter_px", PLYMOUTH_CELL_DIAMETER_PX)
    if args.score_rule and any(r != args.score_rule for r in model.metadata["score_rules"].values()):
        model.metadata["score_rules"] = {k: args.score_rule for k in model.metadata["score_rules"]}
        crops, masks = giemsa_held_back(model, args.data_root, cache=args.cell_cache)
        calibrate(model, crops, masks)
    model.metadata["default_scorer"] = args.default_scorer
    if args.model.resolve() == builtin_model_path("giemsa-rbc").resolve():  # a new default for the shipped file
        model.save(args.model)
        print(f"saved {args.model}: default scorer {args.default_scorer}, selection record kept")
        return 0
    model.metadata["selection"] = {
        "how": "benchmarks/generalisation.py select: recipe (augmentation), seed, scorer and score rule chosen on "
               "the MalariaNet selection slides (cell AUROC), never on the test slides",
        "file": args.model.name}
    if args.selection.exists():
        sel = json.loads(args.selection.read_text())
        model.metadata["selection"]["malarianet_selection"] = {
            k: {m: round(v, 4) for m, v in row["malarianet_selection"].items() if isinstance(v, float)}
            for k, row in sel.items() if k.startswith(args.model.stem + "|")}
    path = model.save(builtin_model_path("giemsa-rbc"))
    print(f"saved {path}: default scorer {args.default_scorer}, rules {model.metadata['score_rules']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
