"""The two-stage trainer and fit_anomaly_model on tiny synthetic cells (seconds each)."""
import numpy as np
import pytest
import torch

from napari_supn_anomaly.models import AnomalyModel
from napari_supn_anomaly.supn import ArchConfig
from napari_supn_anomaly.errors import Cancelled
from napari_supn_anomaly.progress import Progress
from napari_supn_anomaly.training import (TrainConfig, TrainingCollapsed, run_to_end,
                                          train_supn_vae)
from napari_supn_anomaly.training.fit import fit_anomaly_model

TINY = ArchConfig(crop_size=16, latent_dim=4, widths=(8, 16), head_widths=(4, 8))




def blobs(n=48, size=16, seed=0):
    """Bright discs of varying size and brightness on a dark background, in [-1, 1]."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    x = np.empty((n, 1, size, size), np.float32)
    for i in range(n):
        r = rng.uniform(3, 6)
        cy, cx = size / 2 + rng.uniform(-1, 1, 2)
        disc = ((yy - cy) ** 2 + (xx - cx) ** 2 < r * r).astype(np.float32)
        x[i, 0] = -0.8 + rng.uniform(0.8, 1.6) * disc + 0.05 * rng.normal(size=(size, size))
    return x, np.ones((n, 1, size, size), np.float32)


def quick(**kw):
    base = dict(batch_size=16, stage1_iters=40, stage2_iters=20, lr=3e-3, lr_stage2=3e-3, seed=0)
    base.update(kw)
    return TrainConfig(**base)


def test_loss_goes_down_and_both_stages_run():
    x, w = blobs()
    events = list(train_supn_vae(x, w, TINY, quick(), report_every=5))
    progress = [e for e in events if isinstance(e, Progress)]
    mean_losses = [p.loss for p in progress if p.stage == "mean"]
    assert mean_losses[-1] < mean_losses[0]
    assert {p.stage for p in progress} >= {"mean", "precision", "done"}
    net = events[-1]
    assert not net.training
    assert torch.isfinite(net.l2_log_sigma).all() and float(net.l2_log_sigma.exp()) < 1.0


def test_same_seed_same_weights_other_seed_other_weights():
    x, w = blobs()
    a = run_to_end(train_supn_vae(x, w, TINY, quick(stage1_iters=10, stage2_iters=5)))
    b = run_to_end(train_supn_vae(x, w, TINY, quick(stage1_iters=10, stage2_iters=5)))
    c = run_to_end(train_supn_vae(x, w, TINY, quick(stage1_iters=10, stage2_iters=5, seed=1)))
    for k, v in a.state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert any(not torch.equal(v, c.state_dict()[k]) for k, v in a.state_dict().items())


def test_should_stop_cancels():
    x, w = blobs()
    calls = []

    def stop():
        calls.append(1)
        return len(calls) > 5

    with pytest.raises(Cancelled):
        run_to_end(train_supn_vae(x, w, TINY, quick(), should_stop=stop))
    assert len(calls) == 6


def test_collapse_is_detected_restarted_then_reported():
    x, w = blobs()
    # a collapse threshold no decoder can pass: every attempt counts as collapsed
    cfg = quick(stage1_iters=60, collapse_ratio=1e6, max_restarts=1)
    messages = []
    with pytest.raises(TrainingCollapsed):
        run_to_end(train_supn_vae(x, w, TINY, cfg), lambda p: messages.append(p.message))
    assert sum("collapsed" in m for m in messages) == 2


def test_fine_tuning_leaves_the_base_network_alone():
    x, w = blobs()
    base = run_to_end(train_supn_vae(x, w, TINY, quick(stage1_iters=10, stage2_iters=5)))
    before = {k: v.clone() for k, v in base.state_dict().items()}
    tuned = run_to_end(train_supn_vae(x, w, None, quick(stage1_iters=10, stage2_iters=5), init=base))
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in before.items())
    assert any(not torch.equal(v, tuned.state_dict()[k]) for k, v in before.items())


def test_wrong_shapes_are_refused():
    x, w = blobs()
    with pytest.raises(ValueError, match="training crops must be"):
        next(train_supn_vae(x[:, :, :8, :8], w, TINY, quick()))


def raw_cells(n=40, seed=0):
    """Raw 8-bit-like crops of different sizes with a bright cell in the middle."""
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for i in range(n):
        s = int(rng.integers(30, 40))
        yy, xx = np.mgrid[:s, :s]
        r = rng.uniform(8, 11)
        mask = (yy - s / 2) ** 2 + (xx - s / 2) ** 2 < r * r
        img = 20 + 120 * mask + rng.normal(0, 5, (s, s))
        images.append(img[None].astype(np.float32))
        masks.append(mask if i % 2 else None)  # half the masks are found in the crop
    return images, masks


def test_fit_anomaly_model_calibrates_on_held_back_cells(tmp_path):
    images, masks = raw_cells()
    events = list(fit_anomaly_model(images, masks, name="toy", modality="fluorescence", arch=TINY,
                                    cfg=quick(stage1_iters=15, stage2_iters=10), cell_diameter_px=9.0,
                                    holdout_fraction=0.25))
    model = events[-1]
    assert isinstance(model, AnomalyModel)
    assert all(isinstance(e, Progress) for e in events[:-1])
    train = model.metadata["training"]
    assert train["n_held_back"] == 10 and train["n_cells"] == 30
    for scorer in ("supn", "diag", "l2"):
        cal = model.metadata["calibration"][scorer]
        scores = cal["healthy_scores"]
        assert len(scores) == 10 and scores == sorted(scores) and np.isfinite(scores).all()
        assert model.healthy_fpr(scores[-1] + 1.0, scorer) == 0.0
        assert model.healthy_fpr(scores[0], scorer) == 1.0
    assert model.cell_diameter_px == 9.0 and model.metadata["intensity"]["low"][0] < 50
    again = AnomalyModel.from_file(model.save(tmp_path / "toy"))
    assert again.metadata["calibration"] == model.metadata["calibration"]


def test_fit_refuses_too_few_cells_and_mixed_channels():
    images, masks = raw_cells(5)
    with pytest.raises(ValueError, match="at least"):
        next(fit_anomaly_model(images, masks, name="toy", modality="fluorescence", arch=TINY))
    images, masks = raw_cells(10)
    images[3] = np.repeat(images[3], 3, axis=0)
    with pytest.raises(ValueError, match="same number of channels"):
        next(fit_anomaly_model(images, masks, name="toy", modality="fluorescence", arch=TINY))


def test_held_back_cells_stop_a_stage_early_and_keep_its_best_weights():
    import numpy as np
    from napari_supn_anomaly.supn import ArchConfig
    from napari_supn_anomaly.training import TrainConfig, train_supn_vae

    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.3, (24, 1, 16, 16)).astype(np.float32)
    w = np.ones((24, 1, 16, 16), np.float32)
    arch = ArchConfig(crop_size=16, widths=(8, 8), head_widths=(4, 4), latent_dim=4)
    # pure noise cannot be learned: the held-back loss stops improving and the stage ends early
    cfg = TrainConfig(stage1_iters=400, stage2_iters=0, batch_size=8, early_stop_every=5, early_stop_patience=2,
                      lr=5e-3)
    events = list(train_supn_vae(x[:16], w[:16], arch, cfg, x_held_back=x[16:], weight_held_back=w[16:]))
    checks = [e for e in events if isinstance(e, Progress) and e.held_back_loss is not None]
    assert checks, "the held-back loss was never measured"
    assert any("stopped improving" in e.message for e in checks)
    assert checks[-1].done < 400
