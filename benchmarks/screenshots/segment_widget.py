"""Screenshot of the Find red cells widget after a real run on a Chula field (run under xvfb-run).

    xvfb-run -a python benchmarks/screenshots/segment_widget.py --out docs/images/cells_widget.png
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
    ap.add_argument("--field", default="100")
    ap.add_argument("--out", type=Path, default=Path("docs/images/cells_widget.png"))
    args = ap.parse_args(argv)

    import imageio.v3 as iio
    import napari
    from qtpy.QtCore import Qt
    from qtpy.QtWidgets import QApplication

    rgb = iio.imread(DATA / "chula_rbc_fields" / "images" / f"{args.field}.jpg")
    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1700, 900)
    image = viewer.add_image(rgb, name=f"chula_{args.field}", rgb=True)
    dock, widget = viewer.window.add_plugin_dock_widget("napari-supn-anomaly", "Find red cells")
    viewer.window._qt_window.resizeDocks([dock], [380], Qt.Horizontal)
    widget.image.value = image
    widget.modality.value = "brightfield-stained"
    widget()
    app = QApplication.instance()
    for _ in range(20):
        app.processEvents()
        time.sleep(0.05)
    cells = viewer.layers[f"chula_{args.field}_cells" if f"chula_{args.field}_cells" in viewer.layers
                          else f"chula_{args.field} cells"]
    cells.contour = 2
    viewer.layers.selection.active = cells  # its Labels tools (paint, erase, fill) on screen
    viewer.window._qt_viewer.dockLayerList.setVisible(True)
    viewer.reset_view()
    summary = widget[-1].value
    print(summary)
    save_window(viewer, app, args.out)
    ok = bool(summary) and int(np.max(cells.data)) > 0
    viewer.close()
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
