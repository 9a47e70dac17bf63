"""The Detect widget's state, without Qt or a display."""
from __future__ import annotations

import copy
import subprocess
import sys

import pytest

from _tiny_models import tiny_model, tiny_model_file

from napari_supn_anomaly.errors import InputError, ModelFileError
from napari_supn_anomaly.pipeline.sensitivity import DEFAULT_FPR, STAINED_DEFAULT_FPR
from napari_supn_anomaly.pipeline.stacks import DetectSettings, detect
from napari_supn_anomaly.scoring import default_scorer_name
from napari_supn_anomaly.widgets.detect_state import DetectState
from napari_supn_anomaly.widgets.model_registry import ModelRegistry


@pytest.fixture
def state():
    registry = ModelRegistry()
    registry.register("tiny", tiny_model("fluorescence"))
    state = DetectState(registry)
    state.choose_model("tiny")
    return state


def test_state_imports_no_gui():
    code = ("import sys, napari_supn_anomaly.widgets.detect_state; "
            "print([m for m in ('napari', 'qtpy', 'magicgui', 'PyQt5', 'PyQt6', 'PySide2', 'PySide6') "
            "if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_rethreshold_recuts_the_result_without_running_the_model(state, monkeypatch):
    from napari_supn_anomaly.synthetic import make_field

    model = state.model
    assert state.scorer_name == default_scorer_name(model)
    scorer = state.scorer()
    field = make_field((256, 256), "fluorescence", seed=3)
    first_fpr = state.fpr
    found = detect(field.image, "YX", scorer, settings=DetectSettings(fpr=first_fpr))
    state.keep_result(found, scorer)
    monkeypatch.setattr(type(model), "iter_score_batches", lambda *a, **k: pytest.fail("the model ran"))

    state.fpr = 0.2
    recut = state.rethreshold()
    assert recut is state.result
    assert recut.threshold == pytest.approx(model.threshold_for_fpr(0.2, scorer.name)) == state.threshold()
    assert recut.provenance["target_fpr"] == 0.2
    assert len(recut.candidate_table) > len(found.candidate_table)
    assert (recut.candidate_table["score"] >= recut.threshold - 1e-5).all()

    state.min_area = 6
    assert (state.rethreshold().candidate_table["area"] >= 6).all()
    state.fpr, state.min_area = first_fpr, 1
    assert len(state.rethreshold().candidate_table) == len(found.candidate_table)


def test_a_file_that_is_not_a_scorer_network_changes_nothing(state, tmp_path):
    model = state.model
    before = (state.scorer_name, state.scorer_choices(), state.describe_scorer(),
              copy.deepcopy(model.metadata.get("calibration")))
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)
    with pytest.raises(ModelFileError, match="not a self-supervised scorer network"):
        state.load_scorer_network(tiny_model_file("fluorescence"))   # an anomaly model, not a network
    with pytest.raises(ModelFileError):
        state.load_scorer_network(junk)
    with pytest.raises(ModelFileError, match="not found"):
        state.load_scorer_network(tmp_path / "missing.safetensors")
    after = (state.scorer_name, state.scorer_choices(), state.describe_scorer(), model.metadata.get("calibration"))
    assert after == before


def test_model_files_are_listed_under_their_name_then_their_file(state):
    path = tiny_model_file("fluorescence")
    assert state.load_model_file(path) == "tiny-fluorescence"
    assert state.load_model_file(path) == "tiny-fluorescence (tiny-fluorescence.safetensors)"
    assert {"tiny", "tiny-fluorescence", "tiny-fluorescence (tiny-fluorescence.safetensors)"} <= set(
        state.model_choices())
    assert state.model_choice == "tiny-fluorescence (tiny-fluorescence.safetensors)"
    assert state.scorer_name in state.scorer_choices()


def test_without_a_model_nothing_runs(state):
    state.choose_model(None)
    assert state.model is None and state.scorer_choices() == [] and state.threshold() is None
    assert state.rethreshold() is None
    with pytest.raises(InputError, match="choose a model"):
        state.scorer()
    with pytest.raises(InputError, match="choose a model"):
        state.load_scorer_network("any.safetensors")


def test_each_model_starts_at_its_own_sensitivity_and_one_the_person_chose_stays():
    registry = ModelRegistry()
    registry.register("fl", tiny_model("fluorescence"))
    registry.register("stained", tiny_model("brightfield-stained"))
    state = DetectState(registry)
    state.choose_model("stained")
    assert state.fpr == STAINED_DEFAULT_FPR == 0.01
    state.choose_model("fl")
    assert state.fpr == DEFAULT_FPR == 0.05
    state.fpr = 0.03
    state.choose_model("stained")
    assert state.fpr == 0.03
