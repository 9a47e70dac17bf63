"""The 'supn+spots' scorer: SUPN's score and the cell's brightest small spot on their healthy scales."""
from __future__ import annotations

import numpy as np
import pytest

from _field_cells import field_cell_crops
from _tiny_models import tiny_model
from napari_supn_anomaly.errors import ScorerUnavailable
from napari_supn_anomaly.evaluation.metrics import auroc
from napari_supn_anomaly.pipeline.stacks import DetectSettings, detect
from napari_supn_anomaly.scoring import available_scorers, calibrate, resolve
from napari_supn_anomaly.supn import bright_spots
from napari_supn_anomaly.supn.ensemble import MemberScale
from napari_supn_anomaly.synthetic import make_field

NAME = "supn+spots"


def _disc(size: int = 48, radius: float = 15.0) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[:size, :size] - size / 2 + 0.5
    mask = np.hypot(yy, xx) <= radius
    return np.where(mask, 100.0, 20.0)[None].astype(np.float32), mask


def test_a_bright_dot_inside_the_cell_raises_its_spot_and_the_cells_own_outline_does_not():
    crop, mask = _disc()
    crops = np.repeat(crop[None], 3, axis=0)
    crops[1, 0, 22:25, 22:25] += 60.0  # a parasite's bright dot inside the cell
    crops[2, 0, 2:5, 2:5] += 60.0      # the same dot on the background
    spots = bright_spots.cell_spots(crops, np.repeat(mask[None], 3, axis=0), cell_diameter_px=30.0)
    assert spots[1] > spots[0] + 20.0
    assert spots[2] == pytest.approx(spots[0])
    # the plain disc's step at its outline (80) is no spot: the rim is left out (with it, 18)
    assert abs(spots[0]) < 12.0


def test_the_cells_score_rises_with_its_spot_and_keeps_supns_order_of_pixels():
    rng = np.random.default_rng(0)
    maps = rng.gamma(2.0, 10.0, size=(2, 16, 16)).astype(np.float32)
    maps[1] = maps[0]
    combined = bright_spots.combine(maps, np.array([0.0, 3.0]), MemberScale(np.log(20.0), 0.5), MemberScale(0.0, 1.0))
    assert combined[1].max() == pytest.approx(combined[0].max() + bright_spots.SPOT_WEIGHT * 3.0)
    assert np.array_equal(np.argsort(combined[0], axis=None), np.argsort(maps[0], axis=None))


def test_calibrated_on_healthy_cells_it_detects_on_a_fluorescence_field():
    model = tiny_model("fluorescence").copy()
    with pytest.raises(ScorerUnavailable):
        resolve(model, NAME)  # not calibrated yet
    crops, masks = field_cell_crops(model, seed=4, shape=(256, 256))
    calibrate(resolve(model, NAME, require_calibration=False), crops, masks)
    assert NAME in available_scorers(model)
    assert set(model.metadata["calibration"][NAME]["members"]) == {"supn", "spots"}
    out = resolve(model, NAME).score(crops[:5], masks[:5])
    np.testing.assert_allclose(out.scores, [m[k].max() for m, k in zip(out.maps, masks[:5])], rtol=1e-5)

    field = make_field((256, 256), "fluorescence", cell_diameter=30, infected_fraction=0.3, seed=3)
    result = detect(field.image, "YX", resolve(model, NAME), settings=DetectSettings(fpr=0.05))
    assert result.provenance["scorer"] == NAME and np.isfinite(result.heatmap).all()
    table = result.cell_table
    infected = np.array([(field.parasites[result.cells == c] > 0).any() for c in table["cell_id"]])
    assert 0 < infected.sum() < len(infected)
    assert auroc(infected.astype(int), table["score"].to_numpy()) > 0.8


def test_a_stained_model_says_bright_spots_are_not_made_for_its_cells():
    model = tiny_model("brightfield-stained").copy()
    with pytest.raises(ScorerUnavailable, match="made for fluorescence and brightfield images"):
        resolve(model, NAME, require_calibration=False)
