"""Score ``fluorescence-rbc`` (or another fluorescence model file) in several orientations: store the
number of turns and the score rule in the file, recalibrate every scorer whose maps they change on
the model's held-back healthy training cells, and store the validation metrics again. The weights
are not touched; a model built by ``fluorescence_model.py`` today has both already.

    python benchmarks/build/fluorescence_rotations.py [--model FILE] [--rotations 4] [--score-rule bright]
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fluorescence_model import DEFAULT_DATA_ROOT, MODEL_NAME, ROTATIONS, SCORE_RULE, validation_metrics  # noqa: E402

from napari_supn_anomaly.evaluation.builtin_splits import fluorescence_split  # noqa: E402
from napari_supn_anomaly.models import AnomalyModel, builtin_model_path  # noqa: E402
from napari_supn_anomaly.scoring import calibrate, resolve  # noqa: E402
from napari_supn_anomaly.supn import ROTATIONS as SUPPORTED_ROTATIONS  # noqa: E402

# the scorers built on the VAE's whitened residual, and the ensemble of them
ROTATED_SCORERS = ("supn", "diag", "l2", "ensemble")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None, help=f"default: the built-in {MODEL_NAME} file")
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    p.add_argument("--rotations", type=int, default=ROTATIONS, choices=SUPPORTED_ROTATIONS)
    p.add_argument("--score-rule", default=SCORE_RULE)
    args = p.parse_args(argv)
    path = args.model or builtin_model_path(MODEL_NAME)
    model = AnomalyModel.from_file(path)
    model.metadata["rotations"] = args.rotations
    model.metadata["score_rules"] = {name: args.score_rule for name in model.metadata["score_rules"]}
    _, (crops, masks) = fluorescence_split(model, args.data_root)
    for name in ROTATED_SCORERS:
        if name in model.metadata.get("calibration", {}):
            calibrate(resolve(model, name, require_calibration=False), crops, masks)
    model.metadata["metrics"] = validation_metrics(model, args.data_root)
    model.save(path)
    print(f"{path}: {args.rotations} orientations, rule {args.score_rule}; validation "
          + ", ".join(f"{s} AUROC {model.metadata['metrics'][s]['auroc']:.3f}" for s in model.scorers))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
