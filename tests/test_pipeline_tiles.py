"""Very large planes are processed in overlapping tiles with the same cells and scores."""
from __future__ import annotations

import numpy as np
import pytest

from _tiny_models import tiny_model
from napari_supn_anomaly.pipeline import tiles
from napari_supn_anomaly.errors import Cancelled
from napari_supn_anomaly.pipeline.stacks import DetectSettings, detect, iter_detect, run_to_end
from napari_supn_anomaly.pipeline.tiles import Tile, cells_of_core, plan_tiles
from napari_supn_anomaly.scoring import resolve
from napari_supn_anomaly.synthetic import make_field


@pytest.fixture(scope="module")
def field():
    return make_field((320, 288), "fluorescence", cell_diameter=30, infected_fraction=0.3, seed=21)


@pytest.fixture
def small_tiles(monkeypatch):
    monkeypatch.setattr(tiles, "AUTO_TILE_PIXELS", 200 * 200)
    monkeypatch.setattr(tiles, "CORE_PX", 100)


def test_tile_cores_cover_every_pixel_once():
    cover = np.zeros((250, 130), int)
    outer = np.zeros_like(cover)
    for t in plan_tiles(250, 130, 64, 10):
        cover[t.core] += 1
        outer[t.outer] += 1
    assert (cover == 1).all() and outer.max() > 1


def test_a_cell_belongs_to_the_tile_that_holds_its_centre():
    labels = np.zeros((40, 40), np.int32)
    labels[2:8, 2:8] = 1       # centre (4.5, 4.5): in the core
    labels[30:38, 30:38] = 2   # centre (33.5, 33.5): in the halo
    tile = Tile((slice(0, 40), slice(0, 40)), (slice(0, 20), slice(0, 20)))
    assert set(np.unique(cells_of_core(labels, tile))) == {0, 1}


def test_tiled_scores_equal_whole_plane_scores_for_given_cells(field, small_tiles):
    model = tiny_model("fluorescence")
    settings = DetectSettings(cell_diameter=model.cell_diameter_px, fpr=0.1, intensity="off")
    tiled = detect(field.image, "YX", resolve(model), labels=field.cells, settings=settings)
    tiles.AUTO_TILE_PIXELS = 10**9
    whole = detect(field.image, "YX", resolve(model), labels=field.cells, settings=settings)
    assert tiled.cell_table["cell_id"].tolist() == whole.cell_table["cell_id"].tolist()
    # crops reaching past the field's edge are padded with the background of the tile, not of the
    # whole plane, so cells at the edge may differ a little; all others are scored identically
    a, b = tiled.cell_table["score"].to_numpy(), whole.cell_table["score"].to_numpy()
    assert np.isclose(a, b, rtol=1e-4, atol=1e-4).mean() > 0.75
    np.testing.assert_allclose(a, b, rtol=0.03)
    np.testing.assert_array_equal(tiled.cells, whole.cells)


def test_tiled_segmentation_finds_the_same_cells(field, small_tiles):
    model = tiny_model("fluorescence")
    events = []
    tiled = run_to_end(iter_detect(field.image, "YX", resolve(model)), events.append)
    assert any("tile 3 of" in e.message for e in events)
    tiles.AUTO_TILE_PIXELS = 10**9
    whole = detect(field.image, "YX", resolve(model))
    assert abs(len(tiled.cell_table) - len(whole.cell_table)) <= 2
    assert tiled.cell_table["cell_id"].is_unique and tiled.cells.max() == len(tiled.cell_table)
    # each cell is one connected piece: nothing was split at a seam
    from skimage import measure
    assert measure.label(tiled.cells > 0).max() <= len(tiled.cell_table)


def test_cancel_stops_between_tiles(field, small_tiles):
    model = tiny_model("fluorescence")
    stop = {"now": False}
    gen = iter_detect(field.image, "YX", resolve(model), should_stop=lambda: stop["now"])
    seen = 0
    with pytest.raises(Cancelled):
        for event in gen:
            seen += 1
            if "tile 1 of" in event.message:
                stop["now"] = True
    assert seen < 40


def test_a_plane_with_an_empty_centre_takes_its_measures_where_there_are_cells(field, small_tiles):
    image = field.image.copy()
    image[100:220, 90:200] = np.median(field.image[field.cells == 0])  # no cells in the middle tiles
    result = detect(image, "YX", resolve(tiny_model("fluorescence")))
    assert len(result.cell_table) > 10 and result.provenance["tiles"] > 4
    assert 25 < result.provenance["cell_diameter_px"] < 35


@pytest.mark.parametrize("height,width,core", [(5000, 5000, 2048), (20000, 7, 2048), (4096, 4097, 2048), (100, 300, 128)])
def test_blocks_cover_the_plane_once_in_parts_of_one_size(height, width, core):
    from napari_supn_anomaly.pipeline.blocks import plan_blocks

    blocks = plan_blocks(height, width, 40, core)
    covered = np.zeros((height, width), np.int32)
    for block in blocks:
        covered[block.core] += 1
        assert block.outer[0].start == max(0, block.core[0].start - 40)
        assert block.outer[1].stop == min(width, block.core[1].stop + 40)
    assert (covered == 1).all()
    sides = {(b.core[0].stop - b.core[0].start, b.core[1].stop - b.core[1].start) for b in blocks}
    assert max(max(s) for s in sides) <= core
    assert max(s[0] for s in sides) - min(s[0] for s in sides) <= 1
    assert max(s[1] for s in sides) - min(s[1] for s in sides) <= 1
    assert len(blocks) == -(-height // core) * -(-width // core)  # no more blocks than cutting at ``core`` makes
