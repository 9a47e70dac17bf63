"""Screenshots of the Review widget and of the HTML report for docs/user-guide.md (run under xvfb-run).

    cd ../shared/data/malarianet_giemsa_fields/images
    supn-anomaly detect Trip_062_Day_1_02-11-05_Image_11_add_1.jpg Trip_083_Day_2_07-12-05_Image_2_2.jpg \
        Trip_064_Day_2_25-11-05_Image_5_11.jpg --model giemsa-rbc --calibrate-per-input --out /tmp/review_malarianet
    xvfb-run -a python benchmarks/screenshots/review_widget.py --results /tmp/review_malarianet

Opens one MalariaNet field with its results folder, answers its first candidates from the parasite
mask (as a reviewer would), and writes docs/images/review_gallery.png; then writes the HTML
report of three reviewed fields to /tmp/review_report.html. Render that page to
docs/images/review_report.png with benchmarks/screenshots/render_html.py (needs PyQt6-WebEngine).
"""
from __future__ import annotations

import argparse
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy import ndimage as ndi

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data" / "malarianet_giemsa_fields"
OUT = ROOT / "docs" / "images"
FIELD = "Trip_062_Day_1_02-11-05_Image_11_add_1"
REPORT_FIELDS = (FIELD, "Trip_083_Day_2_07-12-05_Image_2_2", "Trip_064_Day_2_25-11-05_Image_5_11")


def truth(stem: str, cells) -> set[int]:
    import tifffile

    labels = tifffile.imread(cells)
    mask = np.asarray(Image.open(DATA / "masks" / f"{stem}.png")) > 127
    ids = np.unique(labels[labels > 0])
    px = ndi.sum_labels(mask, labels, ids)
    return {int(i) for i, p in zip(ids, px) if p >= 10}


def main():
    import napari
    from qtpy.QtWidgets import QApplication

    from napari_supn_anomaly.widgets.review_widget import ReviewWidget

    parser = argparse.ArgumentParser()
    parser.add_argument("--results", required=True)
    parser.add_argument("--answers", type=int, default=9)
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="review-shots-"))
    for stem in REPORT_FIELDS:
        for path in Path(args.results).glob(f"{stem}_*"):
            shutil.copy(path, folder)

    viewer = napari.Viewer(show=True)
    viewer.window._qt_window.resize(1600, 950)
    widget = ReviewWidget(viewer)
    viewer.window.add_dock_widget(widget, name="Review candidates", area="right")
    for n, stem in enumerate(REPORT_FIELDS):
        rgb = np.asarray(Image.open(DATA / "images" / f"{stem}.jpg").convert("RGB"))
        image = viewer.add_image(rgb, name=stem, rgb=True, metadata={"axes": "YXS"})
        assert widget.open_results(folder, image), stem
        infected = truth(stem, folder / f"{stem}_cells.tif")
        answers = args.answers if stem == FIELD else len(widget.session.queue)
        for _ in range(answers):
            cell = widget.session.current_cell()
            widget.press("accepted" if int(cell["cell_id"]) in infected else "rejected")
        if stem != FIELD:
            for layer in list(viewer.layers):
                if layer.name.startswith(stem):
                    viewer.layers.remove(layer)
    widget.open_results(folder, viewer.layers[FIELD])
    for _ in range(30):
        QApplication.processEvents()
    OUT.mkdir(parents=True, exist_ok=True)
    shot = viewer.screenshot(canvas_only=False, flash=False)
    Image.fromarray(shot).save(OUT / "review_gallery.png")
    report = widget.write_report(folder / "report.html")
    # the report of all three reviewed fields, as `supn-anomaly summarize --html` writes it
    from napari_supn_anomaly.cli import main as cli

    cli(["summarize", str(folder), "--html", "/tmp/review_report.html", "--rbc-per-ul", "5000000"])
    print(report, OUT / "review_gallery.png", "/tmp/review_report.html")
    viewer.close()


if __name__ == "__main__":
    main()
