"""A tiny SUPN-VAE trained in seconds on synthetic disk cells, shared by the scorer tests."""
import numpy as np
import torch

from napari_supn_anomaly.models import AnomalyModel
from napari_supn_anomaly.supn import ArchConfig, IntensityStats
from napari_supn_anomaly.training.trainer import TrainConfig, run_to_end, train_supn_vae

S = 32


def disk_cells(n, seed=0, blob=False):
    """Raw crops [n, 1, S, S] (dark background, bright disk) and masks; optionally a bright blob inside."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:S, :S]
    crops, masks = [], []
    for _ in range(n):
        cy, cx = S / 2 + rng.uniform(-1, 1, 2)
        r = rng.uniform(9, 11)
        m = (yy - cy) ** 2 + (xx - cx) ** 2 < r ** 2
        soft = 1.0 / (1.0 + np.exp(np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2) - r))  # smooth cell edge
        img = 30 + soft * rng.uniform(110, 130) + rng.normal(0, 3, (S, S))
        if blob:
            by, bx = cy + rng.uniform(-4, 4), cx + rng.uniform(-4, 4)
            img = img + 150 * np.exp(-((yy - by) ** 2 + (xx - bx) ** 2) / (2 * 2.0 ** 2))
        crops.append(img[None])
        masks.append(m)
    return np.asarray(crops, np.float32), np.asarray(masks, bool)


def tiny_model(iters=200):
    torch.manual_seed(0)
    crops, masks = disk_cells(64, seed=1)
    stats = IntensityStats.from_images(crops)
    arch = ArchConfig(crop_size=S, channels=1, latent_dim=4, widths=(8, 16), head_widths=(4, 8))
    cfg = TrainConfig(batch_size=16, stage1_iters=iters, stage2_iters=iters // 3, lr=3e-3, lr_stage2=3e-3,
                      num_threads=1, augment=True)
    weight = np.ones((len(crops), 1, S, S), np.float32)
    net = run_to_end(train_supn_vae(stats.apply(crops), weight, arch, cfg))
    return AnomalyModel(net, {"name": "tiny-disks", "intensity": stats.to_dict(), "cell_diameter_px": 20.0,
                              "modality": "fluorescence",
                              "score_rules": {"supn": "bright", "diag": "bright", "l2": "bright"}})
