"""Colour/intensity augmentation of training crops (training/augment.py) and its use in training."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from napari_supn_anomaly.models import AnomalyModel
from napari_supn_anomaly.supn import ArchConfig
from napari_supn_anomaly.training.augment import (
    ColourAugment,
    augment_raw,
    normalised_augmenter,
)
from napari_supn_anomaly.training.fit import fit_anomaly_model
from napari_supn_anomaly.training.trainer import TrainConfig


def _rgb_cells(n=6, size=24, seed=0) -> torch.Tensor:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    disc = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < (size / 3) ** 2
    x = np.full((n, 3, size, size), 240.0, np.float32)
    x[:, 0][:, disc], x[:, 1][:, disc], x[:, 2][:, disc] = 200.0, 170.0, 215.0
    return torch.from_numpy(x + rng.normal(0, 3, x.shape).astype(np.float32)).clamp(0, 255)


def test_same_seed_same_augmentation_and_other_seed_differs():
    x = _rgb_cells()
    a = augment_raw(x, torch.Generator().manual_seed(3), ColourAugment(), 255.0)
    b = augment_raw(x, torch.Generator().manual_seed(3), ColourAugment(), 255.0)
    c = augment_raw(x, torch.Generator().manual_seed(4), ColourAugment(), 255.0)
    assert torch.equal(a, b)
    assert not torch.allclose(a, c)


def test_shapes_and_range_are_kept_and_the_change_is_moderate():
    x = _rgb_cells()
    out = augment_raw(x, torch.Generator().manual_seed(0), ColourAugment(), 255.0)
    assert out.shape == x.shape and out.dtype == x.dtype
    assert float(out.min()) >= 0.0 and float(out.max()) <= 255.0
    assert torch.isfinite(out).all()
    change = (out - x).abs().mean((1, 2, 3))
    assert float(change.max()) < 40.0 and float(change.mean()) > 0.5  # it changes the crops, but not beyond recognition


def test_stain_jitter_changes_the_colour_balance_of_rgb_only():
    x = _rgb_cells()
    stain_only = ColourAugment(stain_scale=0.3, stain_shift=0.0, gamma=0, contrast=0, brightness=0, blur_sigma=0,
                               noise=0)
    rgb = augment_raw(x, torch.Generator().manual_seed(1), stain_only, 255.0)
    ratio = (rgb[:, 2] / rgb[:, 1].clamp_min(1)).mean((1, 2)) / (x[:, 2] / x[:, 1]).mean((1, 2))
    assert float((ratio - 1).abs().max()) > 0.01  # blue/green balance moved
    gray = augment_raw(x[:, :1], torch.Generator().manual_seed(1), stain_only, 255.0)
    assert torch.equal(gray, x[:, :1])  # no stain on one channel


def test_all_off_is_the_identity():
    x = _rgb_cells()
    off = ColourAugment(0, 0, 0, 0, 0, 0, 0)
    assert torch.allclose(augment_raw(x, torch.Generator().manual_seed(0), off, 255.0), x, atol=1e-4)
    assert ColourAugment.from_dict(ColourAugment().to_dict()) == ColourAugment()


def test_normalised_augmenter_works_in_the_models_intensity_space():
    low, high = [150.0, 140.0, 190.0], [250.0, 250.0, 255.0]
    x = _rgb_cells()
    lo = torch.tensor(low)[None, :, None, None]
    hi = torch.tensor(high)[None, :, None, None]
    xn = 2 * (x - lo) / (hi - lo) - 1
    off = normalised_augmenter(ColourAugment(0, 0, 0, 0, 0, 0, 0), low, high)
    assert torch.allclose(off(xn, torch.Generator().manual_seed(0)), xn, atol=1e-4)
    on = normalised_augmenter(ColourAugment(), low, high)(xn, torch.Generator().manual_seed(0))
    assert on.shape == xn.shape and torch.isfinite(on).all() and not torch.allclose(on, xn)


@pytest.mark.parametrize("channels", [3])
def test_a_model_trained_with_augmentation_records_it_saves_loads_and_scores(tmp_path, channels):
    crops = _rgb_cells(n=24, size=32, seed=1).numpy()
    masks = [None] * len(crops)
    arch = ArchConfig(channels=channels, crop_size=16, latent_dim=4, widths=(4, 8), head_widths=(4, 4))
    cfg = TrainConfig(seed=0, batch_size=8, stage1_iters=6, stage2_iters=4, collapse_ratio=0.0)
    model = None
    for event in fit_anomaly_model(list(crops), masks, name="aug-test", modality="brightfield-stained",
                                   arch=arch, cfg=cfg, cell_diameter_px=10.0, holdout_fraction=0.25,
                                   score_rule="purple", colour_augment=ColourAugment()):
        if isinstance(event, AnomalyModel):
            model = event
    assert model is not None
    assert model.metadata["training"]["colour_augment"] == ColourAugment().to_dict()
    loaded = AnomalyModel.from_file(model.save(tmp_path / "aug.safetensors"))
    x, m = np.stack([c[:, 8:24, 8:24] for c in crops[:4]]), np.ones((4, 16, 16), bool)
    scores = loaded.score_crops(x, m, scorer="supn").scores
    assert scores.shape == (4,) and np.isfinite(scores).all()
    assert np.allclose(scores, model.score_crops(x, m, scorer="supn").scores)
