"""Giemsa bright-field: RGB crops, the multi-channel model end to end, the shipped giemsa-rbc model."""
import numpy as np
import pytest
import torch
from scipy import ndimage as ndi

from conftest import require_data
from napari_supn_anomaly.models import builtin_model_names, load_model
from napari_supn_anomaly.cells import CropGeometry, equivalent_diameter, find_cell_mask, standardise_crops
from napari_supn_anomaly.supn import ArchConfig
from napari_supn_anomaly.training import TrainConfig
from napari_supn_anomaly.training.fit import fit_anomaly_model

WHITE = np.array([250.0, 252.0, 251.0])
LILAC = np.array([190.0, 190.0, 225.0])




def stained_crop(h, w, cy, cx, r, neighbour=None):
    """A lilac cell on white, optionally with a neighbour (cy, cx, r) touching it."""
    yy, xx = np.mgrid[:h, :w]
    img = np.empty((3, h, w), np.float32)
    img[:] = WHITE[:, None, None]
    for c in [(cy, cx, r)] + ([neighbour] if neighbour else []):
        img[:, (yy - c[0]) ** 2 + (xx - c[1]) ** 2 <= c[2] ** 2] = LILAC[:, None]
    return img


def test_stained_cell_with_pale_centre_and_touching_neighbour_is_the_centred_cell():
    img = stained_crop(80, 80, 42, 40, 30, neighbour=(5, 75, 22))
    yy, xx = np.mgrid[:80, :80]
    pallor = ((yy - 42) ** 2 + (xx - 58) ** 2 <= 14 ** 2)
    img[:, pallor] = WHITE[:, None] - 5  # a pale centre opening towards the cell's edge
    mask = find_cell_mask(img, "brightfield-stained")
    assert mask[42, 40] and mask[42, 58], "the pale centre belongs to the cell"
    assert not mask[5, 75], "the neighbour in the corner is not the cell"
    assert abs(equivalent_diameter(mask) - 60) < 6


def test_odd_sized_rgb_crops_are_centred_and_padded_with_white():
    # cells cut at the edge of the field: crops narrower or shorter than 80 px
    crops = [stained_crop(80, 80, 40, 40, 33), stained_crop(80, 52, 40, 16, 33), stained_crop(41, 80, 8, 40, 33)]
    out, masks, scale = standardise_crops(crops[:1], [None], CropGeometry(48, 36.0, "brightfield-stained"))
    assert scale == pytest.approx(36.0 / 66.0, rel=0.05)
    out, masks, _ = standardise_crops(crops, [None] * 3, CropGeometry(48, 36.0, "brightfield-stained"), scale=scale)
    assert out.shape == (3, 3, 48, 48) and masks.shape == (3, 48, 48)
    for crop, mask in zip(out, masks):
        ys, xs = np.nonzero(mask)
        assert abs(ys.mean() - 24) <= 1.5 and abs(xs.mean() - 24) <= 1.5
        outside = crop[:, ~ndi.binary_dilation(mask, iterations=2)]  # beyond the interpolated cell edge
        # the fill is the white background, never black or the cell's colour
        assert np.allclose(np.median(outside, axis=1), WHITE, atol=2)
        assert (outside.min(axis=1) > 240).all()


def test_tiny_colour_model_end_to_end_on_real_crops():
    root = require_data("plymouth_pf_giemsa_cells")
    from napari_supn_anomaly.evaluation.datasets import load_giemsa_cells

    field = ["57546_05"]
    healthy = load_giemsa_cells(root.parent, fields=field, infected=False, max_healthy=40)
    infected = load_giemsa_cells(root.parent, fields=field, infected=True)
    arch = ArchConfig(crop_size=16, channels=3, latent_dim=4, widths=(8, 16), head_widths=(4, 8))
    cfg = TrainConfig(batch_size=16, stage1_iters=30, stage2_iters=15, seed=0)
    events = list(fit_anomaly_model(healthy.images, healthy.masks, name="tiny-giemsa", modality="brightfield-stained",
                                    channel_names=["red", "green", "blue"], arch=arch, cfg=cfg,
                                    cell_diameter_px=12.0, holdout_fraction=0.25, score_rule="dark"))
    model = events[-1]
    assert model.channels == 3 and model.channel_names == ["red", "green", "blue"]
    assert model.net.heads["supn"].n_cross == 3  # same-pixel cross-channel weights
    assert len(model.healthy_scores("supn")) == 10
    crops, masks, _ = standardise_crops(infected.images[:8], [None] * 8, CropGeometry(16, 12.0, "brightfield-stained"),
                                        scale=model.metadata["training"]["crop_scale"])
    scores = model.score_crops(crops, masks, scorer="supn")
    assert scores.maps.shape == (8, 16, 16) and np.isfinite(scores.scores).all()
    x, mean, z, sample = model.reconstruct(crops[:2])
    assert x.shape == mean.shape == z.shape == sample.shape == (2, 3, 16, 16)
    assert np.isfinite(sample).all() and np.isfinite(z).all()


def test_dark_channel_rule_scores_the_darkest_channel_alone():
    from napari_supn_anomaly.supn import SCORE_RULES, pixel_map

    rule = SCORE_RULES["dark-channel"]
    z = torch.zeros(1, 3, 9, 9)
    z[0, 1, 4, 4] = -5.0  # green darker than expected
    z[0, 2, 4, 4] = +4.0  # blue brighter: must not cancel the green excess
    m = pixel_map(z, rule)
    assert m.shape == (1, 9, 9) and m[0, 4, 4] == pytest.approx(5.0) and m.max() == pytest.approx(5.0)
    assert pixel_map(z, SCORE_RULES["dark"])[0].max() == pytest.approx(1.0)  # the summed rule is diluted
    # one channel: the 3x3 box sum of -z
    single = torch.randn(2, 1, 8, 8)
    expected = -torch.nn.functional.avg_pool2d(torch.nn.functional.pad(single, (1, 1, 1, 1)), 3, stride=1)[:, 0] * 9
    assert torch.allclose(pixel_map(single, rule), expected, atol=1e-5)


def test_purple_rule_ignores_grey_darkening_and_needs_rgb():
    from napari_supn_anomaly.supn import SCORE_RULES, pixel_map

    rule = SCORE_RULES["purple"]
    z = torch.zeros(2, 3, 9, 9)
    z[0, :, 4, 4] = -6.0                   # grey-black debris: every channel darker alike
    z[1, 1, 4, 4], z[1, 2, 4, 4] = -5.0, -1.0  # purple: green much darker than blue
    m = pixel_map(z, rule)
    assert m[0].abs().max() == 0 and m[1, 4, 4] == pytest.approx(4.0)
    with pytest.raises(ValueError, match="RGB"):
        pixel_map(torch.zeros(1, 1, 9, 9), rule)


def shipped():
    if "giemsa-rbc" not in builtin_model_names():
        pytest.fail("the built-in model giemsa-rbc is missing (run benchmarks/build/giemsa_model.py)")
    return load_model("giemsa-rbc")


def test_shipped_giemsa_model_describes_itself():
    model = shipped()
    assert model.channels == 3 and model.channel_names == ["red", "green", "blue"]
    assert model.modality == "brightfield-stained"
    assert model.score_rule("supn") == "purple-scaled"
    healthy = model.healthy_scores("supn")
    assert len(healthy) >= 100
    t1, t5 = model.threshold_for_fpr(0.01), model.threshold_for_fpr(0.05)
    assert t1 > t5
    split = model.metadata["training"]["data"]
    assert len(split["validation_fields"]) == 6
    assert not set(split["validation_fields"]) & set(split["training_fields"])


def test_shipped_giemsa_model_ranks_real_infected_cells_above_healthy():
    root = require_data("plymouth_pf_giemsa_cells")
    from napari_supn_anomaly.evaluation.datasets import load_giemsa_cells

    model = shipped()
    field = model.metadata["training"]["data"]["validation_fields"][:1]
    cells = load_giemsa_cells(root.parent, fields=field, max_healthy=24)
    infected = np.flatnonzero(cells.labels == 1)[:24]
    healthy = np.flatnonzero(cells.labels == 0)[:24]
    cells = cells.subset(np.concatenate([infected, healthy]))
    crops, masks, _ = standardise_crops(cells.images, cells.masks, model.geometry, scale=model.metadata["training"]["crop_scale"])
    scores = model.score_crops(crops, masks, scorer="supn").scores
    inf, hea = scores[: len(infected)], scores[len(infected):]
    assert np.median(inf) > np.quantile(hea, 0.9)
    # pairwise ranking (AUROC) on this handful of held-back cells
    assert (inf[:, None] > hea[None, :]).mean() > 0.9
