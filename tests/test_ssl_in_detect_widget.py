"""The Detect widget with self-supervised scorers: the shipped network, a user's file, bad files (xvfb-run)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from _tiny_models import tiny_model

napari = pytest.importorskip("napari")

PLUGIN = "napari-supn-anomaly"


def open_widget(viewer):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Detect anomalies")
    return widget


@pytest.fixture
def errors(monkeypatch):
    from napari_supn_anomaly.widgets import detect_widget as dw

    shown = []
    monkeypatch.setattr(dw, "show_error", shown.append)
    return shown


def test_shipped_ssl_scorer_runs_on_the_sample(make_napari_viewer, qtbot, errors):
    torch.set_num_threads(1)
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "synthetic_fluorescence")
    image = viewer.layers["synthetic_fluorescence_stack"]
    image.data = image.data[:1]  # one plane keeps the test fast
    widget = open_widget(viewer)
    widget.select_model("fluorescence-rbc")
    widget.select_image(image)
    assert "ssl-ppii" in widget.scorer_choices
    widget.select_scorer("ssl-ppii")
    assert widget.scorer_text.startswith("needs training")
    assert "shipped with fluorescence-rbc" in widget.scorer_text
    widget.select_scorer("supn")
    assert widget.scorer_text.startswith("instant")
    widget.select_scorer("ssl-ppii")
    assert widget.state.threshold() is not None

    worker = widget.run()
    assert worker is not None, widget.status_text
    events = []
    worker.yielded.connect(events.append)
    qtbot.waitUntil(lambda: not widget.running, timeout=180_000)
    assert not errors, errors
    result = widget.result
    assert result.provenance["scorer"] == "ssl-ppii"
    # calibrated on the field's own cells (or the model's healthy cells when too few): one threshold, recorded
    assert result.provenance["threshold"] == pytest.approx(result.provenance["calibration"]["threshold"])
    assert 0 <= result.heatmap.min() and result.heatmap.max() <= 1 and result.heatmap.max() > 0
    assert events[-1].stage == "plane done"


def test_scorer_network_button_adds_a_users_network_and_refuses_bad_files(make_napari_viewer, tmp_path, errors):
    from napari_supn_anomaly import scoring
    from napari_supn_anomaly.widgets.model_registry import register_model, unregister_model

    torch.set_num_threads(1)
    model = tiny_model("fluorescence")
    rng = np.random.default_rng(0)
    crops = (rng.random((12, 1, model.crop_size, model.crop_size)) * 40 + 60).astype(np.float32)
    masks = np.zeros((12, model.crop_size, model.crop_size), bool)
    masks[:, 6:-6, 6:-6] = True
    events = list(scoring.train_calibrated_network("ssl-fpi", model.copy(), crops[:8], masks[:8], crops[8:],
                                                   masks[8:], iterations=5, pool_size=8))
    network, calibration = events[-1]
    good = scoring.save_network(tmp_path / "tiny.ssl-fpi", network, model, calibration)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"\x00" * 64)

    register_model("tiny fluorescence ssl", model.copy())
    try:
        viewer = make_napari_viewer()
        viewer.open_sample(PLUGIN, "synthetic_fluorescence")
        layers_before = [(layer.name, id(layer.data)) for layer in viewer.layers]
        widget = open_widget(viewer)

        # a network made for the tiny model does not fit the built-in one
        widget.select_model("fluorescence-rbc")
        scorer_before, choices_before = widget.state.scorer_name, widget.scorer_choices
        assert widget.load_scorer_network(good) is False
        assert "does not fit the model 'fluorescence-rbc'" in errors[-1]
        assert widget.load_scorer_network(junk) is False
        assert "not a napari-supn-anomaly model file" in errors[-1]
        assert widget.load_scorer_network(tmp_path / "missing.safetensors") is False
        assert "not found" in errors[-1]
        assert widget.state.scorer_name == scorer_before and widget.scorer_choices == choices_before
        widget.select_scorer("ssl-fpi")
        assert "shipped with fluorescence-rbc" in widget.scorer_text  # the built-in network stays in use

        # it fits the model it was made for: added to the menu and selected, with a threshold
        widget.select_model("tiny fluorescence ssl")
        assert "ssl-fpi" not in widget.scorer_choices
        n_errors = len(errors)
        assert widget.load_scorer_network(good) is True
        assert len(errors) == n_errors
        assert widget.state.scorer_name == "ssl-fpi" and "ssl-fpi" in widget.scorer_choices
        assert "network: tiny.ssl-fpi.safetensors" in widget.scorer_text
        assert widget.state.threshold() is not None
        assert [(layer.name, id(layer.data)) for layer in viewer.layers] == layers_before
    finally:
        unregister_model("tiny fluorescence ssl")
