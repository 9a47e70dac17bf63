"""Train the small fluorescence models used for the beta-VAE rows of docs/benchmarks/scorers.md.

    python benchmarks/train_beta_vae.py --kl-weight 1 --out /tmp/fl-b1.safetensors
    python benchmarks/train_beta_vae.py --kl-weight 4 --out /tmp/fl-b4.safetensors

Same data, architecture and iteration budget for every beta (the KL weight of the training loss,
TrainConfig.kl_weight), so the rows differ only in beta. Then:

    python benchmarks/evaluate_all.py --datasets fl --fl-model /tmp/fl-b4.safetensors \\
        --scorers supn,diag,recon,grad-kl,grad-elbo,combi --label "{name} (beta=4, small model)" ...
"""
from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from napari_supn_anomaly.evaluation.datasets import load_fl_cells
from napari_supn_anomaly.progress import Progress
from napari_supn_anomaly.supn import ArchConfig
from napari_supn_anomaly.training.fit import fit_anomaly_model
from napari_supn_anomaly.training.trainer import TrainConfig


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--kl-weight", type=float, required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--stage1", type=int, default=600)
    p.add_argument("--stage2", type=int, default=300)
    p.add_argument("--data-root", default=os.environ.get("SUPN_SHARED_DATA", "../shared/data"))
    args = p.parse_args()
    torch.set_num_threads(1)
    cells = load_fl_cells(Path(args.data_root), "train")
    arch = ArchConfig(crop_size=64, channels=1, latent_dim=32, widths=(16, 32, 64, 96), head_widths=(8, 16, 24, 32))
    cfg = TrainConfig(kl_weight=args.kl_weight, batch_size=32, stage1_iters=args.stage1, stage2_iters=args.stage2,
                      num_threads=1)
    started = time.time()
    for ev in fit_anomaly_model(cells.images, cells.masks, name=f"fl-dev-beta{args.kl_weight:g}",
                                modality="fluorescence", arch=arch, cfg=cfg):
        if isinstance(ev, Progress):
            if ev.done % 100 == 0 and ev.loss is not None:
                print(ev.stage, ev.done, ev.total, round(ev.loss, 3), round(ev.elapsed_s), flush=True)
        else:
            ev.save(args.out)
            print(f"saved {args.out} after {time.time() - started:.0f} s")


if __name__ == "__main__":
    main()
