"""Store the stain of ``giemsa-rbc``'s training cells in the built-in model file, measured as
training measures it for every new stained model (``training.fit``), so detection matches other
labs' stains to it (``models.data_range``). The weights and everything else are not touched.

    python benchmarks/build/stain_reference.py [--model FILE] [--data-root ../shared/data]
"""
from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from napari_supn_anomaly.evaluation.builtin_splits import load_giemsa_split, model_crops, with_masks
from napari_supn_anomaly.models import AnomalyModel
from napari_supn_anomaly.models.builtin import builtin_model_path
from napari_supn_anomaly.models.data_range import stain_of_crops, stain_sample

REPO = Path(__file__).resolve().parents[2]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", type=Path, default=None, help="default: the built-in giemsa-rbc file")
    p.add_argument("--data-root", type=Path, default=REPO.parent / "shared" / "data")
    args = p.parse_args(argv)
    path = args.model or builtin_model_path("giemsa-rbc")
    model = AnomalyModel.from_file(path)
    healthy = load_giemsa_split(args.data_root).train
    crops, masks = model_crops(model, with_masks(healthy.subset(stain_sample(len(healthy)))))
    stain = stain_of_crops(crops, masks)
    if stain is None:
        raise SystemExit("no stain could be measured on the training cells")
    data_range = model.data_range
    data_range.stain = stain
    model.metadata["data_range"] = data_range.to_dict()
    model.save(path)
    print(f"{path}: cells {np.round(stain.cell, 1).tolist()}, background {np.round(stain.background, 1).tolist()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
