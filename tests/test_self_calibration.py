"""Self-calibration on the slide itself: it holds the requested share of healthy cells flagged at
0-20% parasitemia, falls back to the model's calibration with few cells, re-cuts live without the
model, treats a stack as one slide, pools fields (the inputs of one `detect` run unless
--calibrate-per-input), points out a field far out of line with the others it was pooled with, and is
the default of the CLI and the widget."""
from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import tifffile
from scipy.stats import norm
from _tiny_models import tiny_model, tiny_model_file

from napari_supn_anomaly.cli import main
from napari_supn_anomaly.pipeline.self_calibration import (
    CENTRE_TOLERANCE,
    HEALTHY_SHAPE,
    LIKE_MODEL,
    MIN_CELLS,
    SPREAD_FACTOR,
    HealthyFit,
    ThresholdChoice,
    calibrate_pooled,
    choose_threshold,
    fit_healthy,
    outlying_fields,
    recentred,
    scores_like_model,
)
from napari_supn_anomaly.pipeline.stacks import DetectSettings, detect
from napari_supn_anomaly.scoring import resolve
from napari_supn_anomaly.synthetic import make_field

PARASITEMIA = (0.0, 0.05, 0.1, 0.2)


def _slide(rng, n: int, parasitemia: float, centre=3.0, spread=0.25):
    """Cell scores of one synthetic slide: healthy log scores with the long upper tail of real slides'
    (HEALTHY_SHAPE), infected cells far in the tail."""
    n_infected = round(n * parasitemia)
    healthy = np.exp(centre + spread * HEALTHY_SHAPE.rvs(n - n_infected, random_state=rng))
    infected = np.exp(centre + spread * rng.uniform(4.0, 8.0, n_infected))
    return np.concatenate([healthy, infected])


def _true_rate(threshold: float, centre=3.0, spread=0.25) -> float:
    return float(HEALTHY_SHAPE.sf((np.log(threshold) - centre) / spread))


@pytest.mark.parametrize("parasitemia", PARASITEMIA)
@pytest.mark.parametrize("fpr", [0.01, 0.05])
def test_the_requested_share_of_healthy_cells_is_flagged_at_any_parasitemia(parasitemia, fpr):
    rng = np.random.default_rng(1)
    rates = [_true_rate(choose_threshold(_slide(rng, 400, parasitemia), fpr).threshold) for _ in range(40)]
    assert 0.7 * fpr < np.mean(rates) < 1.4 * fpr
    # the quantile of all cells, which is what calibrating on all cells as if healthy would give,
    # flags far fewer healthy cells once a fifth of the cells are infected
    if parasitemia == 0.2:
        naive = [_true_rate(np.quantile(_slide(rng, 400, parasitemia), 1 - fpr)) for _ in range(10)]
        assert np.mean(naive) < 0.1 * fpr


def test_infected_cells_that_overlap_the_healthy_scores_do_not_widen_the_fit():
    # infected cells only push scores up, but many stay among the healthy ones: 1.5-4 spreads up
    rng = np.random.default_rng(6)
    rates = []
    for _ in range(40):
        healthy = rng.normal(3.0, 0.25, 360)
        infected = 3.0 + 0.25 * (rng.normal(0, 1, 40) + rng.uniform(1.5, 4.0, 40))
        rates.append(_true_rate(choose_threshold(np.exp(np.concatenate([healthy, infected])), 0.05).threshold))
    assert 0.5 * 0.05 < np.mean(rates) < 1.4 * 0.05


@pytest.mark.parametrize("parasitemia", (0.0, 0.2))
def test_scores_that_are_already_logarithms_are_fitted_as_they_are(parasitemia):
    # a standardised log score (supn+saturation) that another stain shifted above 0: read from the scores
    # it would be fitted on the log of a logarithm, whose compressed tail flagged 0.05-0.3 healthy cells in
    # 100 on MalariaNet slides where 1 was asked; the scorer says to fit it as it is
    rng = np.random.default_rng(2)
    fpr = 0.01
    rates, naive = [], []
    for _ in range(40):
        logs = np.log(_slide(rng, 400, parasitemia, spread=0.75))
        rates.append(_true_rate(np.exp(choose_threshold(logs, fpr, scale="linear").threshold), spread=0.75))
        naive.append(_true_rate(np.exp(choose_threshold(logs, fpr).threshold), spread=0.75))
    assert 0.7 * fpr < np.mean(rates) < 1.4 * fpr
    assert np.mean(naive) < 0.5 * fpr
    assert fit_healthy(np.log(_slide(rng, 400, parasitemia)), scale="linear").scale == "linear"
    with pytest.raises(ValueError, match="unknown score scale"):
        fit_healthy(np.ones(10) + rng.random(10), scale="cubic")


@pytest.mark.parametrize("parasitemia", PARASITEMIA)
def test_the_healthy_cells_are_counted(parasitemia):
    rng = np.random.default_rng(2)
    fit = fit_healthy(_slide(rng, 1000, parasitemia))
    assert fit.n_healthy == pytest.approx(1000 * (1 - parasitemia), rel=0.05)
    assert fit.healthy_fpr(fit.threshold(0.03)) == pytest.approx(0.03)


@pytest.mark.parametrize("parasitemia", (0.0, 0.2))
@pytest.mark.parametrize("fpr", [0.01, 0.05])
def test_probabilities_near_1_get_a_threshold_below_1(parasitemia, fpr):
    """A self-supervised scorer gives probabilities (a sigmoid). On another lab's slide its healthy
    cells score about 0.9: fitted on the log scale, the threshold came out above 1 and no cell could
    ever be flagged. On the logit scale the requested share of healthy cells is flagged."""
    rng = np.random.default_rng(7)
    rates = []
    for _ in range(40):
        n_infected = round(400 * parasitemia)
        healthy_logits = 2.2 + 0.6 * HEALTHY_SHAPE.rvs(400 - n_infected, random_state=rng)
        logits = np.concatenate([healthy_logits, 2.2 + 0.6 * rng.uniform(4.0, 8.0, n_infected)])
        scores = (1.0 / (1.0 + np.exp(-logits))).astype(np.float32)
        choice = choose_threshold(scores, fpr)
        assert choice.method == "slide" and 0 < choice.threshold < 1
        threshold_logit = np.log(choice.threshold / (1 - choice.threshold))
        rates.append(float(HEALTHY_SHAPE.sf((threshold_logit - 2.2) / 0.6)))
    assert 0.7 * fpr < np.mean(rates) < 1.4 * fpr


def test_another_labs_shift_moves_the_threshold_with_it():
    rng = np.random.default_rng(3)
    here = choose_threshold(_slide(rng, 500, 0.05), 0.01).threshold
    shifted = choose_threshold(_slide(rng, 500, 0.05, centre=3.6), 0.01).threshold
    assert shifted / here == pytest.approx(np.exp(0.6), rel=0.1)


def test_few_cells_fall_back_to_the_models_calibration():
    rng = np.random.default_rng(4)
    few = _slide(rng, MIN_CELLS - 1, 0.0)
    choice = choose_threshold(few, 0.05, "slide", model_threshold=lambda fpr: 100.0 * (1 - fpr))
    assert choice.method == "model" and choice.requested == "slide" and choice.threshold == 95.0
    assert f"{MIN_CELLS - 1} cells are too few" in choice.reason and "too few" in choice.describe()
    assert choice.expected_false_candidates == pytest.approx(0.05 * (MIN_CELLS - 1))
    with pytest.raises(ValueError, match="too few"):
        choose_threshold(few, 0.05, "slide", model_threshold=None)
    enough = choose_threshold(_slide(rng, MIN_CELLS, 0.0), 0.05, "slide", model_threshold=lambda fpr: 1.0)
    assert enough.method == "slide" and "this slide" in enough.describe()
    assert choose_threshold(_slide(rng, 500, 0.0), 0.05, "model", model_threshold=lambda fpr: 7.0).threshold == 7.0
    with pytest.raises(ValueError, match="unknown calibration"):
        choose_threshold(few, 0.05, "patient")


def _stored_healthy(n=748, centre=3.0, spread=0.25):
    """A model's stored healthy scores and its threshold function (AnomalyModel.threshold_for_fpr)."""
    stored = np.exp(np.random.default_rng(11).normal(centre, spread, n))
    return stored, lambda fpr: float(np.quantile(stored, 1 - fpr))


def test_a_slide_that_scores_like_the_models_healthy_cells_uses_the_models_calibration():
    stored, model_threshold = _stored_healthy()
    rng = np.random.default_rng(12)
    for _ in range(5):  # the model's healthy distribution, 20% infected cells overlapping its upper half
        healthy = np.exp(rng.normal(3.0, 0.25, 240))
        infected = np.exp(3.0 + 0.25 * (rng.normal(0, 1, 60) + 2.5))
        choice = choose_threshold(np.concatenate([healthy, infected]), 0.05, model_threshold=model_threshold,
                                  model_healthy=stored)
        assert choice.method == "model" and choice.requested == "slide" and choice.reason == LIKE_MODEL
        # the model's threshold, moved by as much as the slide's healthy centre lies from the model's
        offset = choice.fit["centre"] - fit_healthy(stored, healthy_share=1.0).centre
        assert abs(offset) < 0.25 and choice.threshold == pytest.approx(model_threshold(0.05) * np.exp(offset))
        assert "calibrated on the model's healthy cells: this slide's healthy cells score like the model's own" \
            in choice.describe()
        assert choice.n_healthy == pytest.approx(choice.fit["healthy_share"] * 300)
        # the slide fit alone, widened by the overlapping infected cells, flags fewer of them
        alone = choose_threshold(np.concatenate([healthy, infected]), 0.05, model_threshold=model_threshold)
        assert alone.method == "slide" and alone.threshold > choice.threshold
        assert np.mean(infected >= choice.threshold) > np.mean(infected >= alone.threshold)


@pytest.mark.parametrize("shift", [-0.5, 0.3, 0.6])
def test_a_slide_like_the_model_but_shifted_gets_the_models_threshold_moved_with_it(shift):
    """Centres up to CENTRE_TOLERANCE model spreads apart pass as like the model. Chula fields sit
    0.6-0.9 spreads above giemsa-rbc's, and the model's threshold unmoved flagged 11-29 of 100 healthy
    cells when 5 were asked (on synthetic slides shifted 0.5 spreads: 14 of 100)."""
    stored, model_threshold = _stored_healthy()
    rng = np.random.default_rng(17)
    rates = []
    centre = 3.0 + shift * 0.25
    for _ in range(20):  # healthy cells like the model's (log-normal), shifted; 20% infected far above
        scores = np.exp(np.r_[rng.normal(centre, 0.25, 240), centre + 0.25 * rng.uniform(4.0, 8.0, 60)])
        choice = choose_threshold(scores, 0.05, model_threshold=model_threshold, model_healthy=stored)
        assert choice.method == "model" and choice.reason == LIKE_MODEL
        rates.append(float(norm.sf((np.log(choice.threshold) - centre) / 0.25)))
    assert 0.6 * 0.05 < np.mean(rates) < 1.4 * 0.05


@pytest.mark.parametrize("centre, spread", [(3.0 + 1.5 * 0.25, 0.25), (3.0 - 1.5 * 0.25, 0.25), (3.0, 0.75)])
def test_a_slide_that_scores_unlike_the_models_healthy_cells_is_fitted_on_itself(centre, spread):
    stored, model_threshold = _stored_healthy()
    rng = np.random.default_rng(13)
    scores = _slide(rng, 300, 0.2, centre, spread)
    choice = choose_threshold(scores, 0.05, model_threshold=model_threshold, model_healthy=stored)
    assert choice.method == "slide" and choice.threshold == choose_threshold(scores, 0.05).threshold
    assert 0.01 < _true_rate(choice.threshold, centre, spread) < 0.1


def test_the_comparison_takes_centre_and_spread_in_the_models_units():
    model = fit_healthy(np.exp(np.random.default_rng(14).normal(3.0, 0.25, 2000)))

    def like(dz, ratio):
        return scores_like_model(HealthyFit(model.centre + dz * model.spread, model.spread * ratio, 300, 1.0), model)

    assert like(0, 1) and like(0.9 * CENTRE_TOLERANCE, 1) and like(-0.9 * CENTRE_TOLERANCE, 1)
    assert not like(1.1 * CENTRE_TOLERANCE, 1) and not like(-1.1 * CENTRE_TOLERANCE, 1)
    assert like(0, 0.9 * SPREAD_FACTOR) and like(0, 1.1 / SPREAD_FACTOR)
    assert not like(0, 1.1 * SPREAD_FACTOR) and not like(0, 0.9 / SPREAD_FACTOR)
    assert not scores_like_model(HealthyFit(model.centre, model.spread, 300, 1.0, scale="linear"), model)


def test_fields_of_one_slide_pool_into_one_calibration():
    rng = np.random.default_rng(5)
    fields = [pd.DataFrame({"score": _slide(rng, 20, 0.1)}) for _ in range(6)]  # too few each, enough together
    alone = choose_threshold(fields[0]["score"], 0.05, model_threshold=lambda fpr: 1.0)
    pooled = calibrate_pooled(fields, 0.05, model_threshold=lambda fpr: 1.0)
    assert alone.method == "model" and pooled.method == "slide" and pooled.n_cells == 120
    assert pooled.threshold == choose_threshold(np.concatenate([f["score"] for f in fields]), 0.05).threshold


@pytest.mark.parametrize("seed", range(5))
def test_a_field_unlike_the_others_of_a_pooled_run_is_pointed_out(seed):
    rng = np.random.default_rng(seed)
    same = [pd.DataFrame({"score": _slide(rng, 150, p)}) for p in (0.0, 0.02, 0.05, 0.0, 0.02)]
    pooled = calibrate_pooled(same, 0.05)
    assert outlying_fields(same, pooled.threshold) == []  # one slide, parasitemia 0-5%: nothing to say
    other_lab = pd.DataFrame({"score": _slide(rng, 150, 0.0, centre=3.6)})  # a stain that moved every score
    tables = same + [other_lab]
    [odd] = outlying_fields(tables, calibrate_pooled(tables, 0.05).threshold)
    assert odd.index == 5 and odd.cells == 150 and odd.candidates / odd.cells > 2 * odd.others_share
    assert odd.describe("b.tif", "inputs").startswith(f"b.tif: {odd.candidates} of its 150 cells are candidates")
    crowded = same + [pd.DataFrame({"score": _slide(rng, 150, 0.25)})]  # or a field full of parasites
    assert [f.index for f in outlying_fields(crowded, calibrate_pooled(crowded, 0.05).threshold)] == [5]


@pytest.fixture(scope="module")
def infected_field():
    return make_field((416, 416), "fluorescence", cell_diameter=30, infected_fraction=0.2, seed=3)


@pytest.fixture(scope="module")
def field_result(infected_field):
    scorer = resolve(tiny_model("fluorescence"))
    return detect(infected_field.image, "YX", scorer, labels=infected_field.cells,
                  settings=DetectSettings(fpr=0.1, cell_diameter=30)), scorer


def test_detection_calibrates_on_the_field_itself(field_result, infected_field):
    result, scorer = field_result
    choice = result.calibration
    assert choice.method == "slide" and choice.n_cells == len(result.cell_table) >= MIN_CELLS
    assert result.provenance["calibration"]["method"] == "slide" and result.provenance["target_fpr"] == 0.1
    assert "calibrated on this slide" in result.summary() and "false candidates expected" in result.summary()
    assert choice.expected_false_candidates == pytest.approx(0.1 * choice.n_healthy)
    healthy = result.cell_table[~result.cell_table["cell_id"].isin(infected_field.infected)]
    assert 0.02 <= healthy["candidate"].mean() <= 0.25  # 10% asked, on ~70 healthy cells
    by_model = result.recalibrated(0.1, "model", scorer.threshold_for_fpr)
    assert by_model.threshold == scorer.threshold_for_fpr(0.1) and by_model.calibration.method == "model"


def test_a_run_compares_the_slide_with_the_models_stored_healthy_cells(field_result):
    from napari_supn_anomaly.pipeline.stacks import choose_run_threshold

    result, tiny = field_result
    assert choose_run_threshold(tiny, DetectSettings(fpr=0.05), tiny.calibration.healthy_scores * 10).method == \
        "slide"  # its 12 stored healthy cells are too few to compare a slide with
    model = copy.deepcopy(tiny.model)
    stored = np.exp(np.random.default_rng(16).normal(1.0, 0.3, 200))
    model.metadata["calibration"]["supn"]["healthy_scores"] = stored.tolist()
    scorer = resolve(model)
    like = np.random.default_rng(15).choice(stored, 300)  # a slide of the model's own healthy cells
    choice = choose_run_threshold(scorer, DetectSettings(fpr=0.05), like)
    assert choice.method == "model" and choice.reason == LIKE_MODEL
    offset = choice.fit["centre"] - fit_healthy(stored, healthy_share=1.0).centre
    assert choice.threshold == pytest.approx(scorer.threshold_for_fpr(0.05) * np.exp(offset))
    unlike = choose_run_threshold(scorer, DetectSettings(fpr=0.05), like * np.exp(3 * fit_healthy(stored).spread))
    assert unlike.method == "slide"
    as_run = result.recalibrated(0.05, "slide", scorer.threshold_for_fpr, stored)
    assert as_run.calibration.to_dict() == choose_run_threshold(scorer, DetectSettings(fpr=0.05),
                                                                result.cell_table["score"]).to_dict()


def test_the_slider_recuts_with_the_slides_calibration_without_the_model(field_result):
    from napari_supn_anomaly.widgets.detect_state import DetectState

    result, scorer = field_result
    state = DetectState()
    state.keep_result(result, scorer)
    state.fpr = 0.05
    recut = state.rethreshold()
    assert recut.threshold == pytest.approx(choose_threshold(result.cell_table["score"], 0.05).threshold)
    assert recut.calibration.method == "slide" and recut.candidate_table["score"].min() >= recut.threshold
    assert recut.cell_table["candidate"].sum() < result.cell_table["candidate"].sum()
    assert "calibrated on this slide" in state.describe_threshold()
    state.calibration = "model"
    assert state.rethreshold().threshold == pytest.approx(scorer.threshold_for_fpr(0.05))


def test_a_stack_is_one_slide(infected_field):
    scorer = resolve(tiny_model("fluorescence"))
    planes = np.stack([infected_field.image[:208], infected_field.image[208:]])
    labels = np.stack([infected_field.cells[:208], infected_field.cells[208:]])
    result = detect(planes, "ZYX", scorer, labels=labels, settings=DetectSettings(cell_diameter=30))
    assert result.calibration.method == "slide" and result.calibration.n_cells == len(result.cell_table)
    assert len(result.cell_table) > max(np.sum(result.cell_table["plane"] == p) for p in (0, 1))


def test_the_command_line_calibrates_on_the_slide_unless_told(tmp_path, infected_field, capsys):
    import json

    tifffile.imwrite(tmp_path / "field.tif", infected_field.image)
    model = tiny_model_file("fluorescence")
    args = ["detect", str(tmp_path / "field.tif"), "--model", model, "--cell-diameter", "30", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 0
    assert "calibrated on " in capsys.readouterr().out
    assert main(args + ["--out", str(tmp_path / "b"), "--calibration", "model"]) == 0
    assert "calibrated on the model's" in capsys.readouterr().out
    provenance = json.loads(tifffile.TiffFile(tmp_path / "b" / "field_heatmap.tif").pages[0].description)
    assert provenance["calibration"]["requested"] == "model"
    with pytest.raises(SystemExit) as exit_:
        main(args + ["--out", str(tmp_path / "c"), "--calibration", "patient"])
    assert exit_.value.code == 2


def _healthy_fields(cell_diameters):
    """Healthy synthetic fields; cells wider than the 30 px a run is told are another microscope's."""
    return [make_field((416, 416), "fluorescence", cell_diameter=d, infected_fraction=0.0, seed=4 + i)
            for i, d in enumerate(cell_diameters)]


def test_a_run_points_out_the_input_with_far_more_candidates_than_the_others(tmp_path, capsys):
    for name, f in zip(("a", "b", "c", "other_microscope"), _healthy_fields((30, 30, 30, 40))):
        tifffile.imwrite(tmp_path / f"{name}.tif", f.image)
    inputs = sorted(str(p) for p in tmp_path.glob("*.tif"))
    args = ["detect", *inputs, "--model", tiny_model_file("fluorescence"), "--cell-diameter", "30", "--quiet"]
    assert main(args + ["--out", str(tmp_path / "pooled")]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and warnings[0].startswith("warning: other_microscope.tif: ")
    assert "--calibrate-per-input" in warnings[0]
    assert main(args + ["--out", str(tmp_path / "alone"), "--calibrate-per-input"]) == 0
    assert "warning:" not in capsys.readouterr().err  # each input calibrated on its own: nothing shared


def test_a_stack_points_out_the_plane_with_far_more_candidates_than_the_others():
    fields = _healthy_fields((30, 30, 40))
    result = detect(np.stack([f.image for f in fields]), "ZYX", resolve(tiny_model("fluorescence")),
                    labels=np.stack([f.cells for f in fields]), settings=DetectSettings(cell_diameter=30))
    assert [w.split(":")[0] for w in result.warnings] == ["plane 3"]
    assert "WARNING: plane 3: " in result.summary()
    # measured at the threshold the result is cut at: above every score, no plane stands out
    assert result.with_threshold(float(result.cell_table["score"].max()) + 1.0).warnings == []


def test_the_inputs_of_one_run_share_one_threshold_unless_told(tmp_path, infected_field):
    import json

    tifffile.imwrite(tmp_path / "a.tif", infected_field.image)
    tifffile.imwrite(tmp_path / "b.tif", make_field((416, 416), "fluorescence", cell_diameter=30,
                                                     infected_fraction=0.05, seed=4).image)
    model = tiny_model_file("fluorescence")
    args = ["detect", str(tmp_path / "a.tif"), str(tmp_path / "b.tif"), "--model", model, "--cell-diameter", "30",
            "--fpr", "0.05", "--quiet"]

    def calibrations(out):
        return [json.loads(tifffile.TiffFile(out / f"{s}_heatmap.tif").pages[0].description)["calibration"]
                for s in ("a", "b")]

    assert main(args + ["--out", str(tmp_path / "pooled")]) == 0
    a, b = calibrations(tmp_path / "pooled")
    n_cells = [len(pd.read_csv(tmp_path / "pooled" / f"{s}_cells.csv")) for s in ("a", "b")]
    assert a == b and a["method"] == "slide" and a["n_cells"] == sum(n_cells)
    for s in ("a", "b"):  # every table is cut at the pooled threshold
        cells = pd.read_csv(tmp_path / "pooled" / f"{s}_cells.csv")
        assert ((cells["score"] >= a["threshold"]) == cells["candidate"].astype(bool)).all()
    assert not list((tmp_path / "pooled").glob(".*partial*"))
    assert main(args + ["--out", str(tmp_path / "alone"), "--calibrate-per-input"]) == 0
    a, b = calibrations(tmp_path / "alone")
    assert a["method"] == b["method"] == "slide" and a["threshold"] != b["threshold"]
    assert [a["n_cells"], b["n_cells"]] == n_cells


@pytest.mark.parametrize("parasitemia", [0.0, 0.2])
def test_few_cells_of_another_lab_move_the_models_calibration_to_their_centre(parasitemia):
    # the model's healthy cells centre on 3.0; this lab's stain moves every score up by 0.8 (3 model spreads)
    rng = np.random.default_rng(5)
    model_healthy = _slide(rng, 400, 0.0)
    model = lambda fpr: float(np.quantile(model_healthy, 1 - fpr))  # noqa: E731
    rates = []
    for _ in range(40):
        few = _slide(rng, 30, parasitemia, centre=3.8)
        choice = choose_threshold(few, 0.01, model_threshold=model, model_healthy=model_healthy)
        assert choice.method == "model" and "too few" in choice.reason and "moved" in choice.describe()
        rates.append(_true_rate(choice.threshold, centre=3.8))
    assert _true_rate(model(0.01), centre=3.8) > 0.3  # unmoved, a third of this lab's healthy cells are flagged
    assert np.median(rates) < 0.03
    # the model's own cells are not moved away from it
    here = choose_threshold(_slide(rng, 30, parasitemia), 0.01, model_threshold=model, model_healthy=model_healthy)
    assert _true_rate(here.threshold) < 0.05


@pytest.mark.parametrize("parasitemia", [0.0, 0.2])
@pytest.mark.parametrize("spread", [0.5, 0.125])
def test_few_cells_whose_spread_differs_from_the_models_pool_it_with_their_own(parasitemia, spread):
    # another lab whose healthy scores spread twice as wide as the model's (or half as wide): the model's
    # spread alone flags far too many of its healthy cells (or far too few); pooled with the field's own,
    # the rate moves toward the 1% asked
    rng = np.random.default_rng(5)
    model_healthy = _slide(rng, 400, 0.0)
    model = lambda fpr: float(np.quantile(model_healthy, 1 - fpr))  # noqa: E731
    fitted = fit_healthy(model_healthy, healthy_share=1.0)
    pooled, model_spread = [], []
    for _ in range(40):
        few = _slide(rng, 30, parasitemia, centre=3.8, spread=spread)
        choice = choose_threshold(few, 0.01, model_threshold=model, model_healthy=model_healthy)
        assert choice.method == "model" and "too few" in choice.reason
        pooled.append(np.log(_true_rate(choice.threshold, 3.8, spread) / 0.01))
        alone = recentred(model(0.01), fit_healthy(few, scale=fitted.scale, spread=fitted.spread), fitted)
        model_spread.append(np.log(_true_rate(alone, 3.8, spread) / 0.01))
    assert abs(np.median(pooled)) < 0.85 * abs(np.median(model_spread))
    assert np.sign(np.median(pooled)) == np.sign(np.median(model_spread))  # toward 1%, not beyond it


def test_a_model_calibrated_on_a_handful_of_cells_says_so_when_the_rate_is_beyond_them():
    healthy = np.exp(np.random.default_rng(0).normal(2.0, 0.3, 9))
    model = lambda fpr: float(np.quantile(healthy, 1 - fpr))  # noqa: E731
    scores = np.exp(np.random.default_rng(1).normal(2.0, 0.3, 20))  # too few to calibrate on the slide
    few = choose_threshold(scores, 0.05, model_threshold=model, model_healthy=healthy)
    assert few.method == "model" and few.model_cells == 9
    assert "the model's 9 held-back healthy cells (too few for 5%" in few.describe() and "under 12%" in few.describe()
    assert "held-back" not in choose_threshold(scores, 0.2, model_threshold=model, model_healthy=healthy).describe()
    many = np.exp(np.random.default_rng(2).normal(2.0, 0.3, 200))
    assert "held-back" not in choose_threshold(scores, 0.05, model_threshold=lambda f: float(np.quantile(many, 1 - f)),
                                             model_healthy=many).describe()
    assert ThresholdChoice.from_dict(few.to_dict()) == few
