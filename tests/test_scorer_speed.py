"""The fast scoring path against straightforward references: per-pixel maps of a tiny random
network computed with dense linear algebra, and the block-copy crop cutting / map pasting
against pixel-by-pixel loops (including crops that run over the field's edge)."""
import numpy as np
import pytest
import torch

from napari_supn_anomaly.cells.field_crops import cut_crops, paste_maps
from napari_supn_anomaly.supn import ArchConfig, SupnVAE
from napari_supn_anomaly.supn.scoring import (
    SCORE_RULES,
    _gaussian_kernel,
    anomaly_maps,
    pixel_map,
)


def tiny_random_net(channels: int, seed: int = 0, direct_output: bool = False) -> SupnVAE:
    torch.manual_seed(seed)
    net = SupnVAE(ArchConfig(crop_size=16, channels=channels, latent_dim=4, widths=(4, 8), head_widths=(4, 4),
                             direct_output=direct_output))
    with torch.no_grad():  # the zero-initialised heads would give a trivial factor
        for p in net.parameters():
            p.add_(0.15 * torch.randn_like(p))
    return net.eval()


def reference_maps(net: SupnVAE, x: torch.Tensor, likelihood: str, rule) -> torch.Tensor:
    """Default memory layout, U as a dense matrix, the spot statistic as s^T L e / sqrt(s^T L s)."""
    with torch.enable_grad():  # the network's own default path (nothing here requires a gradient)
        mu, _ = net.encode(x)
        mean = net.decode_mean(mu)
        factor = net.factor(likelihood, mu, mean)
    b, c, h, w = x.shape
    u = factor.dense_upper().detach().double()
    e = (x - mean).detach().double().reshape(b, c * h * w, 1)
    if rule.statistic != "matched":
        return pixel_map((u @ e).reshape(b, c, h, w).float(), rule)
    lam = u.transpose(1, 2) @ u
    k = _gaussian_kernel(rule.spot_sigma, torch.float64, "cpu")
    rad = k.shape[0] // 2
    templates = torch.zeros(h * w, c, h + 2 * rad, w + 2 * rad, dtype=torch.float64)
    for y in range(h):
        for xx in range(w):
            templates[y * w + xx, :, y:y + 2 * rad + 1, xx:xx + 2 * rad + 1] = k
    s = templates[:, :, rad:rad + h, rad:rad + w].reshape(h * w, c * h * w).T  # [CHW, HW]
    numerator = (s.T @ lam @ e)[..., 0]
    energy = ((lam @ s) * s).sum(1)
    return (rule.polarity * numerator / energy.sqrt()).reshape(b, h, w).float()


@pytest.mark.parametrize("channels,rules,direct_output,batch",
                         [(1, ("spot", "dark-spot", "paper", "bright"), False, 5),
                          (3, ("spot", "purple", "dark-channel"), False, 5),
                          (1, ("spot", "bright"), True, 21),  # more crops than one pass of the spot statistic
                          (3, ("spot", "purple"), True, 5)])
def test_fast_maps_equal_a_dense_reference(channels, rules, direct_output, batch):
    net = tiny_random_net(channels, direct_output=direct_output)
    x = torch.randn(batch, channels, 16, 16, generator=torch.Generator().manual_seed(1))
    masks = torch.zeros(batch, 16, 16, dtype=torch.bool)
    masks[:, 4:12, 3:13] = True
    for likelihood in ("supn", "diag", "l2"):
        for name in rules:
            rule = SCORE_RULES[name]
            want = reference_maps(net, x, likelihood, rule)
            got = anomaly_maps(net, x, likelihood, rule)
            assert got.is_contiguous() and got.dtype == torch.float32
            scale = max(1.0, float(want.abs().max()))
            assert float((got - want).abs().max()) <= 1e-4 * scale, (likelihood, name)
            from napari_supn_anomaly.supn import cell_scores

            assert torch.allclose(cell_scores(got, masks), cell_scores(want, masks), rtol=1e-4, atol=1e-4)


def loop_cut(plane, labels, ids, centres, size, fill):
    crops = np.empty((len(ids), plane.shape[0], size, size), np.float32)
    crops[:] = fill[None, :, None, None]
    masks = np.zeros((len(ids), size, size), bool)
    h, w = labels.shape
    for k, (cid, (cy, cx)) in enumerate(zip(ids, centres)):
        for i in range(size):
            for j in range(size):
                y, x = cy - size // 2 + i, cx - size // 2 + j
                if 0 <= y < h and 0 <= x < w:
                    crops[k, :, i, j] = plane[:, y, x]
                    masks[k, i, j] = labels[y, x] == cid
    return crops, masks


def loop_paste(heatmap, labels, ids, centres, maps):
    size = maps.shape[-1]
    h, w = labels.shape
    for cid, (cy, cx), m in zip(ids, centres, maps):
        for i in range(size):
            for j in range(size):
                y, x = cy - size // 2 + i, cx - size // 2 + j
                if 0 <= y < h and 0 <= x < w and labels[y, x] == cid:
                    heatmap[y, x] = max(heatmap[y, x], m[i, j])


def test_cut_and_paste_equal_pixel_loops_at_the_field_edge():
    rng = np.random.default_rng(0)
    h, w, size = 40, 50, 12
    labels = np.zeros((h, w), np.int32)
    # cells in the corners, on every edge and inside; id 7 is split in two pieces
    boxes = {1: (0, 0, 5, 6), 2: (35, 44, 40, 50), 3: (0, 20, 4, 30), 4: (15, 0, 25, 3), 5: (18, 20, 26, 30),
             6: (30, 46, 38, 50), 7: (10, 38, 14, 42)}
    for cid, (y0, x0, y1, x1) in boxes.items():
        labels[y0:y1, x0:x1] = cid
    labels[16:18, 44:47] = 7
    plane = rng.normal(size=(2, h, w)).astype(np.float32)
    fill = np.array([0.5, -2.0], np.float32)
    ids = np.array(sorted(boxes))
    centres = np.array([[0, 0], [39, 49], [1, 25], [20, 1], [22, 25], [34, 49], [12, 40]])
    got_crops, got_masks = cut_crops(plane, labels, ids, centres, size, fill)
    want_crops, want_masks = loop_cut(plane, labels, ids, centres, size, fill)
    np.testing.assert_array_equal(got_crops, want_crops)
    np.testing.assert_array_equal(got_masks, want_masks)
    assert got_crops.dtype == np.float32 and got_masks.dtype == bool

    maps = rng.normal(size=(len(ids), size, size)).astype(np.float32)
    got = np.full((h, w), -np.inf, np.float32)
    want = got.copy()
    paste_maps(got, labels, ids, centres, maps)
    loop_paste(want, labels, ids, centres, maps)
    np.testing.assert_array_equal(got, want)
    # a second batch with the same cells keeps the maximum
    paste_maps(got, labels, ids, centres, maps[::-1].copy())
    loop_paste(want, labels, ids, centres, maps[::-1].copy())
    np.testing.assert_array_equal(got, want)
    empty = cut_crops(plane, labels, ids[:0], centres[:0], size, fill)
    assert empty[0].shape == (0, 2, size, size) and empty[1].shape == (0, size, size)


def test_direct_output_pixel_shuffle_equals_torch_in_either_layout():
    from napari_supn_anomaly.supn.networks import _PixelShuffle2

    x = torch.randn(2, 12, 5, 7)
    for layout in (torch.contiguous_format, torch.channels_last):
        got = _PixelShuffle2()(x.contiguous(memory_format=layout))
        assert torch.equal(got, torch.nn.functional.pixel_shuffle(x, 2)) and got.is_contiguous()


def test_old_architecture_keeps_its_weights_and_new_one_is_smaller():
    """A header without ``direct_output`` (files before it) builds the network it was saved from."""
    old = SupnVAE(ArchConfig.from_dict({"crop_size": 16, "widths": [4, 8], "head_widths": [4, 4]}))
    assert "mean_decoder.out.weight" in old.state_dict() and "heads.supn.out.weight" in old.state_dict()
    assert old.mean_decoder.body.out_width == 4
    new = SupnVAE(ArchConfig(crop_size=16, widths=(4, 8), head_widths=(4, 4), direct_output=True))
    assert new.mean_decoder.body.out_width == 8  # stops at half resolution
    with pytest.raises(TypeError):
        ArchConfig(direct_output="yes")


def test_background_fill_is_the_median_of_every_nth_outside_pixel():
    from napari_supn_anomaly.cells.field_crops import background_fill

    rng = np.random.default_rng(2)
    for shape, channels, inside in [((700, 700), 2, 0.4), ((30, 40), 3, 0.4), ((20, 20), 1, 1.0)]:
        plane = rng.random((channels,) + shape).astype(np.float32)
        labels = (rng.random(shape) < inside).astype(np.int32)
        outside = labels == 0 if (labels == 0).sum() >= 16 else np.ones(shape, bool)
        values = plane[:, outside]
        if values.shape[1] > 200_000:
            values = values[:, :: values.shape[1] // 200_000]
        np.testing.assert_array_equal(background_fill(plane, labels), np.median(values, axis=1).astype(np.float32))
