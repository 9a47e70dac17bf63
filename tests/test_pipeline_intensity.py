"""Fields from another camera or exposure are brought to the model's intensity range."""
from __future__ import annotations

import numpy as np
import pytest
from _tiny_models import tiny_model

from napari_supn_anomaly.models.data_range import apply_match, field_range, plan_match
from napari_supn_anomaly.pipeline.stacks import DetectSettings, detect
from napari_supn_anomaly.scoring import resolve
from napari_supn_anomaly.supn.normalisation import IntensityStats
from napari_supn_anomaly.synthetic import make_field


@pytest.fixture(scope="module")
def field():
    return make_field((192, 192), "fluorescence", cell_diameter=30, infected_fraction=0.3, seed=3)


def test_a_field_in_the_models_range_is_left_alone(field):
    plane = field.image[None].astype(np.float32)
    low, high = field_range(plane, field.cells, 40)
    stats = IntensityStats(low.tolist(), (high * 1.1).tolist())
    match = plan_match(plane, field.cells, stats, 40, "auto")
    assert not match.applied and apply_match(plane, match) is plane
    assert plan_match(plane, field.cells, stats, 40, "match").applied


def test_a_16_bit_field_is_mapped_onto_the_models_range(field):
    plane = field.image[None].astype(np.float32)
    stats = IntensityStats(*(v.tolist() for v in field_range(plane, field.cells, 40)))
    wide = plane * 16 + 300
    match = plan_match(wide, field.cells, stats, 40, "auto")
    assert match.applied
    np.testing.assert_allclose(apply_match(wide, match), plane, atol=1e-2)
    assert not plan_match(wide, field.cells, stats, 40, "off").applied


def test_detection_on_a_16_bit_copy_matches_the_8_bit_field(field):
    model = tiny_model("fluorescence")
    ref = detect(field.image, "YX", resolve(model), settings=DetectSettings(intensity="match"))
    wide = detect(field.image.astype(np.uint16) * 16 + 300, "YX", resolve(model), settings=DetectSettings(intensity="auto"))
    assert wide.provenance["intensity_matching"]["applied"]
    assert "mapped onto the model's range" in wide.summary()
    np.testing.assert_allclose(wide.cell_table["score"], ref.cell_table["score"], rtol=1e-3, atol=1e-3)
    raw = detect(field.image.astype(np.uint16) * 16 + 300, "YX", resolve(model), settings=DetectSettings(intensity="off"))
    assert np.abs(raw.cell_table["score"] - ref.cell_table["score"]).max() > 1.0
    assert "mapped" not in raw.summary()


def test_an_unknown_mode_is_refused(field):
    with pytest.raises(ValueError, match="intensity matching"):
        detect(field.image, "YX", resolve(tiny_model("fluorescence")), settings=DetectSettings(intensity="maybe"))
