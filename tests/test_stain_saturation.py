"""The 'supn+saturation' scorer: SUPN's score and the stain's saturation on their healthy log scales."""
from __future__ import annotations

import numpy as np
import pytest

from _field_cells import field_cell_crops, field_cells
from _tiny_models import tiny_model
from napari_supn_anomaly.errors import ScorerUnavailable
from napari_supn_anomaly.evaluation.metrics import auroc
from napari_supn_anomaly.pipeline.stacks import DetectSettings, choose_run_threshold, detect, run_to_end
from napari_supn_anomaly.scoring import available_scorers, calibrate, resolve
from napari_supn_anomaly.supn import stain_saturation
from napari_supn_anomaly.supn.ensemble import MemberScale
from napari_supn_anomaly.synthetic import make_field

NAME = "supn+saturation"


def _pale_crops(n: int = 3, size: int = 16) -> np.ndarray:
    crops = np.empty((n, 3, size, size), np.float32)
    crops[:] = np.array([200.0, 170.0, 175.0], np.float32)[None, :, None, None]  # a pale pink cell
    return crops


def test_a_cells_saturation_counts_its_own_pixels_only():
    crops = _pale_crops()
    masks = np.zeros((3, 16, 16), bool)
    masks[:, 4:12, 4:12] = True
    crops[1, :, 7:9, 7:9] = np.array([120.0, 40.0, 150.0])[:, None, None]  # a purple dot inside the cell
    crops[2, :, 0:2, 0:2] = np.array([120.0, 40.0, 150.0])[:, None, None]  # the same dot outside it
    saturation = stain_saturation.cell_saturation(crops, masks)
    assert saturation[1] > 2 * saturation[0]
    assert saturation[2] == pytest.approx(saturation[0])


def test_a_crops_saturation_is_numpys_percentile_of_its_masked_pixels_or_of_the_crop_when_empty():
    rng = np.random.default_rng(3)
    crops = rng.uniform(0, 255, (40, 3, 24, 24)).astype(np.float32)
    masks = rng.random((40, 24, 24)) < rng.random((40, 1, 1))
    masks[0] = False
    masks[1] = False
    masks[1, 5, 5] = True
    saturation = stain_saturation.saturation_map(crops)
    expected = [np.percentile(s[m] if m.any() else s, stain_saturation.SATURATION_PERCENTILE)
                for s, m in zip(saturation, masks)]
    np.testing.assert_allclose(stain_saturation.cell_saturation(crops, masks), expected, rtol=0, atol=1e-6)
    assert stain_saturation.cell_saturation(crops[:0], masks[:0]).shape == (0,)


def test_the_cells_score_is_the_maximum_of_its_map_and_rises_with_its_saturation():
    rng = np.random.default_rng(0)
    maps = rng.gamma(2.0, 10.0, size=(2, 16, 16)).astype(np.float32)
    maps[1] = maps[0]
    scale = MemberScale(np.log(20.0), 0.5)
    combined = stain_saturation.combine(maps, np.array([0.2, 0.4]), scale, MemberScale(np.log(0.2), 0.1))
    assert combined[1].max() > combined[0].max()
    # the order of pixels within a cell is SUPN's: the saturation term is one number per cell
    assert np.array_equal(np.argsort(combined[0], axis=None), np.argsort(maps[0], axis=None))


def _healthy_cells():
    return field_cells("brightfield-stained", seed=4)


def _healthy_crops(model):
    return field_cell_crops(model, seed=4)


def test_calibrated_on_healthy_cells_it_detects_on_a_stained_field():
    model = tiny_model("brightfield-stained").copy()
    with pytest.raises(ScorerUnavailable, match="no scorer 'supn\\+saturation'"):
        resolve(model, NAME)
    crops, masks = _healthy_crops(model)
    calibrate(resolve(model, NAME, require_calibration=False), crops, masks)
    assert NAME in available_scorers(model)
    members = model.metadata["calibration"][NAME]["members"]
    assert set(members) == {"supn", "saturation"} and all(m["spread"] > 0 for m in members.values())
    out = resolve(model, NAME).score(crops[:5], masks[:5])
    assert np.isfinite(out.maps).all()
    # a cell's score is the max of its map inside the cell, as for every scorer
    np.testing.assert_allclose(out.scores, [m[k].max() for m, k in zip(out.maps, masks[:5])], rtol=1e-5)

    field = make_field((192, 192), "brightfield-stained", cell_diameter=30, infected_fraction=0.3, seed=3)
    result = detect(field.image, "YXS", resolve(model, NAME), settings=DetectSettings(fpr=0.05))
    assert result.provenance["scorer"] == NAME
    assert np.isfinite(result.heatmap).all()
    table = result.cell_table
    infected = np.array([(field.parasites[result.cells == c] > 0).any() for c in table["cell_id"]])
    assert 0 < infected.sum() < len(infected)
    assert auroc(infected.astype(int), table["score"].to_numpy()) > 0.8
    # its score is a sum of log scores: a slide's calibration fits it as it is (ScorerInfo.score_scale),
    # also when another stain moved every score above 0
    shifted = 5.0 + np.random.default_rng(0).standard_normal(200)
    choice = choose_run_threshold(resolve(model, NAME), DetectSettings(), shifted)
    assert choice.method == "slide" and choice.fit["scale"] == "linear"


def test_a_fluorescence_model_says_it_cannot_use_the_stains_saturation():
    model = tiny_model("fluorescence").copy()
    crops = np.zeros((4, 1, model.crop_size, model.crop_size), np.float32)
    masks = np.ones((4, model.crop_size, model.crop_size), bool)
    with pytest.raises(ScorerUnavailable, match="stained \\(RGB\\) cells"):
        calibrate(resolve(model, NAME, require_calibration=False), crops, masks)


def test_it_is_the_default_only_once_calibrated_and_recalibration_keeps_it():
    from napari_supn_anomaly.scoring import default_scorer_name
    from napari_supn_anomaly.training.fit import calibrate as calibrate_model

    model = tiny_model("brightfield-stained").copy()
    model.metadata["default_scorer"] = NAME
    assert default_scorer_name(model) == "supn"  # not calibrated: the model's own likelihood
    crops, masks = _healthy_crops(model)
    # what a fine-tune does with its held-back cells: every own scorer and the default are calibrated again
    table = calibrate_model(model, crops, masks)
    assert set(table) == set(model.scorers) | {NAME}
    assert default_scorer_name(model) == NAME and resolve(model).name == NAME


def test_a_model_fine_tuned_from_one_whose_default_it_is_keeps_it_calibrated():
    from napari_supn_anomaly.models import AnomalyModel
    from napari_supn_anomaly.training import TrainConfig, fit_anomaly_model
    from napari_supn_anomaly.training.fit import calibrate as calibrate_model

    base = tiny_model("brightfield-stained").copy()
    base.metadata["default_scorer"] = NAME
    calibrate_model(base, *_healthy_crops(base))
    images, masks = _healthy_cells()
    tuned = [e for e in fit_anomaly_model(images, masks, name="tuned", modality="brightfield-stained", init=base,
                                          cfg=TrainConfig(seed=0, batch_size=8, stage1_iters=3, stage2_iters=2),
                                          cell_diameter_px=30, holdout_fraction=0.3)
             if isinstance(e, AnomalyModel)][0]
    assert tuned.metadata["default_scorer"] == NAME and NAME in tuned.metadata["calibration"]
    assert resolve(tuned).name == NAME


def test_on_a_field_a_cells_saturation_is_read_at_the_fields_resolution():
    plane = np.empty((3, 64, 64), np.float32)
    plane[:] = np.array([200.0, 170.0, 175.0], np.float32)[:, None, None]
    labels = np.zeros((64, 64), np.int32)
    labels[4:24, 4:24] = 1       # a cell of 20 px with a ring's dot of 2 x 2 px
    labels[46:62, 46:62] = 2     # a plain cell
    labels[0:2, 60:64] = 3       # a sliver that lies under an annotation mark
    plane[:, 13:15, 13:15] = np.array([120.0, 40.0, 150.0])[:, None, None]
    hidden = labels == 3
    values = stain_saturation.field_cell_saturation(plane, labels, np.array([1, 2, 3, 4]), hidden)
    saturation = stain_saturation.saturation_map(plane)
    for i, cell in enumerate((1, 2)):
        assert values[i] == pytest.approx(np.percentile(saturation[labels == cell], stain_saturation.SATURATION_PERCENTILE))
    assert values[0] > 3 * values[1]
    assert np.isnan(values[2]) and np.isnan(values[3])  # all hidden; not in the labels
    # the same dot in a crop resampled to a quarter of the size is averaged into its cell
    blurred = plane.reshape(3, 16, 4, 16, 4).mean((2, 4))
    assert stain_saturation.cell_saturation(blurred[None], (labels[::4, ::4] == 1)[None])[0] < values[0] / 2


def test_a_field_is_scored_with_the_saturation_of_the_field_as_recorded():
    """The model's crops come from the plane (stain-matched); the cell term from the field as recorded."""
    from napari_supn_anomaly.pipeline.fields import iter_score_field

    model = tiny_model("brightfield-stained").copy()
    calibrate(resolve(model, NAME, require_calibration=False), *_healthy_crops(model))
    scorer = resolve(model, NAME)
    field = make_field((160, 160), "brightfield-stained", cell_diameter=30, infected_fraction=0.0, seed=5)
    plane = np.moveaxis(field.image, -1, 0).astype(np.float32)
    labels = field.cells.astype(np.int32)

    def run(recorded=None):
        return run_to_end(iter_score_field(plane, labels, scorer, 30.0, recorded=recorded))

    plain = run()
    ids = plain.cell_ids
    target = ids[len(ids) // 2]
    ys, xs = np.nonzero(labels == target)
    recorded = plane.copy()
    cy, cx = int(np.median(ys)), int(np.median(xs))
    recorded[:, cy - 1:cy + 2, cx - 1:cx + 2] = np.array([90.0, 20.0, 140.0])[:, None, None]  # a ring's dot
    dotted = run(recorded)
    changed = ids == target
    assert dotted.model_scores[changed][0] > plain.model_scores[changed][0] + 0.1
    np.testing.assert_allclose(dotted.model_scores[~changed], plain.model_scores[~changed], rtol=1e-6)


def test_a_tiled_plane_reads_each_cells_saturation_on_the_recorded_pixels(monkeypatch):
    from napari_supn_anomaly.pipeline import tiles

    model = tiny_model("brightfield-stained").copy()
    calibrate(resolve(model, NAME, require_calibration=False), *_healthy_crops(model))
    members = {k: MemberScale.from_dict(v) for k, v in model.metadata["calibration"][NAME]["members"].items()}
    # cells at the model's size (no resampling), the stain always matched, and the plane cut in tiles
    diameter = model.cell_diameter_px
    field = make_field((256, 224), "brightfield-stained", cell_diameter=diameter, infected_fraction=0.3, seed=8)
    settings = DetectSettings(cell_diameter=diameter, fpr=0.1, intensity="match")
    monkeypatch.setattr(tiles, "AUTO_TILE_PIXELS", 160 * 160)
    monkeypatch.setattr(tiles, "CORE_PX", 96)
    combined = detect(field.image, "YXS", resolve(model, NAME), labels=field.cells, settings=settings)
    supn = detect(field.image, "YXS", resolve(model, "supn"), labels=field.cells, settings=settings)
    assert combined.provenance["tiles"] > 1 and combined.provenance["intensity_matching"]["applied"]
    ids = combined.cell_table["cell_id"].to_numpy()
    assert supn.cell_table["cell_id"].tolist() == ids.tolist()
    term = combined.cell_table["score"].to_numpy() - stain_saturation.on_log_scale(
        supn.cell_table["score"].to_numpy(), members["supn"])
    recorded = stain_saturation.field_cell_saturation(np.moveaxis(field.image, -1, 0), field.cells, ids)
    expected = stain_saturation.SATURATION_WEIGHT * members["saturation"].apply(np.log(recorded))
    np.testing.assert_allclose(term, expected, rtol=1e-3, atol=1e-3)


def test_a_fine_tune_calibrates_the_saturation_as_detection_reads_it_on_its_fields():
    """Held-back cells marked on fields of larger cells: their saturation is read on the raw cell, as
    detection reads it on the field, not on the model's smaller crop."""
    from scipy import ndimage as ndi

    from napari_supn_anomaly.cells import standardise_crops
    from napari_supn_anomaly.progress import Progress
    from napari_supn_anomaly.training.finetune import FinetuneSettings, finetune
    from napari_supn_anomaly.training.fit import calibrate as calibrate_model
    from napari_supn_anomaly.training.fit import held_back_cell_values, split_holdout
    from napari_supn_anomaly.training.regions import TrainingCells

    base = tiny_model("brightfield-stained").copy()
    base.metadata["default_scorer"] = NAME
    calibrate_model(base, *_healthy_crops(base))
    images, masks = _healthy_cells()
    # cells imaged at 3x the magnification, each with a small purple dot that resampling averages away
    images = [ndi.zoom(img, (1, 3, 3), order=1) for img in images]
    masks = [ndi.zoom(m.astype(np.uint8), 3, order=0).astype(bool) for m in masks]
    for img, m in zip(images, masks):
        ys, xs = np.nonzero(m)
        cy, cx = int(np.median(ys)), int(np.median(xs))
        img[:, cy:cy + 3, cx:cx + 3] = np.array([120.0, 40.0, 150.0])[:, None, None]
    cells = TrainingCells(images, masks, [{"image": "f.png", "y": 40.0 * i, "x": 5.0, "how": "region"}
                                          for i in range(len(images))], [])
    settings = FinetuneSettings(seed=2, modality="brightfield-stained", minutes=5.0, mean_iters=2, precision_iters=2,
                                batch_size=8, device="cpu", holdout_fraction=0.3)
    tuned = [e for e in finetune(base, cells, settings, compare=False) if not isinstance(e, Progress)][0]
    assert tuned.metadata["default_scorer"] == NAME
    _, hold = split_holdout(len(cells), settings.holdout_fraction, settings.seed)
    on_field = held_back_cell_values(NAME, [images[i] for i in hold], [masks[i] for i in hold])
    stored = tuned.metadata["calibration"][NAME]["members"]["saturation"]
    expected = stain_saturation.log_scale(on_field)
    assert stored["centre"] == pytest.approx(expected.centre) and stored["spread"] == pytest.approx(expected.spread)
    # on the model's crops the dots fade: another scale, which detection (reading the field) would not match
    crops, crop_masks, _ = standardise_crops([images[i] for i in hold], [masks[i] for i in hold], tuned.geometry)
    on_crops = stain_saturation.log_scale(stain_saturation.cell_saturation(crops, crop_masks))
    assert on_crops.spread < expected.spread / 2


def test_a_calibration_records_the_terms_settings_and_scores_with_them_after_the_defaults_change(monkeypatch):
    import dataclasses

    from napari_supn_anomaly.scoring import cell_terms

    model = tiny_model("brightfield-stained").copy()
    crops, masks = _healthy_crops(model)
    crops[0, :, 10:13, 10:13] = np.array([120.0, 40.0, 150.0])[:, None, None]  # one cell with a purple dot
    calibrate(resolve(model, NAME, require_calibration=False), crops, masks)
    recorded = model.metadata["calibration"][NAME][cell_terms.SETTINGS_KEY]
    assert recorded == {"weight": stain_saturation.SATURATION_WEIGHT,
                        "percentile": stain_saturation.SATURATION_PERCENTILE}
    before = resolve(model, NAME).score(crops, masks).scores
    term = cell_terms.CELL_TERMS[NAME]
    monkeypatch.setitem(cell_terms.CELL_TERMS, NAME, dataclasses.replace(
        term, defaults={"weight": 2.0, "percentile": 90.0}))
    # the model keeps scoring as it was calibrated ...
    np.testing.assert_allclose(resolve(model, NAME).score(crops, masks).scores, before, rtol=1e-6)
    # ... a calibration made before settings were recorded scores with the settings of then ...
    del model.metadata["calibration"][NAME][cell_terms.SETTINGS_KEY]
    monkeypatch.setitem(cell_terms.CELL_TERMS, NAME, dataclasses.replace(
        term, defaults={"weight": 2.0, "percentile": 90.0}, before_recorded=recorded))
    np.testing.assert_allclose(resolve(model, NAME).score(crops, masks).scores, before, rtol=1e-6)
    # ... and a new calibration takes and records the new defaults
    calibrate(resolve(model, NAME, require_calibration=False), crops, masks)
    assert model.metadata["calibration"][NAME][cell_terms.SETTINGS_KEY] == {"weight": 2.0, "percentile": 90.0}
    assert not np.allclose(resolve(model, NAME).score(crops, masks).scores, before)
