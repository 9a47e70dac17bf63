"""Annotation marks burned into bright-field images (cells/overlay_marks.py, cells/set_apart.py):
synthetic fields, and a real Chula field when ../shared/data is there."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from napari_supn_anomaly.cells import segment_cells
from napari_supn_anomaly.cells.field_crops import cut_crops
from napari_supn_anomaly.cells.overlay_marks import fill_marks, mark_mask

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
BACKGROUND = (225, 222, 228)
PINK = (185, 120, 150)
PURPLE = (110, 60, 160)


def stained_field(shape, centres, radius=18, seed=0):
    """RGB [3, Y, X]: pink red cells on a pale background, a little noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:shape[0], :shape[1]]
    rgb = np.empty((3,) + shape)
    rgb[:] = np.array(BACKGROUND, float)[:, None, None]
    for cy, cx in centres:
        rgb[:, (yy - cy) ** 2 + (xx - cx) ** 2 < radius ** 2] = np.array(PINK, float)[:, None]
    return (rgb + rng.normal(0, 2, rgb.shape)).clip(0, 255).astype(np.float32)


def paint(rgb, mask, colour):
    rgb[:, mask] = np.array(colour, float)[:, None]


def test_saturated_yellow_green_and_orange_marks_are_found_and_stains_are_not():
    rgb = stained_field((120, 200), [(60, 50), (60, 130)])
    yy, xx = np.mgrid[:120, :200]
    paint(rgb, (yy - 60) ** 2 + (xx - 50) ** 2 < 5 ** 2, PURPLE)   # a parasite's chromatin
    paint(rgb, (abs(yy - 20) < 2) & (xx > 100) & (xx < 190), (250, 250, 5))   # yellow arrow shaft
    paint(rgb, (abs(yy - 100) < 1.5) & (xx > 10) & (xx < 90), (80, 200, 85))  # green scale bar
    marks = mark_mask(rgb, "brightfield-stained")
    assert marks[20, 110:180].all() and marks[100, 20:80].all()
    cells = ((yy - 60) ** 2 + (xx - 50) ** 2 < 16 ** 2) | ((yy - 60) ** 2 + (xx - 130) ** 2 < 16 ** 2)
    assert not (marks & cells).any()  # neither pink cells nor purple chromatin are marks
    # an orange marker is of a stain-like hue but brighter than the lamp (Chula's dim lamp: about 150)
    dim = rgb * 0.66
    paint(dim, (yy - 15) ** 2 + (xx - 30) ** 2 < 4 ** 2, (213, 136, 76))
    marks = mark_mask(dim, "brightfield-stained")
    assert marks[15, 30] and not (marks & cells).any()


def test_a_grey_scale_bar_with_its_label_is_a_mark_and_dark_outlines_and_pigment_are_not():
    # Chula's microscope burns a grey 2 px "0.00 um" bracket into half its fields: no odd hue, but
    # straight; a cell's dark rim and a black dot of pigment are dark and grey too, and are neither
    rgb = stained_field((140, 220), [(70, 60), (70, 150)])
    yy, xx = np.mgrid[:140, :220]
    r2 = (yy - 70) ** 2 + (xx - 150) ** 2
    paint(rgb, (r2 < 18 ** 2) & (r2 >= 16 ** 2), (120, 118, 122))  # a grey rim around the second cell
    paint(rgb, (yy - 70) ** 2 + (xx - 145) ** 2 < 2 ** 2, (40, 38, 36))  # pigment inside it
    bar = (yy >= 75) & (yy <= 76) & (xx >= 40) & (xx <= 82)
    ticks = (yy >= 70) & (yy <= 76) & ((xx == 40) | (xx == 82))
    glyph = (yy >= 63) & (yy <= 68) & (xx >= 52) & (xx <= 70) & (xx % 6 < 4)  # "0000": 4 x 6 px outlines
    label = glyph & ((yy == 63) | (yy == 68) | (xx % 6 == 0) | (xx % 6 == 3))
    for part in (bar, ticks, label):
        paint(rgb, part, (110, 115, 120))
    marks = mark_mask(rgb, "brightfield-stained")
    assert marks[bar].all() and marks[ticks].all() and marks[label].mean() > 0.8
    assert not marks[(yy - 70) ** 2 + (xx - 150) ** 2 < 20 ** 2].any()
    seg = segment_cells(rgb, "brightfield-stained", cell_diameter=36)
    assert seg.n_cells == 2 and not seg.labels[bar].any() and seg.labels[60, 60]
    # a stroke shorter than a drawn line (a thin fold, a scratch) is no mark
    short = stained_field((80, 80), [(40, 40)])
    paint(short, (yy[:80, :80] == 40) & (xx[:80, :80] >= 30) & (xx[:80, :80] < 50), (110, 115, 120))
    assert not mark_mask(short, "brightfield-stained").any()


def test_a_sky_blue_bar_between_its_ticks_is_a_mark_and_a_pale_blue_smear_is_not():
    # Chula's "50.00" bracket: sky blue (hue 202, past the marks' hue band), its line only 30 px
    # between the ticks; the ticks crossing it count towards its length. A pale blue patch of the
    # same colour (a stain's tint) is no line.
    rgb = stained_field((120, 200), [(40, 150)])
    yy, xx = np.mgrid[:120, :200]
    sky, deep_sky = (118, 197, 250), (16, 160, 255)  # Chula field 708's line and ticks
    bar = (yy >= 90) & (yy <= 91) & (xx >= 40) & (xx <= 71)
    ticks = (yy >= 84) & (yy <= 91) & ((xx == 40) | (xx == 71))
    paint(rgb, bar, sky)
    paint(rgb, ticks, deep_sky)
    patch = (yy - 40) ** 2 + (xx - 60) ** 2 < 12 ** 2
    paint(rgb, patch, sky)
    marks = mark_mask(rgb, "brightfield-stained")
    assert marks[bar].all() and marks[ticks].all()
    assert not marks[patch].any()


def test_no_marks_in_fluorescence_grayscale_or_a_tinted_lamp():
    rgb = stained_field((80, 80), [(40, 40)])
    green = rgb.copy()
    green[1] += 80  # a strongly green lamp: its tint is the background's own, not a mark
    assert not mark_mask(green, "brightfield-stained").any()
    assert not mark_mask(rgb.mean(0), "brightfield").any()
    fl = np.zeros((3, 80, 80), np.float32)
    fl[1, 30:50, 30:50] = 200  # a GFP-green cell in a fluorescence image is a cell
    assert not mark_mask(fl, "fluorescence").any()


def test_a_mark_crossing_a_cell_leaves_the_cell_and_a_mark_alone_is_no_red_cell():
    rgb = stained_field((140, 220), [(70, 60), (70, 150)])
    yy, xx = np.mgrid[:140, :220]
    text = (abs(yy - 70) < 2) & (xx > 35) & (xx < 85)  # green text straight across the first cell
    paint(rgb, text, (80, 200, 85))
    arrow = (abs(yy - 20) < 5) & (abs(xx - 150) < 25)   # a yellow arrow on the background
    paint(rgb, arrow, (250, 250, 5))
    seg = segment_cells(rgb, "brightfield-stained", cell_diameter=36)
    assert seg.n_cells == 2
    assert not seg.labels[text].any()
    assert seg.labels[60, 60] and seg.labels[80, 60] and seg.labels[60, 60] == seg.labels[80, 60]
    assert not seg.labels[arrow].any()
    # the finder keeps the marks it found, and the scoring hides those same pixels
    np.testing.assert_array_equal(seg.marks, mark_mask(rgb, "brightfield-stained"))


def test_a_piece_of_a_cell_cut_by_the_edge_stays_a_red_cell_on_a_field_with_marks():
    # the marks' clean-up took every red cell under a quarter of a cell's area for one the marks
    # had eaten, pieces the field's edge cut off included
    rgb = stained_field((140, 220), [(70, 60), (70, 230)])  # the second cell shows 8 px of itself
    yy, xx = np.mgrid[:140, :220]
    paint(rgb, (abs(yy - 20) < 5) & (abs(xx - 120) < 25), (250, 250, 5))  # a yellow arrow
    seg = segment_cells(rgb, "brightfield-stained", cell_diameter=36)
    assert seg.n_cells == 2 and seg.labels[70, 217] and seg.edge[seg.labels[70, 217]]


def test_a_ring_form_on_the_margin_or_bulging_past_it_stays_in_its_cell():
    rgb = stained_field((140, 220), [(70, 60), (70, 160)])
    yy, xx = np.mgrid[:140, :220]
    r2 = (yy - 70) ** 2 + (xx - 77) ** 2
    applique = (r2 < 6 ** 2) & (r2 >= 3 ** 2)  # on the first cell's margin, 5 px past the outline
    paint(rgb, applique, PURPLE)
    r2 = (yy - 70) ** 2 + (xx - 173) ** 2
    accole = (r2 < 4 ** 2) & (r2 >= 2 ** 2)  # just inside the second cell's margin
    paint(rgb, accole, PURPLE)
    seg = segment_cells(rgb, "brightfield-stained", cell_diameter=36)
    first, second = seg.labels[70, 60], seg.labels[70, 160]
    assert first and second and first != second
    assert (seg.labels[applique] == first).mean() > 0.9
    assert (seg.labels[accole] == second).all()


def test_hidden_pixels_leave_the_scoring_masks_with_a_margin_and_are_filled_from_around():
    plane = np.zeros((1, 40, 40), np.float32)
    labels = np.zeros((40, 40), np.int32)
    labels[10:30, 10:30] = 1
    plane[0, 10:30, 10:30] = 100
    hidden = np.zeros((40, 40), bool)
    hidden[19:21, 5:35] = True
    plane[0, hidden] = 255
    filled = fill_marks(plane, hidden)
    assert filled[0, 19:21, 12:28].max() == 100 and filled[0, ~hidden].tolist() == plane[0, ~hidden].tolist()
    _, masks = cut_crops(filled, labels, np.array([1]), np.array([[20, 20]]), 40, np.zeros(1, np.float32), 2, hidden)
    _, plain = cut_crops(filled, labels, np.array([1]), np.array([[20, 20]]), 40, np.zeros(1, np.float32), 2)
    assert plain[0, 20, 20] and not masks[0, 17:23, 10:30].any()
    assert masks[0, 12, 20] and masks[0, 28, 20]


def _chula(name):
    path = DATA / "chula_rbc_fields" / "images" / f"{name}.jpg"
    if not path.exists():
        pytest.skip(f"needs ../shared/data/chula_rbc_fields (not found at {path.parent})")
    from PIL import Image
    return np.moveaxis(np.asarray(Image.open(path).convert("RGB"), np.float32), -1, 0)


def test_real_chula_field_marks_are_in_no_red_cell():
    rgb = _chula("145")  # a green "20.00 um" scale bar across cells
    marks = mark_mask(rgb, "brightfield-stained")
    assert 300 < marks.sum() < 5000 and marks[420:445, 480:640].any()
    seg = segment_cells(rgb, "brightfield-stained")
    assert not seg.labels[marks].any()
