"""Whole-field detection with the seed papers' scorers once the model holds their calibration."""
from __future__ import annotations

import numpy as np
import pytest
from skimage.segmentation import clear_border

from _tiny_models import tiny_model
from napari_supn_anomaly.cells import standardise_crops
from napari_supn_anomaly.errors import ScorerUnavailable
from napari_supn_anomaly.pipeline.stacks import DetectSettings, detect
from napari_supn_anomaly.scoring import available_scorers, calibrate, resolve
from napari_supn_anomaly.synthetic import make_field


def test_calibrated_registry_scorer_runs_on_a_field_and_uncalibrated_ones_are_refused():
    model = tiny_model("fluorescence").copy()
    field = make_field((192, 192), "fluorescence", cell_diameter=30, infected_fraction=0.3, seed=3)
    with pytest.raises(ScorerUnavailable, match="no scorer 'recon'"):
        resolve(model, "recon")

    healthy = make_field((192, 192), "fluorescence", cell_diameter=30, infected_fraction=0.0, seed=4)
    ids = [i for i in np.unique(healthy.cells) if i]
    images, masks = [], []
    for i in ids:
        ys, xs = np.nonzero(healthy.cells == i)
        y0, y1, x0, x1 = max(0, ys.min() - 8), ys.max() + 9, max(0, xs.min() - 8), xs.max() + 9
        images.append(healthy.image[None, y0:y1, x0:x1].astype(np.float32))
        masks.append(healthy.cells[y0:y1, x0:x1] == i)
    # cells of 30 px in the field, brought to the model's cell size as detection does
    crops, crop_masks, _ = standardise_crops(images, masks, model.geometry, scale=model.cell_diameter_px / 30)
    calibrate(resolve(model, "recon", require_calibration=False), crops, crop_masks)
    assert "recon" in available_scorers(model) and "ssl-ppii" not in available_scorers(model)

    result = detect(field.image, "YX", resolve(model, "recon"), settings=DetectSettings(fpr=0.05))
    assert result.heatmap.shape == field.image.shape and np.isfinite(result.heatmap).all()
    assert result.provenance["scorer"] == "recon"
    n_whole = len(np.unique(clear_border(field.cells))) - 1
    n_all = len(np.unique(field.cells)) - 1  # cells cut by the edge are kept, flagged
    table = result.cell_table
    assert 0.7 * n_whole <= (~table["edge"]).sum() and len(table) <= n_all + 1
    assert (table["score"] > 0).all()
    # cells flagged at the 5% healthy threshold are the ones scoring above it
    assert (table["candidate"] == (table["score"] >= result.threshold)).all()


def test_builtin_fluorescence_model_offers_its_calibrated_registry_scorers():
    from napari_supn_anomaly.models import load_model

    model = load_model("fluorescence-rbc")
    usable = available_scorers(model)
    assert usable[:3] == ["supn", "diag", "l2"]
    assert {"recon", "grad-elbo", "combi", "ensemble"} <= set(usable)
    assert all(model.threshold_for_fpr(0.05, s) > -np.inf for s in usable)
