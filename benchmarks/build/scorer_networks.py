"""Train, calibrate and ship the self-supervised scorers' networks of a built-in model.

Each network (a small U-Net, see supn/self_supervised.py) learns on the model's own healthy
training cells with synthetic anomalies and is calibrated on the cells the model held back (the
seeded split of its build, the same cells that calibrate every other scorer). It is saved next to
the model as models/weights/<model>.<scorer>.safetensors, with its healthy calibration inside;
the calibration also goes into the model's metadata (weights untouched). Per-cell AUROC on the
validation cells is printed (fluorescence-rbc: supn_fl_cells/validation, 50 healthy and 50
infected; giemsa-rbc: every cell of its 6 held-out validation fields).
``--evaluate`` trains nothing: it scores the validation cells with the shipped networks (and supn,
for reference) and prints AUROC with a 95% bootstrap interval, the share of healthy and infected
cells flagged at the calibrated 5% healthy FPR, and seconds per 100 cells.

    python benchmarks/build/scorer_networks.py [--model fluorescence-rbc|giemsa-rbc]
        [--data-root ../shared/data] [--scorers ssl-ppii,ssl-fpi,ssl-pii,ssl-ppii-he]
        [--iterations 400] [--pool 512] [--threads 1] [--evaluate]
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import numpy as np
import torch

from napari_supn_anomaly.evaluation.builtin_splits import fluorescence_split, giemsa_split, validation_cells
from napari_supn_anomaly.evaluation.metrics import auroc, cell_metrics
from napari_supn_anomaly.models import builtin_model_path, load_model
from napari_supn_anomaly.models.builtin import builtin_network_path
from napari_supn_anomaly.progress import Progress
from napari_supn_anomaly.scoring import resolve, save_network, train_calibrated_network

DEFAULT_DATA_ROOT = Path(__file__).resolve().parents[3] / "shared" / "data"
SPLITS = {"fluorescence-rbc": fluorescence_split, "giemsa-rbc": giemsa_split}


def validation_auroc(model, network, name, data_root) -> tuple[float, int]:
    """Per-cell AUROC of a freshly trained network on the model's validation cells."""
    crops, masks, labels = validation_cells(model, data_root)
    scores = resolve(model, name, network=network, require_calibration=False).score(crops, masks).scores
    return auroc(labels, scores), len(scores)


def evaluate_shipped(model, names, data_root, fpr: float = 0.05) -> None:
    """The shipped networks as the Detect widget uses them: their network and calibration from the package."""
    crops, masks, labels = validation_cells(model, data_root)
    print(f"| scorer | AUROC [95% CI] | healthy flagged at {fpr:.0%} | infected flagged | s / 100 cells |")
    print("|---|---|---|---|---|")
    for name in ["supn"] + names:
        started = time.perf_counter()
        scorer = resolve(model, name)
        scores = scorer.score(crops, masks).scores
        seconds = 100 * (time.perf_counter() - started) / len(scores)
        threshold = scorer.threshold_for_fpr(fpr)
        m = cell_metrics(labels, scores, (fpr,), 1000)
        print(f"| {name} | {m.auroc} | {(scores[labels == 0] > threshold).mean():.2f} | "
              f"{(scores[labels == 1] > threshold).mean():.2f} | {seconds:.2f} |")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", choices=sorted(SPLITS), default="fluorescence-rbc")
    p.add_argument("--data-root", type=Path, default=DEFAULT_DATA_ROOT)
    p.add_argument("--scorers", default="ssl-ppii,ssl-fpi,ssl-pii,ssl-ppii-he")
    p.add_argument("--iterations", type=int, default=400)
    p.add_argument("--pool", type=int, default=512)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--evaluate", action="store_true", help="only score the validation cells with the shipped networks")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    model = load_model(args.model)
    names = [s.strip() for s in args.scorers.split(",") if s.strip()]
    if args.evaluate:
        evaluate_shipped(model, names, args.data_root)
        print(f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
        return 0
    (tr_crops, tr_masks), (cal_crops, cal_masks) = SPLITS[args.model](model, args.data_root)
    print(f"{len(tr_crops)} training and {len(cal_crops)} held-back healthy cells; "
          f"load average {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    for name in names:
        started = time.perf_counter()
        for event in train_calibrated_network(name, model, tr_crops, tr_masks, cal_crops, cal_masks,
                                              iterations=args.iterations, pool_size=args.pool, seed=0):
            if isinstance(event, Progress):
                if event.done == event.total or event.done % 100 == 0:
                    loss = "" if event.loss is None or np.isnan(event.loss) else f" loss {event.loss:.4f}"
                    print(f"  {name}: {event.stage} {event.done}/{event.total}{loss}")
            else:
                network, calibration = event
        seconds = time.perf_counter() - started
        path = save_network(builtin_network_path(args.model, name), network, model, calibration)
        auc, n = validation_auroc(model, network, name, args.data_root)
        print(f"{name}: trained in {network.seconds:.0f} s, {seconds:.0f} s with calibration on "
              f"{calibration.n_cells} cells; validation AUROC {auc:.3f} ({n} cells); "
              f"{path.name} {path.stat().st_size / 1e6:.2f} MB; load {' '.join(f'{v:.2f}' for v in os.getloadavg())}")
    model.save(builtin_model_path(args.model))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
