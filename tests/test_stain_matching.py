"""Stained smears from another lab are brought to the stain of the model's training cells."""
from __future__ import annotations

import numpy as np
import pytest
from _tiny_models import tiny_model

from napari_supn_anomaly.models.data_range import (DataRange, Stain, apply_match, measure_stain, model_data_range,
                                                   plan_match)
from napari_supn_anomaly.pipeline.stacks import DetectSettings, detect
from napari_supn_anomaly.scoring import resolve
from napari_supn_anomaly.supn.normalisation import IntensityStats
from napari_supn_anomaly.synthetic import make_field


@pytest.fixture(scope="module")
def field():
    f = make_field((192, 192), "brightfield-stained", cell_diameter=30, infected_fraction=0.3, seed=3)
    return np.moveaxis(f.image, -1, 0).astype(np.float32), f.cells


def restained(plane: np.ndarray, light: np.ndarray, absorbance: np.ndarray) -> np.ndarray:
    """Another lamp (``light`` times the glass's light) and another stain (``absorbance`` times the optical
    density), per channel."""
    glass = np.percentile(plane.reshape(len(plane), -1), 99, axis=1)[:, None, None]
    density = -np.log(np.clip(plane / glass, 1e-3, 1.0))
    return (light[:, None, None] * glass * np.exp(-absorbance[:, None, None] * density)).astype(np.float32)


def reference_of(plane, cells) -> DataRange:
    stain = measure_stain(plane, cells)
    low, high = np.percentile(plane.reshape(3, -1), (1, 99.8), axis=1)
    return DataRange(low.tolist(), high.tolist(), stain=stain)


def test_the_stain_of_a_field_is_its_cells_and_its_glass(field):
    plane, cells = field
    stain = measure_stain(plane, cells)
    glass = np.median(plane[:, cells == 0], axis=1)
    assert np.all(np.asarray(stain.cell) < np.asarray(stain.background) - 20)
    np.testing.assert_allclose(stain.background, glass, atol=5)
    assert measure_stain(plane, np.zeros_like(cells)) is None          # no cells: nothing to measure
    assert measure_stain(255 - plane, cells) is None                  # cells brighter than the glass


def test_a_field_of_the_models_stain_is_left_alone(field):
    plane, cells = field
    match = plan_match(plane, cells, reference_of(plane, cells), 40, "auto")
    assert not match.applied and apply_match(plane, match) is plane
    assert plan_match(plane, cells, reference_of(plane, cells), 40, "match").applied


def test_a_slightly_bluer_field_of_the_models_own_stain_is_left_alone_and_another_labs_is_not(field):
    # Giemsa's blue absorbance is small: 15% more of it is a few grey levels, the spread between
    # fields of one slide; another lab's stain is 40% or more away in some channel
    plane, cells = field
    reference = reference_of(plane, cells)
    near = restained(plane, np.ones(3), np.array([1.0, 1.0, 1.15]))
    assert not plan_match(near, cells, reference, 40, "auto").applied
    far = restained(plane, np.ones(3), np.array([1.0, 1.0, 1.4]))
    assert plan_match(far, cells, reference, 40, "auto").applied


def test_another_lamp_and_stain_are_mapped_back_to_the_models(field):
    plane, cells = field
    other = restained(plane, np.array([0.85, 0.95, 0.9]), np.array([1.6, 0.7, 1.2]))
    reference = reference_of(plane, cells)
    match = plan_match(other, cells, reference, 40, "auto")
    assert match.applied and match.to_dict()["kind"] == "stain"
    np.testing.assert_allclose(match.power, [1 / 1.6, 1 / 0.7, 1 / 1.2], rtol=0.05)
    back = apply_match(other, match)
    inside = cells > 0
    assert np.abs(back - plane)[:, inside].mean() < 0.1 * np.abs(other - plane)[:, inside].mean()
    assert not plan_match(other, cells, reference, 40, "off").applied


def test_without_a_stain_reference_the_range_is_matched(field):
    plane, cells = field
    stats = IntensityStats(*(np.percentile(plane.reshape(3, -1), (1, 99.8), axis=1).tolist()))
    match = plan_match(plane * 0.5, cells, stats, 40, "auto")
    assert match.applied and match.power is None


def test_a_stain_survives_the_model_file_and_a_broken_one_is_dropped():
    stats = IntensityStats([10.0] * 3, [250.0] * 3)
    stored = DataRange([10.0] * 3, [250.0] * 3, stain=Stain([180.0, 185.0, 215.0], [250.0, 253.0, 252.0]))
    assert model_data_range({"data_range": stored.to_dict()}, stats).stain == stored.stain
    older = {k: v for k, v in stored.to_dict().items() if k not in ("cell", "background")}
    assert model_data_range({"data_range": older}, stats).stain is None
    for cell in ([260.0, 185.0, 215.0], [180.0, float("nan"), 215.0], [180.0, 185.0], "tan"):
        broken = stored.to_dict() | {"cell": cell}
        found = model_data_range({"data_range": broken}, stats)
        assert found.stain is None and found.low == stored.low


def test_a_stained_model_carries_its_stain_and_detection_matches_a_restained_field(field):
    model = tiny_model("brightfield-stained")
    assert model.data_range.stain is not None
    plane, _ = field
    image = np.moveaxis(plane, 0, -1)
    ref = detect(image, "YXS", resolve(model), settings=DetectSettings(intensity="off"))
    other = np.moveaxis(restained(plane, np.array([0.85, 0.95, 0.9]), np.array([1.6, 0.7, 1.2])), 0, -1)
    raw = detect(other, "YXS", resolve(model), settings=DetectSettings(intensity="off"))
    matched = detect(other, "YXS", resolve(model), settings=DetectSettings(intensity="auto"))
    assert matched.provenance["intensity_matching"]["kind"] == "stain"
    assert matched.provenance["intensity_matching"]["applied"]
    assert "matched to the stain of the model's training cells" in matched.summary()
    err_raw = np.abs(raw.cell_table["score"] - ref.cell_table["score"]).median()
    err_matched = np.abs(matched.cell_table["score"] - ref.cell_table["score"]).median()
    assert err_matched < 0.5 * err_raw


def test_finetuning_a_stained_model_matches_each_field_as_its_detection_will():
    from napari_supn_anomaly.progress import Progress
    from napari_supn_anomaly.training.finetune import FinetuneSettings, finetune
    from napari_supn_anomaly.training.regions import cells_from_labels

    f = make_field((320, 320), "brightfield-stained", cell_diameter=30, infected_fraction=0.0, seed=4)
    plane, cells = np.moveaxis(f.image, -1, 0).astype(np.float32), f.cells
    base = tiny_model("brightfield-stained")
    other = restained(plane, np.array([0.85, 0.95, 0.9]), np.array([1.6, 0.7, 1.2]))
    healthy = np.unique(cells[cells > 0])
    marked = cells_from_labels(other, cells, "other.png", healthy)
    settings = FinetuneSettings(minutes=1.0, seed=0, device="cpu", mean_iters=4, precision_iters=3, batch_size=8,
                                num_threads=1)
    tuned = [e for e in finetune(base, marked, settings, name="tuned", fields={"other.png": other},
                                 field_labels={"other.png": cells}, compare=False) if not isinstance(e, Progress)][-1]
    # the new model keeps the base's stain and normalisation: its detection matches the field as training did
    assert tuned.data_range.stain == base.data_range.stain
    assert tuned.intensity == base.intensity
    result = detect(np.moveaxis(other, 0, -1), "YXS", resolve(tuned), settings=DetectSettings(device="cpu"))
    planned = result.provenance["intensity_matching"]
    assert planned["kind"] == "stain" and planned["applied"]
    as_base = plan_match(other, cells, base.data_range, 40, "auto")
    np.testing.assert_allclose(planned["power"], as_base.power, rtol=0.02)
    np.testing.assert_allclose(planned["gain"], as_base.gain, rtol=0.05)


def test_a_field_stained_far_unlike_the_model_has_only_its_range_matched(field):
    plane, cells = field
    faint = restained(plane, np.array([1.0, 1.0, 1.0]), np.array([0.05, 0.05, 0.05]))  # cells barely darker
    match = plan_match(faint, cells, reference_of(plane, cells), 40, "match")
    assert match.applied and match.power is None


def test_blocks_match_a_field_to_the_models_stain_as_the_whole_field_is_matched(tmp_path, monkeypatch):
    import tifffile
    from _tiny_models import tiny_model_file

    from napari_supn_anomaly.cluster import detect_run
    from napari_supn_anomaly.cluster.runners import InProcessRunner
    from napari_supn_anomaly.cluster.scorers import ScorerSpec

    monkeypatch.setattr(detect_run, "BIG_PLANE_PIXELS", 0)  # every plane in blocks, however small
    model = tiny_model("brightfield-stained")
    f = make_field((320, 288), "brightfield-stained", cell_diameter=model.cell_diameter_px, infected_fraction=0.3,
                   seed=6)
    plane = np.moveaxis(f.image, -1, 0).astype(np.float32)
    other = np.clip(np.moveaxis(restained(plane, np.array([0.85, 0.95, 0.9]), np.array([1.6, 0.7, 1.2])), 0, -1),
                    0, 255).astype(np.uint8)
    tifffile.imwrite(tmp_path / "field.tif", other)
    tifffile.imwrite(tmp_path / "cells.tif", f.cells.astype(np.int32))
    settings = DetectSettings(cell_diameter=model.cell_diameter_px, calibration="model")
    whole = detect(other, "YXS", resolve(model), labels=f.cells, settings=settings)
    assert whole.provenance["intensity_matching"]["kind"] == "stain"
    report = detect_run.run_detect([tmp_path / "field.tif"], ["field"], ScorerSpec(tiny_model_file("brightfield-stained")),
                                   settings, str(tmp_path / "out"), InProcessRunner(), labels=str(tmp_path / "cells.tif"),
                                   core=128)
    (outcome,) = report.outcomes
    assert outcome.ok, outcome.message
    blocks = outcome.cell_table.set_index("cell_id").sort_index()
    single = whole.cell_table.set_index("cell_id").sort_index()
    half = model.crop_size / 2 + 1
    inside = ((single["y"] >= half) & (single["y"] <= other.shape[0] - half)
              & (single["x"] >= half) & (single["x"] <= other.shape[1] - half))
    assert inside.sum() >= 10
    np.testing.assert_allclose(blocks.loc[inside, "score"], single.loc[inside, "score"], atol=1e-4)
