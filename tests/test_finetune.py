"""Fine-tuning jobs: a tiny model for a few iterations; the base never changes; cancel leaves nothing."""
import hashlib

import numpy as np
import pytest
import torch

from napari_supn_anomaly.models import AnomalyModel
from napari_supn_anomaly.supn import ArchConfig
from napari_supn_anomaly.errors import Cancelled
from napari_supn_anomaly.progress import Progress
from napari_supn_anomaly.training import TrainConfig, fit_anomaly_model
from napari_supn_anomaly.scoring import DEFAULT_SCORE_RULES, FINETUNED_DEFAULT_SCORERS, resolve
from napari_supn_anomaly.training.finetune import FinetuneSettings, finetune, finetuned_name, mirrored_rule
from napari_supn_anomaly.training.regions import TrainingCells

TINY = ArchConfig(crop_size=32, channels=1, latent_dim=4, widths=(8, 16), head_widths=(4, 8))


def disc_crops(n, bright_cells=True, seed=0, size=40):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    images, masks = [], []
    for _ in range(n):
        r = rng.uniform(7, 9)
        cell = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 <= r * r
        img = np.where(cell, 150.0, 30.0) + rng.normal(0, 4, cell.shape)
        if not bright_cells:
            img = 255.0 - img
        images.append(img[None].astype(np.float32))
        masks.append(cell)
    return images, masks


@pytest.fixture(scope="module")
def base_model():
    torch.manual_seed(0)
    images, masks = disc_crops(24)
    cfg = TrainConfig(seed=0, batch_size=8, stage1_iters=6, stage2_iters=4)
    model = None
    for event in fit_anomaly_model(images, masks, name="tiny-fl", modality="fluorescence", arch=TINY, cfg=cfg):
        if isinstance(event, AnomalyModel):
            model = event
    return model


def cells(n, bright_cells=True, seed=1):
    images, masks = disc_crops(n, bright_cells, seed)
    return TrainingCells(images, masks, [{"image": "f.png", "y": 10.0 * i, "x": 5.0, "how": "region"}
                                         for i in range(n)],
                         [{"image": "f.png", "kind": "rectangle", "y0": 0, "x0": 0, "y1": 100, "x1": 100}])


def state_digest(model) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.net.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def run(gen):
    events, model = [], None
    for e in gen:
        if isinstance(e, Progress):
            events.append(e)
        else:
            model = e
    return events, model


SHORT = dict(minutes=5.0, mean_iters=4, precision_iters=3, batch_size=8, device="cpu")


def test_finetune_gives_a_calibrated_model_and_leaves_the_base_unchanged(base_model, tmp_path):
    path = base_model.save(tmp_path / "base.safetensors")
    file_before, state_before = path.read_bytes(), state_digest(base_model)
    meta_before = repr(base_model.metadata)
    events, model = run(finetune(base_model, cells(20), FinetuneSettings(seed=3, modality="fluorescence", **SHORT),
                                 name="tiny-fl-finetuned-1", base_source=str(path)))
    assert state_digest(base_model) == state_before and repr(base_model.metadata) == meta_before
    assert path.read_bytes() == file_before
    assert model is not None and model.net is not base_model.net
    assert state_digest(model) != state_before
    meta = model.metadata
    assert meta["name"] == "tiny-fl-finetuned-1"
    assert meta["base_model"]["name"] == "tiny-fl" and meta["base_model"]["source"] == str(path)
    assert meta["training"]["n_held_back"] == 4 and meta["training"]["n_cells"] == 16
    assert meta["training"]["data"]["train"]["images"] == ["f.png"]
    assert meta["training"]["data"]["train"]["regions"][0]["kind"] == "rectangle"
    assert meta["training"]["finetune"]["seed"] == 3 and not meta["training"]["finetune"]["intensity_inverted"]
    assert len(meta["calibration"]["supn"]["healthy_scores"]) == 4
    assert {e.stage for e in events} >= {"preparing", "done", "calibrating"}
    # the saved file reloads with the same behaviour
    again = AnomalyModel.from_file(model.save(tmp_path / "ft.safetensors"))
    x, m = disc_crops(3, seed=9, size=32)
    np.testing.assert_allclose(again.score_crops(np.stack(x), np.stack(m)).scores,
                               model.score_crops(np.stack(x), np.stack(m)).scores, rtol=1e-5)


def test_same_seed_same_model(base_model):
    s = FinetuneSettings(seed=5, modality="fluorescence", **SHORT)
    _, a = run(finetune(base_model, cells(12), s))
    _, b = run(finetune(base_model, cells(12), s))
    assert state_digest(a) == state_digest(b)


def test_dark_cells_on_a_bright_field_base_invert_the_intensities(base_model):
    _, model = run(finetune(base_model, cells(12, bright_cells=False), FinetuneSettings(modality="auto", **SHORT)))
    assert model.modality == "brightfield"
    assert model.metadata["training"]["finetune"]["intensity_inverted"]
    assert model.intensity.low[0] > model.intensity.high[0]
    # the bright-field rule (parasites brighter than predicted), mirrored: the base's rule is a
    # fluorescence one
    assert model.score_rule("supn") == mirrored_rule(DEFAULT_SCORE_RULES["brightfield"]) == "dark"
    # and that modality's default scorer, calibrated on the held-back cells (the base's is a fluorescence one)
    assert model.metadata["default_scorer"] == FINETUNED_DEFAULT_SCORERS["brightfield"] == "supn+spots"
    assert resolve(model).name == "supn+spots"
    # a dark cell on light comes out as the base model's bright cell on dark
    x, _ = disc_crops(1, bright_cells=False, size=32)
    norm = model.normalise(np.stack(x))[0, 0]
    assert norm[16, 16] > norm[0, 0]


def test_cancel_stops_within_a_batch_and_produces_nothing(base_model):
    before = state_digest(base_model)
    seen = []

    def stop():
        return len(seen) >= 2

    gen = finetune(base_model, cells(12), FinetuneSettings(**dict(SHORT, mean_iters=500)), should_stop=stop)
    with pytest.raises(Cancelled):
        for event in gen:
            if isinstance(event, Progress) and event.stage == "mean":
                seen.append(event)
            assert not isinstance(event, AnomalyModel)
    assert state_digest(base_model) == before


def test_bad_inputs_fail_before_training(base_model):
    with pytest.raises(ValueError, match="only 3 healthy cell.*at least 10 are needed"):
        next(finetune(base_model, cells(3), FinetuneSettings(**SHORT)))
    rgb = cells(10)
    rgb.images = [np.repeat(i, 3, 0) for i in rgb.images]
    with pytest.raises(ValueError, match=r"works on 1 channel \(grey\) but the image has 3 channels"):
        next(finetune(base_model, rgb, FinetuneSettings(**SHORT)))
    with pytest.raises(ValueError, match="more than 0 minutes"):
        next(finetune(base_model, cells(10), FinetuneSettings(**dict(SHORT, minutes=0))))
    with pytest.raises(ValueError, match="unknown modality"):
        next(finetune(base_model, cells(10), FinetuneSettings(**dict(SHORT, modality="xray"))))


def test_mirrored_rules_swap_signed_rules_only():
    assert [mirrored_rule(r) for r in ("bright", "dark", "spot", "dark-spot", "paper")] == \
        ["dark", "bright", "dark-spot", "spot", "paper"]


def test_finetuned_names_count_up():
    assert finetuned_name("fl") == "fl-finetuned-1"
    assert finetuned_name("fl", {"fl-finetuned-1", "fl-finetuned-2"}) == "fl-finetuned-3"


def test_training_records_iterations_and_cpu_seconds(base_model):
    """The 2-minute budget is wall clock: the model says how many iterations and CPU seconds it got."""
    _, model = run(finetune(base_model, cells(20), FinetuneSettings(seed=0, **SHORT)))
    training = model.metadata["training"]
    assert training["iterations"] == 4 + 3
    assert 0 < training["cpu_seconds"] < 600 and training["seconds"] >= 0


def test_colour_augmentation_of_inverted_crops_stays_near_the_crops():
    """Fine-tuning with inverted contrast stores low > high; the augmenter's white is still the bright end,
    so a gamma jitter moves a crop a little, not by many times its range (it did with white = max(high))."""
    from napari_supn_anomaly.training.augment import ColourAugment, normalised_augmenter

    images, _ = disc_crops(8, bright_cells=False)
    raw = torch.from_numpy(np.stack(images))
    low, high = [250.0], [5.0]                       # inverted: the darkest raw value maps to +1
    x = 2.0 * (raw - low[0]) / (high[0] - low[0]) - 1.0
    gamma_only = ColourAugment(stain_scale=0, stain_shift=0, gamma=0.2, contrast=0, brightness=0,
                               blur_sigma=0, noise=0)
    out = normalised_augmenter(gamma_only, low, high)(x, torch.Generator().manual_seed(0))
    assert torch.isfinite(out).all()
    assert float((out - x).abs().max()) < 0.3        # a few per cent of white, in normalised units


def test_finetuning_with_colour_augmentation_runs_and_is_recorded(base_model):
    _, model = run(finetune(base_model, cells(20, bright_cells=False), FinetuneSettings(seed=0, colour_augment=True,
                                                                                        **SHORT)))
    assert model.metadata["training"]["finetune"]["colour_augment"] is True
    assert "colour_augment" in model.metadata["training"]


def test_a_fine_tuned_model_keeps_its_bases_orientations_on_the_bases_modality_only(base_model):
    turned = base_model.copy()
    turned.metadata["rotations"] = 4
    _, same = run(finetune(turned, cells(12), FinetuneSettings(seed=5, modality="fluorescence", **SHORT)))
    _, other = run(finetune(turned, cells(12, bright_cells=False), FinetuneSettings(modality="auto", **SHORT)))
    assert same.rotations == 4 and same.modality == "fluorescence"
    assert other.rotations == 1 and other.modality == "brightfield"
    assert base_model.rotations == 1
