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
    image = viewer.layers["fluorescence_stack"]
    image.data = image.data[:1]  # one plane keeps the test fast
    widget = open_widget(viewer)
    widget.select_model("fluorescence-rbc")
    widget._image.value = image
    assert "ssl-ppii" in widget._scorer.choices
    widget._scorer.value = "ssl-ppii"
    assert widget._scorer_info.value.startswith("needs training")
    assert "shipped with fluorescence-rbc" in widget._scorer_info.value
    widget._scorer.value = "supn"
    assert widget._scorer_info.value.startswith("instant")
    widget._scorer.value = "ssl-ppii"
    assert widget.threshold() is not None

    worker = widget.run()
    assert worker is not None, widget._status.value
    qtbot.waitUntil(lambda: widget._worker is None, timeout=180_000)
    assert not errors, errors
    result = widget.current_result
    assert result.provenance["scorer"] == "ssl-ppii"
    assert result.provenance["threshold"] == pytest.approx(widget.threshold())
    assert 0 <= result.heatmap.min() and result.heatmap.max() <= 1 and result.heatmap.max() > 0
    assert widget.last_progress.stage == "plane done"


def test_scorer_network_button_adds_a_users_network_and_refuses_bad_files(make_napari_viewer, tmp_path, errors):
    from napari_supn_anomaly import scorers as R
    from napari_supn_anomaly.widgets.model_registry import register_model, unregister_model

    torch.set_num_threads(1)
    model = tiny_model("fluorescence")
    rng = np.random.default_rng(0)
    crops = (rng.random((12, 1, model.crop_size, model.crop_size)) * 40 + 60).astype(np.float32)
    masks = np.zeros((12, model.crop_size, model.crop_size), bool)
    masks[:, 6:-6, 6:-6] = True
    events = list(R.train_calibrated_scorer("ssl-fpi", model.copy(), crops[:8], masks[:8], crops[8:], masks[8:],
                                            iterations=5, pool_size=8))
    segmenter, calibration = events[-1]
    good = R.save_segmenter(tmp_path / "tiny.ssl-fpi", segmenter, model, calibration)
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
        scorer_before, choices_before = widget._scorer.value, widget._scorer.choices
        assert widget.load_scorer_network(good) is False
        assert "does not fit the model 'fluorescence-rbc'" in errors[-1]
        assert widget.load_scorer_network(junk) is False
        assert "not a napari-supn-anomaly model file" in errors[-1]
        assert widget.load_scorer_network(tmp_path / "missing.safetensors") is False
        assert "not found" in errors[-1]
        assert widget._scorer.value == scorer_before and widget._scorer.choices == choices_before
        widget._scorer.value = "ssl-fpi"
        assert "shipped with fluorescence-rbc" in widget._scorer_info.value  # the built-in network stays in use

        # it fits the model it was made for: added to the menu and selected, with a threshold
        widget.select_model("tiny fluorescence ssl")
        assert "ssl-fpi" not in widget._scorer.choices
        n_errors = len(errors)
        assert widget.load_scorer_network(good) is True
        assert len(errors) == n_errors
        assert widget._scorer.value == "ssl-fpi" and "ssl-fpi" in widget._scorer.choices
        assert "network: tiny.ssl-fpi.safetensors" in widget._scorer_info.value
        assert widget.threshold() is not None
        assert [(layer.name, id(layer.data)) for layer in viewer.layers] == layers_before
    finally:
        unregister_model("tiny fluorescence ssl")
