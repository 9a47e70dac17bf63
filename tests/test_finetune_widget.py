"""The Fine-tune widget in a real napari viewer (run under xvfb-run): mark rectangles, train, cancel,
train again, detect with the new model."""
from __future__ import annotations

import hashlib

import numpy as np
import pytest

from _tiny_models import tiny_model

napari = pytest.importorskip("napari")

PLUGIN = "napari-supn-anomaly"
BASE = "tiny fluorescence base"


@pytest.fixture
def base_model():
    from napari_supn_anomaly.widgets.model_registry import REGISTRY, register_model, unregister_model

    model = tiny_model("fluorescence")
    register_model(BASE, model)
    yield model
    for name in list(REGISTRY.names()):
        if name == BASE or name.startswith(model.name + "-finetuned"):
            unregister_model(name)


def digest(model) -> str:
    h = hashlib.sha256()
    for k, v in sorted(model.net.state_dict().items()):
        h.update(k.encode() + v.detach().cpu().numpy().tobytes())
    return h.hexdigest()


def open_finetune(viewer):
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Fine-tune on healthy cells")
    return widget


def field_with_rectangles(viewer):
    viewer.open_sample(PLUGIN, "synthetic_brightfield")
    image = viewer.layers["synthetic_brightfield_field"]
    h, w = image.data.shape
    rects = [np.array([[0, 0], [0, w], [h // 2, w], [h // 2, 0]], float),
             np.array([[h // 2, 0], [h // 2, w // 2], [h - 1, w // 2], [h - 1, 0]], float)]
    shapes = viewer.add_shapes(rects, shape_type="rectangle", name="healthy cells", face_color="transparent")
    return image, shapes


def wait_done(qtbot, widget, worker, timeout=180_000):
    """Until the widget has handled the worker's end (robust to a worker that ends at once)."""
    assert worker is not None, widget.status_text
    qtbot.waitUntil(lambda: not widget.running, timeout=timeout)


def test_train_cancel_train_again_and_detect(base_model, make_napari_viewer, qtbot, tmp_path):
    from napari_supn_anomaly.models import load_model
    from napari_supn_anomaly.widgets.model_registry import REGISTRY

    viewer = make_napari_viewer()
    image, shapes = field_with_rectangles(viewer)
    widget = open_finetune(viewer)
    _, detect = viewer.window.add_plugin_dock_widget(PLUGIN, "Detect anomalies")
    widget.select_image(image)
    widget.select_healthy(shapes)
    widget.select_base(BASE)
    widget.set_minutes(0.05)
    before = digest(base_model)
    layer_names = [layer.name for layer in viewer.layers]

    # cancel once, as soon as the training loop reports
    worker = widget.train()
    events = []
    worker.yielded.connect(events.append)
    qtbot.waitUntil(lambda: bool(events) and events[-1].stage in ("mean", "precision", "done"), timeout=120_000)
    widget.cancel()
    wait_done(qtbot, widget, worker)
    assert widget.status_text.startswith("cancelled"), widget.status_text
    assert "no new model" in widget.status_text and widget.model is None
    assert not [n for n in REGISTRY.names() if "finetuned" in n]
    assert digest(base_model) == before

    # train again, to the end
    worker = widget.train()
    wait_done(qtbot, widget, worker)
    assert widget.model is not None, widget.status_text
    name = f"{base_model.name}-finetuned-1"
    assert f"{name} is ready" in widget.status_text
    assert name in REGISTRY.names() and name in detect.model_choices   # listed in Detect at once
    assert digest(base_model) == before
    model = widget.model
    assert model.modality == "brightfield" and model.metadata["training"]["finetune"]["intensity_inverted"]
    assert model.metadata["base_model"]["name"] == base_model.name
    assert model.metadata["training"]["data"]["train"]["regions"][0]["kind"] == "rectangle"
    assert widget.loss_plot.n_points() > 0
    assert [layer.name for layer in viewer.layers] == layer_names   # training adds or changes no layer

    # save it, and detect with it
    saved = widget.save_model(tmp_path / "mine.safetensors")
    assert load_model(saved).metadata["base_model"]["name"] == base_model.name
    detect.select_model(name)
    detect.select_image(image)
    worker = detect.run()
    wait_done(qtbot, detect, worker)
    result = detect.result
    assert result.provenance["model"] == name and len(result.cell_table) > 20
    assert f"{image.name} anomaly" in [layer.name for layer in viewer.layers]


def test_bad_marks_notify_and_leave_layers(base_model, make_napari_viewer, qtbot, monkeypatch):
    import napari_supn_anomaly.widgets.finetune_widget as fw

    errors = []
    monkeypatch.setattr(fw, "show_error", errors.append)
    viewer = make_napari_viewer()
    widget = open_finetune(viewer)
    widget.select_base(BASE)
    assert widget.train() is None and "image" in errors[-1]

    image, shapes = field_with_rectangles(viewer)
    widget.select_image(image)
    widget.select_healthy(shapes)
    widget.set_minutes(0.05)
    names = [layer.name for layer in viewer.layers]
    shapes.data = [np.array([[900, 900], [900, 960], [950, 960], [950, 900]], float)]
    wait_done(qtbot, widget, widget.train())
    assert "outside the image" in errors[-1] and widget.status_text.startswith("failed")

    shapes.data = [np.array([[0, 0], [0, 60], [40, 60], [40, 0]], float)]
    wait_done(qtbot, widget, widget.train())
    assert ("holds no whole cell" in errors[-1] or "are needed" in errors[-1]), errors[-1]

    lines = viewer.add_shapes([np.array([[10, 10], [100, 100]], float)], shape_type="line", name="a line")
    widget.select_healthy(lines)
    assert widget.train() is None and "draw rectangles" in errors[-1]
    assert [layer.name for layer in viewer.layers] == names + ["a line"]
