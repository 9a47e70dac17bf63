"""The Detect widget in a real napari viewer (run under xvfb-run)."""
from __future__ import annotations

import numpy as np
import pytest

from _tiny_models import tiny_model, tiny_model_file
from napari_supn_anomaly.pipeline.self_calibration import choose_threshold

napari = pytest.importorskip("napari")

PLUGIN = "napari-supn-anomaly"


@pytest.fixture
def fl_model():
    from napari_supn_anomaly.widgets.model_registry import register_model, unregister_model

    model = tiny_model("fluorescence")
    register_model("tiny fluorescence", model)
    yield model
    unregister_model("tiny fluorescence")


def open_widget(viewer):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Detect anomalies")
    return widget


def run_and_wait(qtbot, widget, timeout=120_000):
    worker = widget.run()
    assert worker is not None, widget.status_text
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)
    return worker


@pytest.fixture
def model_runs(monkeypatch):
    """How many detections the widget started (each runs the model once)."""
    import napari_supn_anomaly.widgets.detect_widget as dw

    runs = []
    original = dw.iter_detect
    monkeypatch.setattr(dw, "iter_detect", lambda *a, **k: runs.append(1) or original(*a, **k))
    return runs


def output_layers(viewer, source):
    from napari_supn_anomaly.widgets.layers import find_outputs

    return find_outputs(viewer, source)


def test_widget_from_manifest_runs_on_sample(make_napari_viewer, qtbot, fl_model):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "synthetic_fluorescence")
    image = viewer.layers["synthetic_fluorescence_stack"]
    image.scale = (1.0, 0.5, 0.5)
    image.translate = (0.0, 10.0, -4.0)
    widget = open_widget(viewer)
    assert "tiny fluorescence" in widget.model_choices  # registered before the widget opened
    widget.select_model("tiny fluorescence")
    widget.select_image(image)
    widget.set_sensitivity(5.0)
    widget.set_intensity("match")
    before = [layer.name for layer in viewer.layers]

    run_and_wait(qtbot, widget)

    outputs = output_layers(viewer, image.name)
    assert set(outputs) == {"heatmap", "cells", "candidates"}
    heat, cells, points = outputs["heatmap"], outputs["cells"], outputs["candidates"]
    assert heat.data.shape == image.data.shape and cells.data.shape == image.data.shape
    # the heatmap shows over bright spots (not added to them), its colour changing at the threshold
    assert heat.blending == "translucent"
    threshold = widget.result.threshold
    np.testing.assert_allclose(heat.contrast_limits, (0.0, 2 * threshold), rtol=1e-6)
    assert heat.metadata["units"] == heat.metadata["provenance"]["heatmap_units"] != ""
    assert heat.metadata["threshold"] == pytest.approx(threshold)
    # candidates: thin circles with nothing inside, so the spot they mark stays visible
    assert np.allclose(points.face_color[:, 3], 0) and (points.border_width < 0.1).all()
    for layer in (heat, cells, points):
        np.testing.assert_allclose(layer.scale, image.scale)
        np.testing.assert_allclose(layer.translate, image.translate)
        assert layer.axis_labels == image.axis_labels == ("field", "y", "x")
        assert layer.metadata["provenance"]["model"] == "tiny-fluorescence"
    matching = heat.metadata["provenance"]["intensity_matching"]
    assert matching["mode"] == "match" and all(p["applied"] for p in matching["planes"])
    assert points.ndim == 3
    assert {"score", "area", "cell_id", "status"} <= set(points.features.columns)
    # one circle per candidate cell, however many regions the heatmap has in it
    assert len(points.data) == int(widget.result.cell_table["candidate"].sum()) > 0
    assert not points.features.duplicated(["plane", "cell_id"]).any()
    # candidates lie inside the cells they name
    for (t, y, x), cid in zip(points.data, points.features["cell_id"]):
        assert cells.data[int(t), int(round(y)), int(round(x))] == cid
    # the user's layers are untouched
    assert [layer.name for layer in viewer.layers][: len(before)] == before


def test_slider_rethresholds_without_running_the_model(make_napari_viewer, qtbot, fl_model, monkeypatch, model_runs):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "synthetic_fluorescence")
    widget = open_widget(viewer)
    widget.select_model("tiny fluorescence")
    widget.set_sensitivity(1.0)
    run_and_wait(qtbot, widget)
    points = output_layers(viewer, "synthetic_fluorescence_stack")["candidates"]
    n_low = len(points.data)

    calls = []
    original = type(fl_model).iter_score_batches
    monkeypatch.setattr(type(fl_model), "iter_score_batches",
                        lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    widget.set_sensitivity(20.0)
    n_high = len(points.data)
    assert n_high > n_low
    assert len(points.features) == n_high == int(widget.result.cell_table["candidate"].sum())
    thr = choose_threshold(widget.result.cell_table["score"], 0.2).threshold  # on the image's own cells
    assert f"{thr:.3g}" in widget.threshold_text and "about 20 false candidates per 100 healthy cells" in \
        widget.threshold_text
    assert (points.features["score"] >= thr - 1e-5).all()
    heat = output_layers(viewer, "synthetic_fluorescence_stack")["heatmap"]
    np.testing.assert_allclose(heat.contrast_limits, (0.0, 2 * thr), rtol=1e-6)  # the colour change follows
    widget.set_sensitivity(1.0)
    assert len(points.data) == n_low
    widget.set_sensitivity(20.0)
    widget.set_min_area(6)
    assert len(points.data) < n_high and (points.features["area"] >= 6).all()
    widget.set_min_area(1)
    assert len(points.data) == n_high
    assert calls == [] and len(model_runs) == 1


def test_rerun_replaces_only_its_own_layers(make_napari_viewer, qtbot, fl_model, model_runs):
    from napari_supn_anomaly.synthetic import make_field

    viewer = make_napari_viewer()
    field = make_field((256, 256), "fluorescence", seed=3)
    image = viewer.add_image(field.image, name="field")
    mine = viewer.add_points(np.array([[5.0, 5.0]]), name="my notes")
    widget = open_widget(viewer)
    widget.select_model("tiny fluorescence")
    widget.select_image(image)
    run_and_wait(qtbot, widget)
    first = output_layers(viewer, "field")
    first["heatmap"].colormap = "viridis"  # a display choice the user made
    n_layers = len(viewer.layers)
    run_and_wait(qtbot, widget)
    second = output_layers(viewer, "field")
    assert len(viewer.layers) == n_layers
    assert second["heatmap"] is first["heatmap"] and second["heatmap"].colormap.name == "viridis"
    assert "my notes" in viewer.layers and len(mine.data) == 1
    assert len(model_runs) == 2


def test_cancel_stops_a_stack_within_one_plane(make_napari_viewer, qtbot, fl_model):
    viewer = make_napari_viewer()
    stack = np.stack([np.asarray(viewer.open_sample(PLUGIN, "synthetic_fluorescence")[0].data)] * 3)
    stack = stack.reshape(-1, *stack.shape[-2:])  # 12 planes
    image = viewer.add_image(stack, name="long stack")
    widget = open_widget(viewer)
    widget.select_model("tiny fluorescence")
    widget.select_image(image)
    worker = widget.run()
    events = []
    worker.yielded.connect(events.append)
    qtbot.waitUntil(lambda: bool(events) and events[-1].stage == "scoring", timeout=60_000)
    plane_at_cancel = events[-1].plane
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        widget.cancel()
    assert events[-1].plane <= plane_at_cancel + 1
    assert events[-1].plane < 11
    assert "cancelled" in widget.status_text
    assert not output_layers(viewer, "long stack")


def test_bad_input_notifies_and_leaves_layers(make_napari_viewer, qtbot, fl_model, monkeypatch):
    import napari_supn_anomaly.widgets.detect_widget as dw

    errors = []
    monkeypatch.setattr(dw, "show_error", errors.append)
    viewer = make_napari_viewer()
    widget = open_widget(viewer)
    widget.select_model("tiny fluorescence")
    assert widget.run() is None and "image" in errors[-1]        # no image

    flat = viewer.add_image(np.full((128, 128), 7.0, np.float32), name="flat")
    widget.select_image(flat)
    assert widget.run() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert "constant" in errors[-1]

    nan = np.random.default_rng(0).random((128, 128)).astype(np.float32)
    nan[3, 3] = np.nan
    widget.select_image(viewer.add_image(nan, name="nan"))
    assert widget.run() is not None
    qtbot.waitUntil(lambda: not widget.running, timeout=60_000)
    assert "NaN" in errors[-1]
    assert [layer.name for layer in viewer.layers] == ["flat", "nan"]


def test_damaged_model_file_and_registry(make_napari_viewer, tmp_path, monkeypatch, fl_model):
    import napari_supn_anomaly.widgets.detect_widget as dw
    from napari_supn_anomaly.widgets.model_registry import register_model, unregister_model

    errors = []
    monkeypatch.setattr(dw, "show_error", errors.append)
    viewer = make_napari_viewer()
    widget = open_widget(viewer)
    bad = tmp_path / "broken.safetensors"
    bad.write_bytes(b"not a model at all")
    choices = widget.model_choices
    assert widget.load_model_file(bad) is False
    assert "broken.safetensors" in errors[-1]
    assert widget.model_choices == choices

    register_model("fine-tuned here", tiny_model_file("fluorescence"))
    try:
        assert "fine-tuned here" in widget.model_choices   # listed at once
        widget.select_model("fine-tuned here")
        assert widget.state.model is not None and widget.state.model.modality == "fluorescence"
    finally:
        unregister_model("fine-tuned here")
    assert "fine-tuned here" not in widget.model_choices
    assert widget.load_model_file(tiny_model_file("fluorescence")) is True
    assert widget.state.model.name == "tiny-fluorescence"


def test_open_stack_confirms_channel_axis(make_napari_viewer, tmp_path, fl_model):
    import tifffile

    rng = np.random.default_rng(0)
    path = tmp_path / "three.tif"
    tifffile.imwrite(path, rng.integers(0, 255, (3, 64, 80), dtype=np.uint8))
    viewer = make_napari_viewer()
    widget = open_widget(viewer)
    widget.select_model("tiny fluorescence")
    layer = widget.open_stack(path, axes="YXC")   # read as RGB (Y, X, S); the user says: channels
    assert layer.metadata["axes"] == "CYX" and not layer.rgb and layer.data.shape == (3, 64, 80)
    assert len(widget.channel_choices) == 3
    layer_rgb = widget.open_stack(path, axes="YXS")
    assert layer_rgb.rgb


def test_find_cells_widget_segments_the_plane_on_screen(make_napari_viewer):
    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "synthetic_fluorescence")
    image = viewer.layers["synthetic_fluorescence_stack"]
    viewer.dims.set_current_step(0, 2)
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Find red cells")
    widget.image.value = image
    widget.modality.value = "fluorescence"
    widget()
    cells = viewer.layers["synthetic_fluorescence_stack cells"]
    assert cells.data.shape == image.data.shape[1:] and cells.data.max() > 30
    # it is the third plane's cells
    from napari_supn_anomaly.cells import segment_cells
    expected = segment_cells(np.asarray(image.data[2]), "fluorescence").labels
    np.testing.assert_array_equal(cells.data, expected)


def test_demo_gui_opens_the_layers_and_the_widget(tmp_path, monkeypatch, qtbot):
    from napari_supn_anomaly.cli import main
    from napari_supn_anomaly.widgets.layers import find_outputs

    monkeypatch.setattr(napari, "run", lambda *a, **k: None)
    assert main(["demo", "--gui", "--model", tiny_model_file("fluorescence"), "--out", str(tmp_path)]) == 0
    viewer = napari.current_viewer()
    try:
        names = [layer.name for layer in viewer.layers]
        assert "synthetic_fluorescence_stack true parasites" in names
        assert set(find_outputs(viewer, "synthetic_fluorescence_stack")) == {"heatmap", "cells", "candidates"}
    finally:
        viewer.close()


def test_demo_viewer_shows_the_result_at_the_sensitivity_it_was_cut_at(make_napari_viewer, fl_model):
    """demo --gui: the widget's slider, threshold line and status say what the layers show."""
    import dataclasses

    from napari_supn_anomaly.cli.demo_cmd import set_up_viewer
    from napari_supn_anomaly.pipeline.stacks import DetectSettings, detect
    from napari_supn_anomaly.sample_data import load_sample
    from napari_supn_anomaly.scoring import resolve
    from napari_supn_anomaly.widgets.model_registry import unregister_model

    sample = load_sample("fluorescence")
    sample = dataclasses.replace(sample, image=sample.image[:1], cells=sample.cells[:1], parasites=sample.parasites[:1])
    result = detect(sample.image, sample.axes, resolve(fl_model), settings=DetectSettings(fpr=0.12, device="cpu"))
    viewer = make_napari_viewer()
    try:
        widget = set_up_viewer(viewer, sample, result, fl_model)
        assert widget.sensitivity == pytest.approx(12.0) and widget.state.fpr == pytest.approx(0.12)
        assert widget.result.threshold == pytest.approx(result.threshold)
        assert widget.threshold_text.startswith(f"score threshold {result.threshold:.3g} "
                                                f"({result.calibration.describe_source()}): about 12 false "
                                                "candidates per 100 healthy cells")
        assert widget.status_text == result.summary()
        layers = output_layers(viewer, sample.name)
        assert len(layers["candidates"].data) == int(result.cell_table["candidate"].sum()) > 0
        np.testing.assert_allclose(layers["heatmap"].contrast_limits, (0.0, 2 * result.threshold), rtol=1e-6)
        assert viewer.layers[sample.name].axis_labels == ("field", "y", "x")
        assert not viewer.layers[f"{sample.name} true parasites"].visible
    finally:
        unregister_model(fl_model.name)


def test_the_model_line_says_when_cells_are_scored_in_several_orientations(make_napari_viewer, fl_model):
    widget = open_widget(make_napari_viewer())
    widget.select_model("fluorescence-rbc")
    assert "each cell scored in 4 orientations" in widget._form.model_info.value
    widget.select_model("tiny fluorescence")
    assert "orientations" not in widget._form.model_info.value


def test_the_slider_moves_to_each_models_default_until_the_person_moves_it(make_napari_viewer, fl_model):
    widget = open_widget(make_napari_viewer())
    widget.select_model("giemsa-rbc")
    assert widget.sensitivity == pytest.approx(1.0)
    assert "about 1 false candidate per 100" in widget.threshold_text
    widget.select_model("tiny fluorescence")
    assert widget.sensitivity == pytest.approx(5.0)
    widget.set_sensitivity(3.0)
    widget.select_model("giemsa-rbc")
    assert widget.sensitivity == pytest.approx(3.0) and widget.state.fpr == pytest.approx(0.03)
