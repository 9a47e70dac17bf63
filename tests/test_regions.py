"""Healthy regions -> training cells: parsing, checks and the messages people see."""
import numpy as np
import pytest

from napari_supn_anomaly.cells import guess_modality
from napari_supn_anomaly.errors import InputError
from napari_supn_anomaly.training.regions import (
    TrainingCells, as_channels_first, cells_at_points, cells_from_fields, cells_from_labels, cells_in_regions,
    check_training_cells, read_regions_csv, rectangle, regions_from_shapes, skipped_warning,
)


def disc_field(h=200, w=260, r=12, spacing=40, dark=True, seed=0):
    """A bright-field-like plane: dark discs on a light background, on a grid."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    img = np.full((h, w), 230.0)
    labels = np.zeros((h, w), np.int32)
    k = 0
    for cy in range(spacing // 2 + 5, h - r - 2, spacing):
        for cx in range(spacing // 2 + 5, w - r - 2, spacing):
            k += 1
            cell = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
            img[cell] = 60
            labels[cell] = k
    img += rng.normal(0, 3, img.shape)
    if not dark:
        img = 255 - img
    return img.astype(np.float32), labels


def write(tmp_path, text):
    p = tmp_path / "REGIONS.csv"
    p.write_text(text)
    return p


def test_csv_rectangles_are_read_with_image_names(tmp_path):
    p = write(tmp_path, "image,y0,x0,y1,x1,note\na.png,1,2,30,40,ok\n\nb.tif,5,5,9,9,\n")
    regions = read_regions_csv(p)
    assert [r.image for r in regions] == ["a.png", "b.tif"]
    assert regions[0].bbox == (1.0, 2.0, 30.0, 40.0)
    assert regions[1].source == "REGIONS.csv line 4"


@pytest.mark.parametrize("text, message", [
    ("image,y0,x0,y1\na.png,1,2,3\n", "missing: x1"),
    ("image,y0,x0,y1,x1\na.png,1,two,3,4\n", "line 2: y0, x0, y1, x1 must be numbers"),
    ("image,y0,x0,y1,x1\na.png,10,2,3,40\n", "line 2: the rectangle is empty"),
    ("image,y0,x0,y1,x1\n,1,2,30,40\n", "line 2: the image column is empty"),
    ("image,y0,x0,y1,x1\n", "lists no regions"),
])
def test_bad_csv_gives_one_clear_message(tmp_path, text, message):
    with pytest.raises(ValueError, match=message):
        read_regions_csv(write(tmp_path, text))


def test_missing_csv_is_an_input_error(tmp_path):
    from napari_supn_anomaly.errors import InputError

    with pytest.raises(InputError, match="regions file not found"):
        read_regions_csv(tmp_path / "nope.csv")


def test_cells_inside_rectangles_are_found_by_segmentation():
    img, truth = disc_field()
    plane = as_channels_first(img)
    # a rectangle over the first two cells of the first row, cutting the third in half
    cells = cells_in_regions(plane, [rectangle("f.png", 10, 10, 50, 105)], "brightfield")
    assert len(cells) == 2
    assert cells.images[0].shape[0] == 1 and cells.images[0].shape[1] == cells.images[0].shape[2]
    assert all(m.sum() > 300 for m in cells.masks)  # whole discs of radius 12 (~450 px)
    assert {s["image"] for s in cells.sources} == {"f.png"}
    assert cells.describe()["regions"][0]["x1"] == 105


def test_region_outside_the_image_is_refused():
    img, _ = disc_field()
    with pytest.raises(ValueError, match="lies outside the image 'f.png', which is 200 x 260"):
        cells_in_regions(as_channels_first(img), [rectangle("f.png", 300, 10, 340, 60, "shape 1")], "brightfield")


def test_regions_without_a_whole_cell_are_skipped_and_named():
    img, _ = disc_field()
    plane = as_channels_first(img)
    empty = rectangle("f.png", 0, 0, 8, 8, "shape 2")
    cells = cells_in_regions(plane, [empty, rectangle("f.png", 10, 10, 50, 105, "shape 3")], "brightfield")
    assert len(cells) == 2 and cells.skipped == ["shape 2"]
    assert cells.describe()["skipped_regions"] == ["shape 2"]
    line = skipped_warning(cells, 2)
    assert "\n" not in line and line.startswith("1 of 2 regions held no whole cell") and "shape 2" in line
    assert skipped_warning(cells_in_regions(plane, [rectangle("f.png", 10, 10, 50, 105)], "brightfield")) is None
    alone = cells_in_regions(plane, [empty], "brightfield")
    with pytest.raises(InputError, match="only 0 healthy cell") as refused:
        check_training_cells(alone)
    assert "held no whole cell: shape 2)" in str(refused.value)


def test_labels_and_points_select_cells_but_not_edge_cells():
    img, truth = disc_field()
    plane = as_channels_first(img)
    assert len(cells_from_labels(plane, truth, "f.png")) == truth.max()
    plane_cut = plane[:, :, 20:]  # the first column of cells now touches the left edge
    assert len(cells_from_labels(plane_cut, truth[:, 20:], "f.png")) < truth.max()
    got = cells_at_points(plane, np.array([[25.0, 25.0], [25.0, 65.0], [0.0, 0.0]]), "f.png", "brightfield",
                          labels=truth)
    assert len(got) == 2 and got.sources[0]["how"] == "rejected candidate"


def test_fields_match_regions_by_file_name_and_refuse_unknown_images():
    img, _ = disc_field()
    fields = {"/data/f1.png": as_channels_first(img)}
    cells = cells_from_fields(fields, [rectangle("f1.png", 10, 10, 50, 105)], "brightfield")
    assert len(cells) == 2 and cells.sources[0]["image"] == "f1.png"
    with pytest.raises(ValueError, match="is on 'other.png', which is not among the images given"):
        cells_from_fields(fields, [rectangle("other.png", 10, 10, 50, 105, "REGIONS.csv line 2")], "brightfield")


def test_too_few_cells_and_wrong_channels_are_refused_before_training():
    img, truth = disc_field()
    cells = cells_from_labels(as_channels_first(img), truth, "f.png", ids=[1, 2, 3])
    with pytest.raises(ValueError, match="only 3 healthy cell"):
        check_training_cells(cells, base_channels=1)
    with pytest.raises(ValueError, match=r"works on 3 channels \(RGB\) but the image has 1 channel \(grey\)"):
        check_training_cells(cells, base_channels=3, base_name="the base model 'giemsa-rbc'")
    check_training_cells(cells_from_labels(as_channels_first(img), truth, "f.png"), base_channels=1)
    with pytest.raises(ValueError, match="only 0 healthy"):
        check_training_cells(TrainingCells(), base_channels=1)
    nine = cells_from_labels(as_channels_first(img), truth, "f.png", ids=range(1, 10))
    check_training_cells(nine, base_channels=1)
    with pytest.raises(ValueError, match=r"only 9 healthy cell\(s\).*at least 10 are needed \(8 to train on, 2 held back"):
        check_training_cells(nine, base_channels=1, holdout_fraction=0.2)


def test_shapes_that_enclose_nothing_are_refused():
    with pytest.raises(ValueError, match="shape 1 is a line"):
        regions_from_shapes([np.zeros((2, 2))], ["line"], "f.png")
    with pytest.raises(ValueError, match="the Shapes layer is empty"):
        regions_from_shapes([], [], "f.png")
    polygon = regions_from_shapes([np.array([[0, 5, 5], [0, 5, 40], [0, 40, 22]])], ["polygon"], "f.png")[0]
    assert polygon.vertices.shape == (3, 2) and polygon.mask((50, 50))[20, 22]


def test_guess_modality_from_contrast():
    img, _ = disc_field()
    assert guess_modality(as_channels_first(img)) == "brightfield"
    assert guess_modality(as_channels_first(255 - img)) == "fluorescence"
    rgb = np.stack([img, img, np.clip(img + 60 * (img < 100), 0, 255)], -1)
    assert guess_modality(as_channels_first(rgb, rgb=True)) == "brightfield-stained"
    with pytest.raises(ValueError, match="choose a single plane"):
        as_channels_first(np.zeros((2, 3, 4, 5)))
