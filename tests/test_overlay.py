"""Overlay pictures: the image keeps its own look (bright stays bright), thin rings, one PNG per plane."""
from __future__ import annotations

import numpy as np
import pandas as pd
from PIL import Image

from napari_supn_anomaly.overlay import display_plane, overlay_figure, write_overlays
from napari_supn_anomaly.pipeline.candidates import cell_table
from napari_supn_anomaly.pipeline.result import DetectionResult, _with_plane_columns

THRESHOLD = 4.0


def one_cell_with_a_bright_spot():
    """A dim cell (grey 90) on a dark background (20) holding a saturated spot (255) the heatmap flags."""
    yy, xx = np.mgrid[:60, :80]
    cells = ((yy - 30) ** 2 + (xx - 40) ** 2 < 15 ** 2).astype(np.int32)
    image = np.where(cells > 0, 90, 20).astype(np.uint8)
    image[29:32, 39:42] = 255
    heat = np.zeros((60, 80), np.float32)
    heat[29:32, 39:42] = 9.0
    return image, cells, heat


def pixel_at(fig, axes_index: int, x: float, y: float) -> np.ndarray:
    """The RGB the figure shows at data point (x, y) of one of its panels."""
    fig.canvas.draw()
    rgba = np.asarray(fig.canvas.buffer_rgba())
    col, row = fig.axes[axes_index].transData.transform((x, y))
    return rgba[rgba.shape[0] - int(round(row)), int(round(col)), :3].astype(int)


def test_a_bright_spot_stays_bright_and_the_heatmap_marks_it_beside_the_image():
    import matplotlib.pyplot as plt

    image, cells, heat = one_cell_with_a_bright_spot()
    regions = (heat >= THRESHOLD).astype(np.int32)
    fig = overlay_figure(display_plane(image, "YX", "", ()), heat, cells, regions, THRESHOLD, units="z")
    try:
        spot = pixel_at(fig, 0, 40, 30)
        assert spot.min() >= 240, spot                      # white: not painted over, not darkened
        assert pixel_at(fig, 0, 5, 5).max() <= 20           # the background stays dark
        assert 60 <= pixel_at(fig, 0, 32, 30).mean() <= 200  # the cell keeps its grey, inside the ring
        warm = pixel_at(fig, 1, 40, 30)
        assert warm[0] > 200 and warm[2] < 150               # the heatmap panel: orange-yellow above threshold
    finally:
        plt.close(fig)


def test_a_long_score_rule_title_stays_over_its_panel():
    """The Giemsa rule's units run to 90 characters: the heatmap's title breaks into lines no wider
    than its panel instead of running over the colour bar."""
    import matplotlib.pyplot as plt

    from napari_supn_anomaly.supn import SCORE_RULES

    image, cells, heat = one_cell_with_a_bright_spot()
    units = SCORE_RULES["purple-scaled"].units
    assert len(units) > 80
    fig = overlay_figure(display_plane(image, "YX", "", ()), heat, cells, (heat >= THRESHOLD).astype(np.int32),
                         THRESHOLD, units=units)
    try:
        fig.canvas.draw()
        panel = fig.axes[1]
        title = panel.title.get_window_extent(fig.canvas.get_renderer())
        box = panel.get_window_extent()
        assert "\n" in panel.get_title()
        assert title.x0 >= box.x0 - 30 and title.x1 <= box.x1 + 30, (title, box)
    finally:
        plt.close(fig)


def result_of(heat: np.ndarray, cells: np.ndarray, plane_axes: str = "") -> DetectionResult:
    if plane_axes:
        tables = [_with_plane_columns(cell_table(heat[i], cells[i]), i, (i,), plane_axes) for i in range(len(heat))]
        table = pd.concat(tables, ignore_index=True)
    else:
        table = cell_table(heat, cells)
    provenance = {"heatmap_units": "z", "cell_diameter_px": 30.0}
    return DetectionResult(heat, cells, table, None, THRESHOLD, provenance, plane_axes).with_threshold(THRESHOLD)


def test_one_png_per_plane(tmp_path):
    image, cells, heat = one_cell_with_a_bright_spot()
    stack = write_overlays(result_of(np.stack([heat, heat * 0]), np.stack([cells, cells]), "T"),
                           np.stack([image, image]), "TYX", tmp_path, "stack", title=["first", "second"])
    assert [p.name for p in stack] == ["stack_plane0_overlay.png", "stack_plane1_overlay.png"]
    single = write_overlays(result_of(heat, cells), image, "YX", tmp_path, "field")
    assert [p.name for p in single] == ["field_overlay.png"]
    for path in stack + single:
        assert Image.open(path).size[0] > 1000


def test_a_multichannel_image_shows_the_channel_analysed_and_rgb_keeps_its_colours():
    image, _, _ = one_cell_with_a_bright_spot()
    two = np.stack([image, 255 - image])  # C, Y, X
    np.testing.assert_allclose(display_plane(two, "CYX", "", (), channel=1), display_plane(255 - image, "YX", "", ()))
    rgb = np.stack([image, image // 2, image // 3], axis=-1)
    np.testing.assert_allclose(display_plane(rgb, "YXS", "", ()), rgb / 255.0, atol=1e-6)
