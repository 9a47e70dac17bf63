"""open_image through bioio, axis confirmation, and writing results."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import tifffile

from napari_supn_anomaly.errors import InputError
from napari_supn_anomaly.io import open_image, with_axes, write_result
from napari_supn_anomaly.pipeline.candidates import cell_table
from napari_supn_anomaly.pipeline.result import DetectionResult


@pytest.fixture
def rng():
    return np.random.default_rng(0)


def test_plain_tiffs(tmp_path, rng):
    tifffile.imwrite(tmp_path / "plane.tif", rng.integers(0, 4000, (40, 50), dtype=np.uint16))
    tifffile.imwrite(tmp_path / "z.tif", rng.integers(0, 255, (5, 40, 50), dtype=np.uint8))
    tifffile.imwrite(tmp_path / "rgb.tif", rng.integers(0, 255, (40, 50, 3), dtype=np.uint8), photometric="rgb")
    plane = open_image(tmp_path / "plane.tif")
    assert plane.axes == "YX" and plane.shape == (40, 50) and plane.data.dtype == np.uint16
    assert np.array_equal(np.asarray(plane.data), tifffile.imread(tmp_path / "plane.tif"))
    assert open_image(tmp_path / "z.tif").axes == "ZYX"
    rgb = open_image(tmp_path / "rgb.tif")
    assert rgb.axes == "YXS" and rgb.is_rgb


def test_three_plane_tiff_is_read_as_rgb_until_the_user_says_otherwise(tmp_path, rng):
    data = rng.integers(0, 255, (3, 40, 50), dtype=np.uint8)
    tifffile.imwrite(tmp_path / "three.tif", data)
    image = open_image(tmp_path / "three.tif")
    assert image.axes == "YXS"                 # the gotcha
    channels = with_axes(image, "YXC")
    assert channels.axes == "CYX" and channels.shape == (3, 40, 50)
    np.testing.assert_array_equal(np.asarray(channels.data), data)
    planes = with_axes(image, "yxz")
    assert planes.axes == "ZYX"
    with pytest.raises(InputError, match="one letter per dimension"):
        with_axes(image, "YX")
    with pytest.raises(InputError, match="at most once"):
        with_axes(image, "YYX")


def test_ome_tiff_gives_channel_names_and_pixel_size(tmp_path, rng):
    import bioio
    from bioio_ome_tiff.writers import OmeTiffWriter

    data = rng.integers(0, 255, (2, 3, 40, 50), dtype=np.uint16)
    OmeTiffWriter.save(data, tmp_path / "s.ome.tif", dim_order="TCYX", channel_names=["BF", "FL", "DAPI"],
                       physical_pixel_sizes=bioio.PhysicalPixelSizes(None, 0.1, 0.1))
    image = open_image(tmp_path / "s.ome.tif")
    assert image.axes == "TCYX" and image.channel_names == ["BF", "FL", "DAPI"]
    assert image.pixel_size == pytest.approx((0.1, 0.1))
    ordered = with_axes(image, image.axes)
    assert ordered.axes == "CTYX" and ordered.shape == (3, 2, 40, 50)


def test_unreadable_inputs_give_one_clear_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        open_image(tmp_path / "missing.tif")
    (tmp_path / "notes.txt").write_text("hello")
    with pytest.raises(InputError, match="could not be read.*TIFF, OME-TIFF, OME-Zarr, PNG or JPEG files are read"):
        open_image(tmp_path / "notes.txt")
    (tmp_path / "field.png").write_text("not a picture")  # a supported format: the file is at fault
    with pytest.raises(InputError, match="field.png could not be read: it is damaged or not an image") as err:
        open_image(tmp_path / "field.png")
    assert "bioio-nd2" not in str(err.value)
    with pytest.raises(InputError, match="folder"):
        open_image(tmp_path)


def test_write_result_files(tmp_path):
    labels = np.zeros((30, 40), np.int32)
    labels[5:25, 5:20] = 1
    labels[5:25, 22:38] = 2
    heat = np.zeros((30, 40), np.float32)
    heat[10, 10] = 5.0
    result = DetectionResult(heat, labels, cell_table(heat, labels), None, 0.0,
                             provenance={"model": "m", "threshold": 1.0}).with_threshold(1.0)
    paths = write_result(result, tmp_path / "out", "field")
    assert [p.name for p in paths] == ["field_heatmap.tif", "field_cells.tif", "field_cells.csv",
                                       "field_candidates.csv"]
    assert tifffile.imread(paths[0]).dtype == np.float32
    np.testing.assert_array_equal(tifffile.imread(paths[1]), labels)
    cells = pd.read_csv(paths[2])
    assert list(cells.columns[:6]) == ["cell_id", "y", "x", "area", "score", "candidate"]
    assert cells["candidate"].tolist() == [True, False]
    cands = pd.read_csv(paths[3])
    assert {"y", "x", "score", "area", "cell_id"} <= set(cands.columns) and len(cands) == 1


def test_a_result_waiting_for_the_runs_threshold_comes_back_whole_without_pickle(tmp_path):
    import pandas as pd

    from napari_supn_anomaly.io import read_waiting_result, write_waiting_result
    from napari_supn_anomaly.pipeline.result import DetectionResult

    cells = pd.DataFrame({"plane": [0, 1], "t": [0, 1], "cell_id": [1, 2], "score": [1.5, 9.25],
                          "candidate": [False, True], "edge": [True, False], "kind": ["red_cell", "red_cell"],
                          "status": ["", "candidate"]})
    candidates = pd.DataFrame({"candidate_id": pd.Series([], dtype=np.int64), "score": pd.Series([], dtype=float)})
    result = DetectionResult(np.random.default_rng(0).random((2, 8, 9), dtype=np.float32),
                             np.arange(144, dtype=np.int32).reshape(2, 8, 9), cells, candidates, 4.5,
                             {"model": "m", "calibration": {"method": "slide", "cells": np.int64(2)}}, "T", 3)
    path = tmp_path / ".f.detect.partial.npz"
    write_waiting_result(result, path)
    back = read_waiting_result(path)
    assert np.array_equal(back.heatmap, result.heatmap) and np.array_equal(back.cells, result.cells)
    pd.testing.assert_frame_equal(back.cell_table, cells)
    pd.testing.assert_frame_equal(back.candidate_table, candidates)
    assert (back.threshold, back.plane_axes, back.min_area) == (4.5, "T", 3)
    assert back.provenance == {"model": "m", "calibration": {"method": "slide", "cells": 2}}
