"""The Review widget in a real napari viewer (xvfb-run): keys, undo, counts, save and restore."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from _tiny_models import tiny_model

napari = pytest.importorskip("napari")

PLUGIN = "napari-supn-anomaly"
SAMPLE = "synthetic_fluorescence_stack"


@pytest.fixture(scope="module")
def sample_result():
    """Detection on the fluorescence sample with a tiny model (once for the module)."""
    from napari_supn_anomaly.pipeline.stacks import (
        DetectSettings,
        iter_detect,
        run_to_end,
    )
    from napari_supn_anomaly.sample_data import load_sample
    from napari_supn_anomaly.scoring import resolve

    sample = load_sample("fluorescence")
    scorer = resolve(tiny_model("fluorescence"), None)
    events = iter_detect(sample.image, sample.axes, scorer, settings=DetectSettings(fpr=0.3))
    return run_to_end(events)


def viewer_with_result(make_napari_viewer, result):
    from napari_supn_anomaly.widgets import layers as layer_tools

    viewer = make_napari_viewer()
    viewer.open_sample(PLUGIN, "synthetic_fluorescence")
    image = viewer.layers[SAMPLE]
    layer_tools.show_result(viewer, result, image, layer_tools.layer_axes(image))
    _, widget = viewer.window.add_plugin_dock_widget(PLUGIN, "Review candidates")
    return viewer, image, widget


def test_review_with_keys_undo_save_and_restore(make_napari_viewer, qtbot, sample_result, tmp_path):
    from qtpy.QtCore import Qt

    from napari_supn_anomaly.widgets.layers import find_outputs

    viewer, _image, widget = viewer_with_result(make_napari_viewer, sample_result)
    assert widget.start()
    session = widget.session
    n = len(session.queue)
    assert n >= 6
    scores = session.cells["score"].to_numpy()[session.queue]
    assert np.all(np.diff(scores) <= 0)          # highest score first
    assert widget.tiles_drawn < n or n <= 12     # tiles are drawn lazily
    first_rows = session.queue[:5]
    current = session.current_cell()           # the viewer shows the current cell, on its plane
    assert round(viewer.dims.point[0]) == int(current["plane"])
    assert np.allclose(viewer.camera.center[-2:], [current["y"], current["x"]], atol=1.0)
    for key in (Qt.Key.Key_A, Qt.Key.Key_R, Qt.Key.Key_A, Qt.Key.Key_U, Qt.Key.Key_R):
        qtbot.keyClick(widget.gallery, key)
    qtbot.keyClick(widget.gallery, Qt.Key.Key_Z)           # undo the last reject
    assert session.current == first_rows[4]
    qtbot.keyClick(widget.gallery, Qt.Key.Key_A)
    status = session.cells["status"].to_numpy()[first_rows]
    assert list(status) == ["accepted", "rejected", "accepted", "unsure", "accepted"]
    counts = session.counts()
    assert (counts.accepted, counts.rejected, counts.unsure) == (3, 1, 1)
    assert "reviewed 5" in widget.counts_text and f"left {n - 5}" in widget.counts_text
    assert "accepted 3" in widget.counts_text and "parasitemia" in widget.parasitemia_text

    # the candidates layer shows each cell's status
    points = find_outputs(viewer, SAMPLE)["candidates"]
    keys = list(zip(points.features["plane"], points.features["cell_id"]))
    decided = {(int(session.cells.loc[r, "plane"]), int(session.cells.loc[r, "cell_id"])): s
               for r, s in zip(first_rows, status)}
    for key, shown in zip(keys, points.features["status"]):
        assert shown == decided.get((int(key[0]), int(key[1])), "candidate")
    colours = np.asarray(points.border_color)
    accepted_points = [i for i, k in enumerate(keys) if decided.get((int(k[0]), int(k[1]))) == "accepted"]
    assert accepted_points and np.allclose(colours[accepted_points[0], :3], [0xe8 / 255, 0x11 / 255, 0x2d / 255], atol=0.01)

    widget.save(tmp_path)
    saved = pd.read_csv(tmp_path / f"{SAMPLE}_cells.csv", dtype={"status": object}, keep_default_na=False)
    assert (saved["status"] == "accepted").sum() == 3 and (saved["status"] == "unsure").sum() == 1
    candidates = pd.read_csv(tmp_path / f"{SAMPLE}_candidates.csv")
    assert set(candidates["status"]) <= {"candidate", "accepted", "rejected", "unsure"}
    assert (candidates["status"] == "accepted").any()

    # a later decision goes into the folder at once (closing loses nothing)
    qtbot.keyClick(widget.gallery, Qt.Key.Key_R)
    saved = pd.read_csv(tmp_path / f"{SAMPLE}_cells.csv", dtype={"status": object}, keep_default_na=False)
    assert (saved["status"] == "rejected").sum() == 2

    # reopening the image with its results folder restores the review
    viewer2 = make_napari_viewer()
    viewer2.open_sample(PLUGIN, "synthetic_fluorescence")
    _, widget2 = viewer2.window.add_plugin_dock_widget(PLUGIN, "Review candidates")
    assert widget2.open_results(tmp_path, viewer2.layers[SAMPLE])
    restored = widget2.session.counts()
    assert (restored.accepted, restored.rejected, restored.unsure) == (3, 2, 1)
    assert widget2.session.cells["status"].tolist() == saved["status"].tolist()
    assert max(widget.key_latency_s) < 2.0


def test_rerun_asks_before_replacing_a_review_and_keeps_it(make_napari_viewer, qtbot, sample_result, tmp_path,
                                                            monkeypatch):
    import tempfile

    from napari_supn_anomaly.widgets import layers as layer_tools
    from napari_supn_anomaly.widgets.review_widget import confirm_replacing_review

    monkeypatch.setattr(tempfile, "gettempdir", lambda: str(tmp_path))
    viewer, _image, widget = viewer_with_result(make_napari_viewer, sample_result)
    assert confirm_replacing_review(viewer, SAMPLE, ask=lambda q: False)   # nothing reviewed: no question
    widget.start()
    widget.press("accepted")
    accepted = widget.session.decisions()
    # moving the sensitivity re-cuts the candidates: the review restarts and keeps the decision
    before = widget.session
    recut = sample_result.with_threshold(sample_result.threshold * 0.7)
    layer_tools.show_threshold(viewer, layer_tools.find_outputs(viewer, SAMPLE), recut)
    qtbot.waitUntil(lambda: widget.session is not before, timeout=10_000)
    assert widget.session.decisions() == accepted and len(widget.session.queue) > len(before.queue)
    points = layer_tools.find_outputs(viewer, SAMPLE)["candidates"]
    assert (points.features["status"] == "accepted").any()
    asked = []
    assert not confirm_replacing_review(viewer, SAMPLE, ask=lambda q: asked.append(q) or False)
    assert asked and "1 reviewed" in asked[0]
    assert confirm_replacing_review(viewer, SAMPLE, ask=lambda q: True)
    kept = list((tmp_path / "napari-supn-anomaly-reviews").glob("*.csv"))
    assert len(kept) == 1 and (pd.read_csv(kept[0])["status"] == "accepted").sum() == 1
