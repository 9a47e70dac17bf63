"""Synthetic anomalies (FPI, PII, P-PII), the Poisson solver, and the evaluation perturbations."""
import numpy as np
import pytest

from napari_supn_anomaly.supn import synthetic_anomalies as SA
from napari_supn_anomaly.evaluation import perturbations as P


def _cells(n=4, s=32, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:s, :s]
    mask = (yy - s / 2) ** 2 + (xx - s / 2) ** 2 < (0.35 * s) ** 2
    crops = np.where(mask, 0.4, -0.8)[None, None] + rng.normal(0, 0.05, (n, 1, s, s))
    crops += np.sin(xx / 3.0)[None, None] * 0.2 * mask  # texture, so gradients differ between cells
    return crops.astype(np.float32), np.repeat(mask[None], n, 0)


def _laplacian_residual(u, b):
    """4u(p) - sum of 4 neighbours - b on the interior."""
    lap = 4 * u[1:-1, 1:-1] - u[:-2, 1:-1] - u[2:, 1:-1] - u[1:-1, :-2] - u[1:-1, 2:]
    return lap - b


def test_poisson_solve_satisfies_the_discrete_equation():
    rng = np.random.default_rng(3)
    box = rng.normal(0, 1, (9, 12))
    div = rng.normal(0, 1, (7, 10))
    u = SA.solve_dirichlet_poisson(box, div)
    np.testing.assert_allclose(_laplacian_residual(u, div), 0, atol=1e-9)
    # the frame (Dirichlet boundary) is kept
    np.testing.assert_array_equal(u[0], box[0])
    np.testing.assert_array_equal(u[:, -1], box[:, -1])


def test_poisson_blend_uses_mixed_guidance_inside_the_patch():
    rng = np.random.default_rng(4)
    target = rng.normal(0, 1, (20, 20))
    source = rng.normal(0, 3, (8, 9))
    box = (5, 6, 13, 15)
    out = SA.poisson_blend(target, source, box, None, 0.3, 0.7)
    t = target[5:13, 6:15]
    b = SA.mixed_guidance_divergence(t, source, np.ones(t.shape, bool), 0.3, 0.7)
    np.testing.assert_allclose(_laplacian_residual(out[5:13, 6:15], b), 0, atol=1e-9)
    # outside the box nothing changes
    untouched = np.ones(target.shape, bool)
    untouched[6:12, 7:14] = False
    np.testing.assert_array_equal(out[untouched], target[untouched])


def test_blending_the_target_into_itself_changes_nothing():
    rng = np.random.default_rng(5)
    target = rng.normal(0, 1, (16, 16))
    out = SA.poisson_blend(target, target[3:12, 2:10].copy(), (3, 2, 12, 10))
    np.testing.assert_allclose(out, target, atol=1e-9)


@pytest.mark.parametrize("kind", SA.GENERATORS)
def test_generators_give_labels_in_0_1_only_where_the_image_changed(kind):
    crops, masks = _cells()
    rng = np.random.default_rng(0)
    sources = [(crops[i], masks[i]) for i in range(1, 4)]
    changed_any = False
    for _ in range(5):
        sample = SA.make_synthetic(kind, crops[0], masks[0], sources, rng)
        assert sample.image.shape == crops[0].shape and sample.label.shape == masks[0].shape
        assert np.isfinite(sample.image).all()
        assert sample.label.min() >= 0 and sample.label.max() <= 1
        changed = np.abs(sample.image - crops[0]).max(0) > 1e-4
        assert not (sample.label > 0)[~changed].any(), "label set where the image did not change"
        changed_any |= bool((sample.label > 0).any())
        # the change sits on the cell
        assert (sample.label > 0)[masks[0]].sum() >= 0.5 * (sample.label > 0).sum()
    assert changed_any


def test_ppii_averages_many_blends_and_reports_their_spread():
    crops, masks = _cells()
    rng = np.random.default_rng(1)
    sample = SA.probabilistic_pii(crops[0], masks[0], [(crops[1], masks[1])], rng, n_anomalies=(2, 2), n_raters=(5, 5))
    assert sample.spread is not None and sample.spread.shape == masks[0].shape
    assert (sample.spread > 0).any()
    # soft labels: more than one distinct value strictly between 0 and 1
    soft = sample.label[(sample.label > 0) & (sample.label < 1)]
    assert len(np.unique(soft)) > 3


def test_histogram_equaliser_uses_dataset_statistics():
    crops, _ = _cells(n=8)
    eq = SA.HistogramEqualiser.fit(crops)
    out = eq.apply(crops)
    assert out.min() >= -1 - 1e-6 and out.max() <= 1 + 1e-6
    assert abs(float(np.median(out))) < 0.1  # equalised: median maps to about 0
    # one bright pixel in one crop does not change how other pixels are mapped
    bright = crops[:1].copy()
    bright[0, 0, 16, 16] = 50.0
    np.testing.assert_allclose(np.delete(eq.apply(bright).ravel(), 16 * 32 + 16),
                               np.delete(out[:1].ravel(), 16 * 32 + 16))


@pytest.mark.parametrize("kind", P.ELLIPSE_KINDS)
def test_ellipses_scale_with_strength_and_truth_marks_them(kind):
    crops, masks = _cells(n=3, s=64)
    crops = crops * 100 + 100  # raw intensities; normalised range: low 20, high 180 -> 80 per unit
    zero = P.add_ellipses(crops, masks, kind, 0.0, [20.0], [180.0])
    np.testing.assert_allclose(zero.crops, crops)
    half = P.add_ellipses(crops, masks, kind, 0.5, [20.0], [180.0], seed=1)
    full = P.add_ellipses(crops, masks, kind, 1.0, [20.0], [180.0], seed=1)
    np.testing.assert_allclose(full.crops - crops, 2 * (half.crops - crops), rtol=1e-4, atol=1e-3)
    diff = np.abs(full.crops - crops)[:, 0]
    assert full.truth.any() and not (diff[~full.truth] > 1e-3).any()
    if kind == "smooth":
        assert diff.max() == pytest.approx(80.0, rel=0.01)   # unit strength peak = 1 normalised unit
    assert (full.truth[:, :, :] & masks).sum() >= 0.8 * full.truth.sum()


def test_transplanted_parasites_add_a_bright_spot_inside_healthy_cells():
    healthy, masks = _cells(n=3, s=64)
    infected = healthy.copy()
    infected[:, 0, 30:33, 28:31] += 1.0   # a bright parasite
    out = P.transplant_parasites(healthy, masks, infected, masks, "fluorescence", seed=0)
    for i in range(3):
        assert out.truth[i].sum() >= 4
        assert not (out.truth[i] & ~masks[i]).any()
        added = (out.crops[i, 0] - healthy[i, 0])[out.truth[i]]
        assert added.mean() > 0.5
