"""Train the development model of healthy *synthetic* cells used by benchmarks/field_timing.py
until the built-in models are available (about 10 minutes on 2 CPU cores).

    python benchmarks/train_synthetic_model.py fluorescence /tmp/synthetic-fluorescence.safetensors
"""
from __future__ import annotations

import sys
import time

import torch

from napari_supn_anomaly.synthetic import train_synthetic_model


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 2:
        sys.exit(__doc__)
    modality, out = argv
    torch.set_num_threads(1)
    started = time.perf_counter()
    model = train_synthetic_model(modality, n_cells=400, crop_size=64, iterations=(500, 300), seed=1)
    path = model.save(out)
    print(f"{path}: {time.perf_counter() - started:.0f} s, healthy-score quantiles "
          f"{model.metadata['calibration']['supn']['quantiles']}")


if __name__ == "__main__":
    main()
