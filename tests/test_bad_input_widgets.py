"""Issue 16 in napari (run under xvfb-run): the widgets meet bad input with a notification and
leave the user's layers as they were."""
from __future__ import annotations

import json

import numpy as np
import pytest
from safetensors.torch import load_file, save_file

from _tiny_models import tiny_model, tiny_model_file
from napari_supn_anomaly.models.model_file import METADATA_KEY
from napari_supn_anomaly.synthetic import make_field

napari = pytest.importorskip("napari")

PLUGIN = "napari-supn-anomaly"


@pytest.fixture
def fl_model():
    from napari_supn_anomaly.widgets.model_registry import register_model, unregister_model

    register_model("tiny fluorescence", tiny_model("fluorescence"))
    yield
    unregister_model("tiny fluorescence")


@pytest.fixture
def notes(monkeypatch):
    """The notifications the Detect and Fine-tune widgets showed: (kind, text)."""
    import napari_supn_anomaly.widgets.detect_widget as dw
    import napari_supn_anomaly.widgets.finetune_widget as fw

    shown = []
    for module in (dw, fw):
        for kind in ("show_error", "show_warning", "show_info"):
            if hasattr(module, kind):
                monkeypatch.setattr(module, kind, lambda text, _k=kind: shown.append((_k, text)))
    return shown


def snapshot(viewer):
    return [(layer.name, np.array(layer.data, copy=True)) for layer in viewer.layers]


def assert_unchanged(viewer, before):
    after = snapshot(viewer)
    assert [n for n, _ in after] == [n for n, _ in before]
    for (name, old), (_, new) in zip(before, after):
        np.testing.assert_array_equal(old, new, err_msg=name)


def damaged_copy(tmp_path, name, change):
    source = tiny_model_file("fluorescence")
    tensors = load_file(source)
    with open(source, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        meta = json.loads(json.loads(fh.read(size))["__metadata__"][METADATA_KEY])
    change(meta, tensors)
    path = tmp_path / name
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(meta)})
    return path


def detect_widget(viewer):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Detect anomalies")
    return widget


def test_damaged_model_file_notifies_and_changes_nothing(make_napari_viewer, tmp_path, notes, fl_model):
    viewer = make_napari_viewer()
    viewer.add_image(make_field((128, 128), "fluorescence", seed=1).image, name="my field")
    widget = detect_widget(viewer)
    widget.select_model("tiny fluorescence")
    before, choices = snapshot(viewer), widget.model_choices
    nan = damaged_copy(tmp_path, "nan-weights.safetensors",
                       lambda m, t: t["heads.supn.out.bias"].fill_(float("nan")))
    flat = damaged_copy(tmp_path, "no-range.safetensors",
                        lambda m, t: m.update(intensity={"low": [9.0], "high": [9.0]}))
    for path in (nan, flat):
        assert widget.load_model_file(path) is False
        kind, text = notes[-1]
        assert kind == "show_error" and path.name in text
    assert widget.model_choices == choices and widget.state.model.name == "tiny-fluorescence"
    assert_unchanged(viewer, before)


def test_damaged_base_model_in_the_finetune_widget(make_napari_viewer, tmp_path, notes):
    viewer = make_napari_viewer()
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Fine-tune on healthy cells")
    before = snapshot(viewer)
    bad = damaged_copy(tmp_path, "no-rules.safetensors", lambda m, t: m.pop("score_rules"))
    assert widget.load_base_file(bad) is False
    assert notes[-1][0] == "show_error" and "no-rules.safetensors" in notes[-1][1]
    assert_unchanged(viewer, before)


@pytest.mark.parametrize("make_image, words", [
    (lambda f: np.where(np.arange(f.size).reshape(f.shape) == 77, np.nan, f).astype(np.float32), "NaN"),
    (lambda f: f > 100, "boolean"),  # a mask chosen as the image (napari shows no complex images)
])
def test_bad_image_notifies_and_leaves_layers(make_napari_viewer, qtbot, notes, fl_model, make_image, words):
    viewer = make_napari_viewer()
    image = viewer.add_image(make_image(make_field((128, 128), "fluorescence", seed=2).image), name="bad image")
    widget = detect_widget(viewer)
    widget.select_model("tiny fluorescence")
    widget.select_image(image)
    before = snapshot(viewer)
    worker = widget.run()
    if worker is not None:
        qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert notes and notes[-1][0] == "show_error" and words in notes[-1][1]
    assert widget.result is None
    assert_unchanged(viewer, before)


def test_cancel_in_the_middle_adds_no_layers(make_napari_viewer, qtbot, notes, fl_model):
    viewer = make_napari_viewer()
    field = make_field((256, 256), "fluorescence", seed=4).image
    stack = viewer.add_image(np.stack([field] * 12), name="long stack")
    mine = viewer.add_points(np.array([[0.0, 5.0, 5.0]]), name="my notes")
    widget = detect_widget(viewer)
    widget.select_model("tiny fluorescence")
    widget.select_image(stack)
    before = snapshot(viewer)
    worker = widget.run()
    events = []
    worker.yielded.connect(events.append)
    qtbot.waitUntil(lambda: bool(events) and events[-1].stage == "scoring", timeout=60_000)
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        widget.cancel()
    assert events[-1].plane < 11 and "cancelled" in widget.status_text
    assert widget.result is None
    assert_unchanged(viewer, before)
    assert len(mine.data) == 1


def test_a_field_of_noise_is_refused_in_the_widget(make_napari_viewer, qtbot, notes, fl_model):
    viewer = make_napari_viewer()
    noise = np.random.default_rng(0).integers(0, 256, (192, 192)).astype(np.uint8)
    image = viewer.add_image(noise, name="noise")
    widget = detect_widget(viewer)
    widget.select_model("tiny fluorescence")
    widget.select_image(image)
    before = snapshot(viewer)
    worker = widget.run()
    if worker is not None:
        qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert notes and notes[-1][0] == "show_error" and "noise" in notes[-1][1]
    assert widget.result is None
    assert_unchanged(viewer, before)


def test_cells_drowned_in_noise_are_flagged_in_the_widget(make_napari_viewer, qtbot, notes, fl_model):
    viewer = make_napari_viewer()
    field = make_field((192, 192), "fluorescence", cell_diameter=30, infected_fraction=0.3, seed=9).image
    field = field.astype(np.float32)
    noisy = np.clip(field + np.random.default_rng(0).normal(0, 3 * field.std(), field.shape), 0, 255)
    image = viewer.add_image(noisy.astype(np.uint8), name="noisy")
    widget = detect_widget(viewer)
    widget.select_model("tiny fluorescence")
    widget.select_image(image)
    assert widget.run() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert "does not look like red cells" in widget.status_text
    assert ("show_warning", f"noisy: {widget.result.warnings[0]}") in notes
