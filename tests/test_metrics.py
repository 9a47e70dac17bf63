"""Metrics against hand-computed values and sklearn."""
import numpy as np
import pytest
from sklearn.metrics import average_precision_score, roc_auc_score

from napari_supn_anomaly.evaluation import metrics as M


def test_cell_auroc_auprc_match_sklearn_and_hand_values():
    labels = np.array([0, 0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.9, 0.5, 0.95])
    # pairs (pos > neg): 0.5 beats 3 of 4, 0.95 beats 4 of 4 -> 7/8
    assert M.auroc(labels, scores) == pytest.approx(7 / 8)
    assert M.auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores))
    # ranking: 0.95(+) 0.9(-) 0.5(+): AP = 0.5*1 + 0.5*(2/3)
    assert M.auprc(labels, scores) == pytest.approx(0.5 + 0.5 * 2 / 3)
    assert M.auprc(labels, scores) == pytest.approx(average_precision_score(labels, scores))


def test_tpr_at_fixed_fpr():
    labels = np.array([0, 0, 0, 0, 1, 1])
    scores = np.array([0.1, 0.2, 0.3, 0.9, 0.5, 0.95])
    assert M.tpr_at_fpr(labels, scores, 0.0) == pytest.approx(0.5)
    assert M.tpr_at_fpr(labels, scores, 0.25) == pytest.approx(1.0)
    assert M.tpr_at_fpr(labels, scores, 0.2) == pytest.approx(0.5)


def test_bootstrap_interval_brackets_value_and_narrows_with_more_cells():
    rng = np.random.default_rng(1)
    small_l = np.r_[np.zeros(20), np.ones(20)].astype(int)
    small_s = small_l + rng.normal(0, 1, 40)
    big_l = np.r_[np.zeros(400), np.ones(400)].astype(int)
    big_s = big_l + rng.normal(0, 1, 800)
    a = M.bootstrap_interval(M.auroc, small_l, small_s, n_boot=300)
    b = M.bootstrap_interval(M.auroc, big_l, big_s, n_boot=300)
    assert a.low <= a.value <= a.high
    assert b.low <= b.value <= b.high
    assert (b.high - b.low) < (a.high - a.low)
    assert 0.6 < b.value < 0.85  # two unit-variance Gaussians one sd apart: AUROC = Phi(1/sqrt 2) = 0.76


def test_aupro_on_a_toy_case_by_hand():
    # one 1 x 7 image: regions {a, b} and {c}; four normal pixels
    #          a    c    n1   b    n2   n3   n4
    s = np.array([[0.9, 0.8, 0.7, 0.6, 0.5, 0.4, 0.3]])
    truth = np.array([[1, 0, 0, 1, 0, 0, 0]], bool)
    # a and b must be one region but not connected to c: put c in a second image instead
    maps = np.zeros((2, 1, 7))
    gt = np.zeros((2, 1, 7), bool)
    masks = np.zeros((2, 1, 7), bool)
    maps[0, 0, :2], gt[0, 0, :2], masks[0, 0, :2] = [0.9, 0.6], True, True          # region 1 = {a, b}
    maps[1, 0, :5], masks[1, 0, :5] = [0.8, 0.7, 0.5, 0.4, 0.3], True
    gt[1, 0, 0] = True                                                              # region 2 = {c}
    # PRO/FPR curve: (0,.25) (0,.75) (.25,.75) (.25,1) (.5,1): area to 0.3 = .25*.75 + .05*1
    assert M.aupro(maps, gt, masks, fpr_limit=0.3) == pytest.approx((0.25 * 0.75 + 0.05) / 0.3)
    assert s.shape == truth.shape


def test_aupro_perfect_and_region_size_independent():
    maps = np.zeros((1, 10, 10))
    gt = np.zeros((1, 10, 10), bool)
    gt[0, 1:5, 1:5] = True     # big region, detected
    gt[0, 8, 8] = True         # tiny region, missed
    maps[0][gt[0]] = 1.0
    maps[0, 8, 8] = -1.0  # below every normal pixel
    perfect = M.aupro(np.where(gt, 1.0, 0.0), gt)
    assert perfect == pytest.approx(1.0)
    # the missed tiny region counts as much as the big one: PRO tops at 0.5 until the normals come in
    assert M.aupro(maps, gt) == pytest.approx(0.5, abs=0.02)


def test_pixel_metrics_restricted_to_mask_and_dice():
    maps = np.array([[[0.1, 0.9], [0.8, 5.0]]])
    gt = np.array([[[0, 1], [1, 0]]], bool)
    mask = np.array([[[1, 1], [1, 0]]], bool)   # the 5.0 pixel is background: ignored
    assert M.pixel_auroc(maps, gt, mask) == pytest.approx(1.0)
    assert M.pixel_auroc(maps, gt) < 1.0
    dice, thr = M.best_dice(maps, gt, mask)
    assert dice == pytest.approx(1.0) and thr == pytest.approx(0.8)
    # threshold 0.85: only one of two truth pixels found, nothing false: 2*1/(1+2)
    assert M.dice_at(maps, gt, 0.85, mask) == pytest.approx(2 / 3)


def test_healthy_pixel_threshold_is_a_quantile_of_healthy_cell_pixels():
    rng = np.random.default_rng(0)
    maps = rng.uniform(0, 1, (5, 20, 20))
    masks = np.zeros((5, 20, 20), bool)
    masks[:, 5:15, 5:15] = True
    maps[~masks] = 100.0   # background must not count
    thr = M.healthy_pixel_threshold(maps, masks, 0.01)
    assert 0.95 < thr < 1.0
    assert np.mean(maps[masks] >= thr) == pytest.approx(0.01, abs=0.005)


def _aupro_brute_force(maps, gt, limit):
    from scipy import ndimage as ndi
    regions = []
    for i in range(len(gt)):
        lab, n = ndi.label(gt[i], structure=np.ones((3, 3)))
        regions += [(i, lab == k) for k in range(1, n + 1)]
    neg = ~gt
    pts = [(0.0, 0.0)]
    for t in np.unique(maps)[::-1]:
        above = maps >= t
        fpr = (above & neg).sum() / neg.sum()
        pro = np.mean([(above[i] & r).sum() / r.sum() for i, r in regions])
        pts.append((fpr, pro))
    x, y = np.array(pts).T
    xs = np.r_[x[x <= limit], limit]
    ys = np.r_[y[x <= limit], np.interp(limit, x, y)]
    return np.sum(np.diff(xs) * (ys[1:] + ys[:-1]) / 2) / limit


def test_aupro_matches_a_brute_force_threshold_sweep():
    rng = np.random.default_rng(7)
    gt = np.zeros((3, 12, 12), bool)
    gt[0, 2:5, 2:6] = True
    gt[1, 7:9, 7:8] = True
    gt[1, 1, 1] = True
    maps = rng.normal(0, 1, gt.shape) + 1.5 * gt
    assert M.aupro(maps, gt, fpr_limit=0.3) == pytest.approx(_aupro_brute_force(maps, gt, 0.3), abs=1e-9)


def test_fast_auroc_and_ap_equal_sklearn_with_ties():
    rng = np.random.default_rng(11)
    for _ in range(20):
        labels = rng.integers(0, 2, 60)
        if labels.min() == labels.max():
            continue
        scores = rng.integers(0, 8, 60).astype(float)  # many ties
        assert M.auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)
        assert M.auprc(labels, scores) == pytest.approx(average_precision_score(labels, scores), abs=1e-12)
