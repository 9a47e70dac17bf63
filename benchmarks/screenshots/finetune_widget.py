"""Screenshot of the Fine-tune widget after a real run on a Remoscope field (run under xvfb-run).

    xvfb-run -a python benchmarks/screenshots/finetune_widget.py --base fluorescence-rbc \
        --minutes 0.5 --out docs/images/finetune_widget.png
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

from _window import save_window

DATA = Path(os.environ.get("SUPN_SHARED_DATA", Path(__file__).resolve().parents[3] / "shared" / "data"))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--base", default="fluorescence-rbc")
    ap.add_argument("--minutes", type=float, default=0.5)
    ap.add_argument("--field", default="img_1228.png")
    ap.add_argument("--out", type=Path, default=Path("docs/images/finetune_widget.png"))
    args = ap.parse_args(argv)

    import napari
    from qtpy.QtWidgets import QApplication

    from napari_supn_anomaly.evaluation.datasets import load_remoscope_fields
    from napari_supn_anomaly.models import builtin_model_names, load_model
    from napari_supn_anomaly.widgets.model_registry import register_model

    field = next(f for f in load_remoscope_fields(DATA) if f.name == args.field)
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1600, 900)
    image = viewer.add_image(field.image, name=Path(field.name).stem, colormap="gray")
    rects = [np.array([[b.y0, b.x0], [b.y0, b.x1], [b.y1, b.x1], [b.y1, b.x0]], float)
             for b in field.boxes if b.cls == "healthy" and b.y0 > 2 and b.x0 > 2
             and b.y1 < field.image.shape[0] - 2 and b.x1 < field.image.shape[1] - 2]  # no half cells at the edge
    shapes = viewer.add_shapes(rects, shape_type="rectangle", name="healthy cells", edge_color="lime",
                               face_color="transparent", edge_width=2)
    dock, widget = viewer.window.add_plugin_dock_widget("napari-supn-anomaly", "Fine-tune on healthy cells")
    from qtpy.QtCore import Qt
    viewer.window._qt_window.resizeDocks([dock], [560], Qt.Horizontal)
    viewer.reset_view()
    if args.base in builtin_model_names():
        widget.select_base(args.base)
    else:
        base = load_model(args.base)
        register_model(base.name, base)
        widget.select_base(base.name)
    widget.select_image(image)
    widget.select_healthy(shapes)
    widget.set_minutes(args.minutes)
    worker = widget.train()
    if worker is None:
        print("could not start:", widget.status_text)
        return 1
    app = QApplication.instance()
    deadline = time.time() + 60 * args.minutes + 300
    while widget.running and time.time() < deadline:
        app.processEvents()
        time.sleep(0.05)
    for _ in range(20):
        app.processEvents()
        time.sleep(0.05)
    print(widget.status_text)
    viewer.reset_view()
    from napari._qt.dialogs.qt_notification import NapariQtNotification
    for toast in viewer.window._qt_window.findChildren(NapariQtNotification):
        toast.close()  # pop-ups would hide the field
    save_window(viewer, app, args.out)
    viewer.close()
    return 0 if widget.model is not None else 1


if __name__ == "__main__":
    sys.exit(main())
