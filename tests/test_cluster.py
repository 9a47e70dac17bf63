"""Detection spread over Dask workers: blocks of big planes, many fields, failures, cancel and resume.

Real components throughout: the tiny model, a distributed LocalCluster of 2 worker processes, a
``dask scheduler`` and ``dask worker`` started as separate processes on 127.0.0.1.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import tifffile
from _tiny_models import tiny_model, tiny_model_file

from napari_supn_anomaly.cluster import detect_run
from napari_supn_anomaly.cluster.detect_run import run_detect
from napari_supn_anomaly.cluster.runners import DaskRunner, InProcessRunner
from napari_supn_anomaly.cluster.scorers import ScorerSpec
from napari_supn_anomaly.io import create_ome_zarr, open_image, results_complete
from napari_supn_anomaly.pipeline.stacks import DetectSettings, detect
from napari_supn_anomaly.scoring import resolve
from napari_supn_anomaly.synthetic import make_field

CLI = [sys.executable, "-c", "import sys; from napari_supn_anomaly.cli import main; sys.exit(main())"]
CORE = 128


@pytest.fixture(scope="module")
def cluster():
    runner = DaskRunner(workers=2)
    yield runner
    runner.close()


@pytest.fixture(scope="module")
def model_file():
    return tiny_model_file("fluorescence")


@pytest.fixture
def blocks_for_all(monkeypatch):
    """Every plane goes through blocks, however small."""
    monkeypatch.setattr(detect_run, "BIG_PLANE_PIXELS", 0)


def _settings(**kw):
    model = tiny_model("fluorescence")
    return DetectSettings(cell_diameter=model.cell_diameter_px, intensity="off", calibration="model", **kw)


def test_blocks_on_two_workers_equal_the_single_process_path(tmp_path, cluster, model_file, blocks_for_all):
    model = tiny_model("fluorescence")
    field = make_field((400, 352), "fluorescence", cell_diameter=model.cell_diameter_px, infected_fraction=0.3,
                       seed=3)
    tifffile.imwrite(tmp_path / "field.tif", field.image)
    tifffile.imwrite(tmp_path / "cells.tif", field.cells.astype(np.int32))
    settings = _settings()
    whole = detect(field.image, "YX", resolve(model), labels=field.cells, settings=settings)
    report = run_detect([tmp_path / "field.tif"], ["field"], ScorerSpec(model_file), settings,
                        str(tmp_path / "out"), cluster, labels=str(tmp_path / "cells.tif"), core=CORE)
    (outcome,) = report.outcomes
    assert outcome.ok, outcome.message
    assert "12 blocks" in outcome.message
    blocks = outcome.cell_table.set_index("cell_id").sort_index()
    single = whole.cell_table.set_index("cell_id").sort_index()
    assert blocks.index.tolist() == single.index.tolist()  # every cell once, none lost at a border
    half = model.crop_size / 2 + 1
    inside = ((single["y"] >= half) & (single["y"] <= field.image.shape[0] - half)
              & (single["x"] >= half) & (single["x"] <= field.image.shape[1] - half))
    assert inside.sum() >= 20
    np.testing.assert_allclose(blocks.loc[inside, "score"], single.loc[inside, "score"], atol=1e-5)
    np.testing.assert_allclose(blocks[["y", "x", "area"]], single[["y", "x", "area"]], atol=1e-9)
    assert (blocks["edge"] == single["edge"]).all()  # cut by the image's edge, not by a block's
    cells = np.asarray(open_image(tmp_path / "out" / "field_cells.ome.zarr").data)
    np.testing.assert_array_equal(cells, whole.cells)
    # the candidates, cut by the workers block by block, are those of the whole field
    ours, theirs = outcome.candidate_table, whole.candidate_table
    assert len(theirs) >= 3
    inside_ids = set(single.index[inside])
    ours, theirs = (t[t["cell_id"].isin(inside_ids)].sort_values(["cell_id", "y", "x"]) for t in (ours, theirs))
    np.testing.assert_array_equal(ours[["cell_id", "y", "x", "area"]], theirs[["cell_id", "y", "x", "area"]])
    np.testing.assert_allclose(ours["score"], theirs["score"], atol=1e-5)
    assert outcome.candidate_table["candidate_id"].tolist() == list(range(1, len(outcome.candidate_table) + 1))
    heat = np.asarray(open_image(tmp_path / "out" / "field_heatmap.ome.zarr").data)
    in_cells = np.isin(whole.cells, single.index[inside])
    np.testing.assert_allclose(heat[in_cells], whole.heatmap[in_cells], atol=1e-5)


def _discs_on_block_borders(pixel_size=(0.25, 0.25)):
    """A fluorescence image of round cells centred exactly on the borders and corners of 128 px blocks
    (3 x 3 of them: a side cut into equal parts)."""
    model = tiny_model("fluorescence")
    r = model.cell_diameter_px / 2
    centres = [(CORE, 60), (60, CORE), (CORE, CORE), (2 * CORE, 190), (190, 2 * CORE), (2 * CORE, 2 * CORE),
               (CORE, 2 * CORE - 50), (70, 70), (300, 60), (60, 300)]
    side = 3 * CORE
    yy, xx = np.mgrid[:side, :side]
    image = np.full((side, side), 20.0, np.float32)
    labels = np.zeros((side, side), np.int32)
    for k, (cy, cx) in enumerate(centres, 1):
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= r * r
        image[disc] = 180 - 40 * ((yy[disc] - cy) ** 2 + (xx[disc] - cx) ** 2) / (r * r)
        labels[disc] = k
    return image, labels, centres


def test_cells_on_block_borders_are_counted_once(tmp_path, cluster, model_file, blocks_for_all):
    image, _, centres = _discs_on_block_borders()
    create_ome_zarr(tmp_path / "slide.ome.zarr", image.shape, np.float32, "YX", (0.25, 0.25))[:] = image
    report = run_detect([tmp_path / "slide.ome.zarr"], ["slide"], ScorerSpec(model_file), _settings(),
                        str(tmp_path / "out"), cluster, core=CORE)
    (outcome,) = report.outcomes
    assert outcome.ok, outcome.message
    table = outcome.cell_table
    assert len(table) == len(centres) and table["cell_id"].is_unique
    found = table[["y", "x"]].to_numpy()
    for cy, cx in centres:  # each cell found exactly once, where it is
        assert (np.hypot(found[:, 0] - cy, found[:, 1] - cx) < 3).sum() == 1
    cells = open_image(tmp_path / "out" / "slide_cells.ome.zarr")
    heat = open_image(tmp_path / "out" / "slide_heatmap.ome.zarr")
    assert cells.pixel_size == heat.pixel_size == (0.25, 0.25)  # the input's pixel size is kept
    ids = np.unique(np.asarray(cells.data))
    assert sorted(ids[ids > 0]) == sorted(table["cell_id"])
    assert np.asarray(heat.data).dtype == np.float32 and np.asarray(cells.data).dtype == np.int32


def test_block_writes_sharing_a_zarr_chunk_lose_nothing(tmp_path, cluster):
    """Blocks on two workers rewrite the same zarr chunk at once: each keeps its own pixels."""
    from napari_supn_anomaly.cluster.tasks import write_block
    from napari_supn_anomaly.io import ZarrResultWriter

    writer = ZarrResultWriter(tmp_path, "slide", (512, 512), "YX", None)  # one chunk
    yy, xx = np.mgrid[:512, :512]
    owner = ((yy // 4 + xx // 4) % 24 + 1).astype(np.int32)  # every pixel belongs to exactly one of 24 blocks
    whole = (slice(0, 512), slice(0, 512))
    futures = [cluster.client.submit(write_block, writer.stores, (), whole, np.where(owner == k, k, 0).astype(np.int32),
                                     np.where(owner == k, k / 8, 0).astype(np.float32), pure=False)
               for k in range(1, 25)]
    cluster.client.gather(futures)
    labels, heat = writer.stores.read((), whole)
    np.testing.assert_array_equal(labels, owner)
    np.testing.assert_array_equal(heat, (owner / 8).astype(np.float32))


def test_a_block_is_written_chunk_by_chunk_where_its_cells_are(tmp_path):
    from napari_supn_anomaly.io import ZarrResultWriter

    writer = ZarrResultWriter(tmp_path, "slide", (2, 2600, 2300), "ZYX", (0.3, 0.3))  # 1024 px chunks
    window = (slice(900, 2200), slice(1000, 2100))  # crosses 3 x 3 chunks
    writer.stores.write((1,), (slice(0, 2600), slice(0, 2300)), np.full((2600, 2300), 7, np.int32),
                        np.full((2600, 2300), 0.5, np.float32))  # a neighbour's cells everywhere
    labels = np.zeros((1300, 1100), np.int32)
    labels[100:1250, 20:1090:3] = 9  # one block's cells, in every chunk it touches
    heatmap = np.where(labels > 0, 2.0, 0).astype(np.float32)
    writer.stores.write((1,), window, labels, heatmap)
    cells, heat = writer.stores.read((1,), (slice(0, 2600), slice(0, 2300)))
    expect = np.full((2600, 2300), 7, np.int32)
    expect[window] = np.where(labels > 0, 9, 7)
    np.testing.assert_array_equal(cells, expect)
    np.testing.assert_array_equal(heat, np.where(expect == 9, 2.0, 0.5).astype(np.float32))
    assert not writer.stores.read((0,), window)[0].any()  # the other plane untouched
    writer.discard()
    with pytest.raises(FileNotFoundError):  # a task still running after a discard recreates nothing
        writer.stores.write((1,), window, labels, heatmap)
    assert not list(tmp_path.iterdir())


def _killer(folder: Path, pids: list[int], killed: list):
    """Kill one worker as soon as a block has written cells into ``folder`` (a .partial store)."""
    def run():
        deadline = time.time() + 120
        while time.time() < deadline and not killed:
            if any(p.is_file() and not p.name.startswith(".") for p in (folder / "0").glob("*")):
                os.kill(min(pids), signal.SIGKILL)
                killed.append(folder.exists())  # True: the run was still going
            time.sleep(0.005)

    import threading

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_a_worker_killed_while_blocks_run_is_retried(tmp_path, cluster, model_file, blocks_for_all):
    image, _, centres = _discs_on_block_borders()
    create_ome_zarr(tmp_path / "slide.ome.zarr", image.shape, np.float32, "YX", (0.25, 0.25))[:] = image
    args = ([tmp_path / "slide.ome.zarr"], ["slide"], ScorerSpec(model_file), _settings(threshold=1.0))
    (reference,) = run_detect(*args, str(tmp_path / "ref"), InProcessRunner(), core=CORE).outcomes
    killed = []
    thread = _killer(tmp_path / "out" / ".slide_cells.ome.zarr.partial", list(cluster.client.run(os.getpid).values()),
                     killed)
    (outcome,) = run_detect(*args, str(tmp_path / "out"), cluster, core=CORE).outcomes
    thread.join(timeout=5)
    assert killed == [True]
    assert outcome.ok, outcome.message
    ours, theirs = (o.cell_table.sort_values("cell_id") for o in (outcome, reference))
    assert ours["cell_id"].tolist() == theirs["cell_id"].tolist() and len(ours) == len(centres)
    np.testing.assert_allclose(ours["score"], theirs["score"], atol=1e-5)
    assert len(reference.candidate_table) >= 3
    pd.testing.assert_frame_equal(outcome.candidate_table, reference.candidate_table, atol=1e-5)
    for name in ("slide_cells.ome.zarr", "slide_heatmap.ome.zarr"):
        np.testing.assert_array_equal(np.asarray(open_image(tmp_path / "out" / name).data),
                                      np.asarray(open_image(tmp_path / "ref" / name).data))


def test_ctrl_c_during_blocks_leaves_nothing_that_looks_done(tmp_path, cluster, model_file, blocks_for_all,
                                                             monkeypatch):
    image, _, _ = _discs_on_block_borders()
    create_ome_zarr(tmp_path / "slide.ome.zarr", image.shape, np.float32, "YX", None)[:] = image
    steps = []

    def interrupted(bar):
        steps.append(bar.done)
        if len(steps) == 3:  # some blocks written, others running or waiting
            raise KeyboardInterrupt

    monkeypatch.setattr(detect_run.ProgressBar, "step", interrupted)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt):
        run_detect([tmp_path / "slide.ome.zarr"], ["slide"], ScorerSpec(model_file), _settings(), str(out), cluster,
                   core=CORE)
    deadline = time.time() + 30
    while time.time() < deadline and any(cluster.client.processing().values()):
        time.sleep(0.05)  # cancelled tasks already running end on their own
    assert not results_complete(out, "slide")
    assert not [p for p in out.iterdir() if not p.name.startswith(".")]
    for partial in out.glob(".slide_*.partial"):  # at most a chunk a racing task wrote: never an image
        assert not (partial / ".zgroup").exists()


def test_a_killed_worker_is_retried(tmp_path, cluster, model_file):
    for i in range(6):
        tifffile.imwrite(tmp_path / f"f{i}.tif", make_field((200, 200), "fluorescence", cell_diameter=30,
                                                            seed=i).image)
    pids = cluster.client.run(os.getpid)
    killed = []

    def kill_one(outcome):
        if not killed:
            victim = min(pids.values())
            os.kill(victim, signal.SIGKILL)
            killed.append(victim)

    paths = [tmp_path / f"f{i}.tif" for i in range(6)]
    report = run_detect(paths, [p.stem for p in paths], ScorerSpec(model_file), DetectSettings(),
                        str(tmp_path / "out"), cluster, on_outcome=kill_one)
    assert killed and len(report.outcomes) == 6
    assert all(o.ok for o in report.outcomes), [o.message for o in report.failed]
    assert all(results_complete(tmp_path / "out", p.stem) for p in paths)


def test_one_bad_field_does_not_end_the_run(tmp_path, model_file):
    from napari_supn_anomaly.cli import main

    tifffile.imwrite(tmp_path / "a.tif", make_field((200, 200), "fluorescence", cell_diameter=30, seed=1).image)
    (tmp_path / "broken.tif").write_bytes(b"II*\x00 this is no image")
    tifffile.imwrite(tmp_path / "blank.tif", np.full((200, 200), 7, np.uint8))
    tifffile.imwrite(tmp_path / "c.tif", make_field((200, 200), "fluorescence", cell_diameter=30, seed=2).image)
    inputs = [str(tmp_path / n) for n in ("a.tif", "broken.tif", "blank.tif", "c.tif")]
    rc = main(["detect", *inputs, "--model", model_file, "--out", str(tmp_path / "out"), "--quiet"])
    assert rc == 3
    assert results_complete(tmp_path / "out", "a") and results_complete(tmp_path / "out", "c")
    assert not list((tmp_path / "out").glob("broken_*")) and not list((tmp_path / "out").glob("blank_*"))
    summary = pd.read_csv(tmp_path / "out" / "summary.csv")
    assert {"a", "c"} <= set(summary["image"])


def _fields(folder: Path, n: int) -> list[str]:
    paths = []
    for i in range(n):
        path = folder / f"field{i:02d}.tif"
        tifffile.imwrite(path, make_field((224, 224), "fluorescence", cell_diameter=30, seed=i).image)
        paths.append(str(path))
    return paths


def _env():
    return dict(os.environ, PYTHONWARNINGS="ignore", OMP_NUM_THREADS="1")


def test_external_scheduler_and_workers(tmp_path, model_file):
    inputs = _fields(tmp_path, 3)
    sched_file = tmp_path / "scheduler.json"
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--host", "127.0.0.1",
                                  "--port", "0", "--no-dashboard", "--scheduler-file", str(sched_file)],
                                 env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    worker = None
    try:
        for _ in range(300):
            if sched_file.exists() and sched_file.stat().st_size:
                break
            time.sleep(0.1)
        address = json.loads(sched_file.read_text())["address"]
        assert address.startswith("tcp://127.0.0.1:")
        worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", address, "--nthreads", "1",
                                   "--no-dashboard", "--host", "127.0.0.1"],
                                  env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        done = subprocess.run(CLI + ["detect", *inputs, "--model", model_file, "--out", str(tmp_path / "out"),
                                     "--scheduler", address], check=False, env=_env(), capture_output=True, text=True,
                              timeout=240)
        assert done.returncode == 0, done.stderr[-2000:]
        assert "the cluster at tcp://127.0.0.1" in done.stderr
        assert all(results_complete(tmp_path / "out", Path(p).stem) for p in inputs)
        by_file = DaskRunner(scheduler=str(sched_file))  # a scheduler file names the same cluster
        try:
            assert by_file.where == f"the cluster at {address}" and by_file.workers == 1
        finally:
            by_file.close()
    finally:
        for proc in (worker, scheduler):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=30)


def test_ctrl_c_leaves_only_complete_results_and_resume_finishes(tmp_path, model_file):
    inputs = _fields(tmp_path, 8)
    out = tmp_path / "out"
    # a shell's background job starts with SIGINT ignored, and Python then never raises KeyboardInterrupt
    code = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler)"
            "; from napari_supn_anomaly.cli import main; sys.exit(main())")
    interruptible = [sys.executable, "-c", code]
    # each field written as it finishes (pooled fields are all written at the end)
    run = subprocess.Popen(interruptible + ["detect", *inputs, "--model", model_file, "--out", str(out),
                                            "--workers", "1", "--calibrate-per-input"],
                           env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 180
    while time.time() < deadline and not list(out.glob("*_candidates.csv")):
        time.sleep(0.2)
    run.send_signal(signal.SIGINT)
    _, err = run.communicate(timeout=120)
    assert run.returncode == 130, err[-2000:]
    stems = [Path(p).stem for p in inputs]
    done = [s for s in stems if results_complete(out, s)]
    assert 1 <= len(done) < len(stems)
    for stem in stems:  # an input has all four results or none under their final names
        finals = [p for p in out.glob(f"{stem}_*") if not p.name.startswith(".")]
        assert len(finals) in (0, 4), finals
    resumed = subprocess.run(CLI + ["detect", *inputs, "--model", model_file, "--out", str(out), "--resume",
                                    "--calibrate-per-input"],
                             check=False, env=_env(), capture_output=True, text=True, timeout=240)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert resumed.stderr.count("skipped (--resume)") == len(done)
    assert all(results_complete(out, s) for s in stems)


def test_in_process_blocks_match_the_cluster_blocks(tmp_path, model_file, blocks_for_all):
    image, labels, _ = _discs_on_block_borders()
    tifffile.imwrite(tmp_path / "slide.tif", image)
    report = run_detect([tmp_path / "slide.tif"], ["slide"], ScorerSpec(model_file), _settings(),
                        str(tmp_path / "out"), InProcessRunner(), core=CORE)
    (outcome,) = report.outcomes
    assert outcome.ok and len(outcome.cell_table) == labels.max()


@pytest.fixture
def small_slides(monkeypatch):
    """Planes above 200 x 200 px count as whole slides; blocks of 128 px."""
    from napari_supn_anomaly.pipeline import tiles

    monkeypatch.setattr(tiles, "AUTO_TILE_PIXELS", 200 * 200)
    monkeypatch.setattr(tiles, "CORE_PX", CORE)


def _lazy_field():
    import dask.array as da

    field = make_field((400, 352), "fluorescence", cell_diameter=30, infected_fraction=0.3, seed=5)
    return field, da.from_array(field.image, chunks=(100, 100))


def test_a_lazy_image_is_detected_block_by_block_and_fills_in(small_slides):
    from napari_supn_anomaly.errors import Cancelled
    from napari_supn_anomaly.pipeline.stacks import iter_detect

    model = tiny_model("fluorescence")
    field, lazy = _lazy_field()
    events = []
    gen = iter_detect(lazy, "YX", resolve(model), settings=DetectSettings(calibration="model"))
    while True:
        try:
            event = next(gen)
        except StopIteration as done:
            result = done.value
            break
        events.append((event.stage, event.done, int((event.cells > 0).sum())))
    assert [e[:2] for e in events] == [("block", k) for k in range(1, 13)]
    filled = [e[2] for e in events]
    assert filled == sorted(filled) and 0 < filled[2] < filled[-1]  # the labels fill in block after block
    assert result.provenance["blocks"] == 12 and result.cell_table["cell_id"].is_unique
    whole = detect(field.image, "YX", resolve(model), settings=DetectSettings(calibration="model"))
    assert abs(len(result.cell_table) - len(whole.cell_table)) <= 2
    stop = {"now": False}
    gen = iter_detect(lazy, "YX", resolve(model), should_stop=lambda: stop["now"])
    next(gen)
    stop["now"] = True
    with pytest.raises(Cancelled):
        next(gen)


@pytest.mark.gui
def test_widget_fills_in_a_lazy_layer_and_cancels_within_a_block(make_napari_viewer, qtbot, small_slides):
    pytest.importorskip("napari")
    from qtpy.QtWidgets import QApplication

    from napari_supn_anomaly.widgets.model_registry import (
        register_model,
        unregister_model,
    )

    register_model("tiny fluorescence", tiny_model("fluorescence"))
    try:
        viewer = make_napari_viewer()
        _, lazy = _lazy_field()
        image = viewer.add_image(lazy, name="slide")
        _, widget = viewer.window.add_plugin_dock_widget("napari-supn-anomaly", "Detect anomalies")
        widget.select_model("tiny fluorescence")
        widget.select_image(image)
        worker = widget.run()
        seen = []
        worker.yielded.connect(lambda e: seen.append([layer.name for layer in viewer.layers]))
        qtbot.waitUntil(lambda: not widget.running, timeout=120_000)
        assert any("slide heatmap (blocks so far)" in names for names in seen)
        names = [layer.name for layer in viewer.layers]
        assert not any("blocks so far" in n for n in names) and len(names) > 1
        assert widget.result is not None and widget.result.provenance["blocks"] == 12

        worker = widget.run()
        events = []
        worker.yielded.connect(events.append)
        qtbot.waitUntil(lambda: bool(events) and events[-1].stage == "block", timeout=60_000)
        QApplication.processEvents()  # the blocks done so far have all reported
        at_cancel = events[-1].done
        with qtbot.waitSignal(worker.finished, timeout=60_000):
            widget.cancel()
        assert events[-1].done <= at_cancel + 2 and events[-1].done < 12  # the block running, at most
        assert not any("blocks so far" in layer.name for layer in viewer.layers)
    finally:
        unregister_model("tiny fluorescence")


def test_cli_reads_an_ome_zarr_slide_and_writes_ome_zarr(tmp_path, model_file, blocks_for_all, capsys):
    from napari_supn_anomaly.cli import main

    image, _, centres = _discs_on_block_borders()
    create_ome_zarr(tmp_path / "slide.ome.zarr", image.shape, np.float32, "YX", (0.5, 0.5))[:] = image
    rc = main(["detect", str(tmp_path / "slide.ome.zarr"), "--model", model_file, "--out", str(tmp_path / "out"),
               "--cell-diameter", str(tiny_model("fluorescence").cell_diameter_px), "--calibration", "model"])
    assert rc == 0, capsys.readouterr().err
    assert results_complete(tmp_path / "out", "slide")
    assert len(pd.read_csv(tmp_path / "out" / "slide_cells.csv")) == len(centres)
    assert open_image(tmp_path / "out" / "slide_heatmap.ome.zarr").pixel_size == (0.5, 0.5)
