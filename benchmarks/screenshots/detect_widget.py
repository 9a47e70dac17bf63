"""Screenshots of the Detect widget for docs/user-guide.md, taken in a real napari window (run under xvfb-run).

    xvfb-run -a python benchmarks/screenshots/detect_widget.py --model fluorescence-rbc [--giemsa-model giemsa-rbc]
        [--remoscope-model FILE --remoscope-field N]

Writes docs/images/detect_widget_fluorescence.png (and detect_widget_giemsa.png with --giemsa-model;
detect_widget_finetuned_remoscope.png with --remoscope-model, a model fine-tuned on other Remoscope
fields of ../shared/data, detecting on field N).
"""
from __future__ import annotations

import argparse
import time
from pathlib import Path

import napari
from qtpy.QtWidgets import QApplication

from napari_supn_anomaly.models import builtin_model_names, load_model
from napari_supn_anomaly.widgets.detect_widget import DetectWidget
from napari_supn_anomaly.widgets.model_registry import register_model

OUT = Path(__file__).resolve().parents[2] / "docs" / "images"


def wait_for(widget, timeout=600):
    start = time.time()
    while widget.running and time.time() - start < timeout:
        QApplication.processEvents()
        time.sleep(0.05)
    for _ in range(20):
        QApplication.processEvents()


def use_model(widget, name_or_path: str):
    if name_or_path in builtin_model_names():
        widget.select_model(name_or_path)
    else:
        model = load_model(name_or_path)
        register_model(model.name, model)
        widget.select_model(model.name)


def shoot(sample_key: str, model: str, out_name: str, zoom_box=None, step=None, image_data=None):
    """The widget after Run at its default sensitivity, on a sample (or on ``image_data``: (name, array))."""
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1600, 1010)
    if image_data is None:
        image = viewer.open_sample("napari-supn-anomaly", sample_key)[0]
    else:
        image = viewer.add_image(image_data[1], name=image_data[0])
    widget = DetectWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Detect anomalies", area="right")
    use_model(widget, model)
    widget.select_image(image)
    widget.run()
    wait_for(widget)
    if step is not None:
        viewer.dims.set_current_step(0, step)
    if zoom_box is not None:
        (y0, x0), (y1, x1) = zoom_box
        viewer.camera.center = ((y0 + y1) / 2, (x0 + x1) / 2)
        viewer.camera.zoom = min(800 / (y1 - y0), 880 / (x1 - x0))
    viewer.layers.selection.active = image
    for _ in range(20):
        QApplication.processEvents()
    path = OUT / out_name
    viewer.screenshot(str(path), canvas_only=False)
    print(path, widget.status_text)
    viewer.close()


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", required=True)
    p.add_argument("--giemsa-model", default=None)
    p.add_argument("--remoscope-model", default=None, help="a model file fine-tuned on other Remoscope fields")
    p.add_argument("--remoscope-field", type=int, default=4, help="the Remoscope field (0-6) to detect on")
    args = p.parse_args()
    OUT.mkdir(parents=True, exist_ok=True)
    shoot("synthetic_fluorescence", args.model, "detect_widget_fluorescence.png", ((30, 80), (390, 380)), step=0)
    if args.giemsa_model:
        shoot("giemsa_real_cells", args.giemsa_model, "detect_widget_giemsa.png", ((0, 0), (640, 640)), step=0)
    if args.remoscope_model:
        from napari_supn_anomaly.evaluation.datasets import load_remoscope_fields

        field = load_remoscope_fields(Path(__file__).resolve().parents[3] / "shared" / "data")[args.remoscope_field]
        shoot("", args.remoscope_model, "detect_widget_finetuned_remoscope.png", image_data=(field.name, field.image))


if __name__ == "__main__":
    main()
