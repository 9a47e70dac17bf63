"""supn-anomaly detect and demo, end to end with a tiny model."""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import tifffile

from _tiny_models import tiny_model_file
from napari_supn_anomaly.cli import main
from napari_supn_anomaly.synthetic import make_field


@pytest.fixture(scope="module")
def model_file():
    return tiny_model_file("fluorescence")


@pytest.fixture(scope="module")
def field():
    return make_field((192, 192), "fluorescence", cell_diameter=30, infected_fraction=0.3, seed=9)


def test_detect_writes_the_four_files(tmp_path, model_file, field, capsys):
    tifffile.imwrite(tmp_path / "field.tif", field.image)
    assert main(["detect", str(tmp_path / "field.tif"), "--model", model_file, "--out", str(tmp_path / "o"),
                 "--fpr", "0.05", "--quiet"]) == 0
    out = tmp_path / "o"
    heat = tifffile.imread(out / "field_heatmap.tif")
    assert heat.dtype == np.float32 and heat.shape == field.image.shape
    cells = tifffile.imread(out / "field_cells.tif")
    assert cells.shape == field.image.shape and cells.max() > 5
    table = pd.read_csv(out / "field_cells.csv")
    assert {"cell_id", "y", "x", "area", "score", "candidate"} <= set(table.columns)
    assert len(table) == len(np.unique(cells)) - 1
    cands = pd.read_csv(out / "field_candidates.csv")
    assert {"y", "x", "score", "area", "cell_id"} <= set(cands.columns)
    assert "field.tif" in capsys.readouterr().out


def test_detect_stack_with_channel_and_labels(tmp_path, model_file, field):
    stack = np.stack([np.stack([field.image, 255 - field.image])] * 2)  # T, C, Y, X
    tifffile.imwrite(tmp_path / "stack.tif", stack, imagej=True, metadata={"axes": "TCYX"})
    labels = np.stack([field.cells] * 2).astype(np.uint16)
    tifffile.imwrite(tmp_path / "cells.tif", labels)
    assert main(["detect", str(tmp_path / "stack.tif"), "--model", model_file, "--out", str(tmp_path / "o"),
                 "--channel", "0", "--cells", str(tmp_path / "cells.tif"), "--cell-diameter", "30",
                 "--overlay", "--quiet"]) == 0
    heat = tifffile.imread(tmp_path / "o" / "stack_heatmap.tif")
    assert heat.shape == (2, 192, 192)
    assert sorted(p.name for p in (tmp_path / "o").glob("*.png")) == ["stack_plane0_overlay.png",
                                                                       "stack_plane1_overlay.png"]
    cells = pd.read_csv(tmp_path / "o" / "stack_cells.csv")
    assert "plane" in cells.columns and sorted(cells["plane"].unique()) == [0, 1]
    assert "plane" in pd.read_csv(tmp_path / "o" / "stack_candidates.csv").columns


def test_detect_on_a_12_bit_image_matches_intensities_and_honours_min_area(tmp_path, model_file, field):
    tifffile.imwrite(tmp_path / "f8.tif", field.image)
    tifffile.imwrite(tmp_path / "f12.tif", field.image.astype(np.uint16) * 16 + 300)
    runs = {}
    for name, extra in (("f8", ["--intensity", "match"]), ("f12", []), ("f12", ["--min-area", "4"])):
        out = tmp_path / f"{name}{len(extra)}"
        assert main(["detect", str(tmp_path / f"{name}.tif"), "--model", model_file, "--out", str(out),
                     "--fpr", "0.2", "--quiet"] + extra) == 0
        runs[(name, len(extra))] = (pd.read_csv(out / f"{name}_cells.csv"), pd.read_csv(out / f"{name}_candidates.csv"))
    np.testing.assert_allclose(runs[("f12", 0)][0]["score"], runs[("f8", 2)][0]["score"], rtol=1e-3, atol=1e-3)
    all_regions, big_regions = runs[("f12", 0)][1], runs[("f12", 2)][1]
    assert (big_regions["area"] >= 4).all()
    assert len(big_regions) == (all_regions["area"] >= 4).sum()


@pytest.mark.parametrize("extra, message", [
    (["--channel", "3"], "channel 3 does not exist"),
    (["--cell-diameter", "-4"], "positive"),
    (["--fpr", "2"], "between 0 and 1"),
    (["--min-area", "0"], "--min-area"),
])
def test_detect_bad_options_exit_2_with_one_line(tmp_path, model_file, field, capsys, extra, message):
    tifffile.imwrite(tmp_path / "f.tif", np.stack([field.image, field.image]), imagej=True,
                     metadata={"axes": "CYX"})
    code = main(["detect", str(tmp_path / "f.tif"), "--model", model_file, "--out", str(tmp_path / "o")] + extra)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and message in err[-1] and "Traceback" not in "".join(err)


def test_detect_bad_files_exit_2(tmp_path, model_file, field, capsys):
    tifffile.imwrite(tmp_path / "flat.tif", np.full((64, 64), 9, np.uint8))
    assert main(["detect", str(tmp_path / "flat.tif"), "--model", model_file, "--out", str(tmp_path)]) == 2
    assert "constant" in capsys.readouterr().err
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 64)
    tifffile.imwrite(tmp_path / "f.tif", field.image)
    assert main(["detect", str(tmp_path / "f.tif"), "--model", str(bad), "--out", str(tmp_path)]) == 2
    assert "bad.safetensors" in capsys.readouterr().err
    assert main(["detect", str(tmp_path / "nope.tif"), "--model", model_file, "--out", str(tmp_path)]) == 2
    assert "not found" in capsys.readouterr().err


def test_demo_on_the_builtin_sample(tmp_path, model_file, capsys):
    assert main(["demo", "--model", model_file, "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "true parasites" in out and "found" in out
    names = {p.name for p in tmp_path.iterdir()}
    assert "synthetic_fluorescence_stack_heatmap.tif" in names
    assert "synthetic_fluorescence_stack_plane0_overlay.png" in names


def test_the_giemsa_demo_counts_infected_cells_and_flags_healthy_ones_as_its_sensitivity_says(tmp_path, capsys):
    # the built-in giemsa-rbc on its sample of real cells of its own slide: the threshold's expected
    # false candidates and the healthy cells it flagged are the same kind of count
    assert main(["demo", "--sample", "giemsa", "--out", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    found = re.search(r"found (\d+) of (\d+) true infected cells .*; (\d+) healthy cells? of (\d+) with a false", out)
    assert found, out
    hit, infected, flagged, healthy = map(int, found.groups())
    assert infected > 0 and hit >= infected - 1
    assert flagged <= 0.05 * healthy  # a stained-smear model's default asks for 1%
    assert "fewer than 1 false candidate expected" in out
    assert "giemsa_real_cells_fields_plane1_overlay.png" in {p.name for p in tmp_path.iterdir()}


def test_ctrl_c_as_the_program_exits_after_its_work_is_neither_a_kill_nor_a_traceback(tmp_path, model_file, field):
    # torch takes a while to shut down after the summary line; a Ctrl-C then killed the process
    # (exit -2, no message) or printed a KeyboardInterrupt traceback (benchmarks/fuzz_bad_input.py)
    for name in ("a", "b"):
        tifffile.imwrite(tmp_path / f"{name}.tif", field.image)
    run = "import sys; from napari_supn_anomaly.cli import main; sys.exit(main())"
    proc = subprocess.Popen([sys.executable, "-c", run, "detect", str(tmp_path / "a.tif"), str(tmp_path / "b.tif"),
                             "--model", model_file, "--out", str(tmp_path / "o")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    seen = []
    for line in proc.stderr:
        seen.append(line)
        if "inputs done" in line:
            time.sleep(0.1)
            os.killpg(proc.pid, signal.SIGINT)
            break
    rest = proc.stderr.read()
    proc.wait(timeout=120)
    assert any("2 of 2 inputs done" in line for line in seen), "".join(seen) + rest
    assert proc.returncode in (0, 130), (proc.returncode, rest)
    assert "Traceback" not in rest and "KeyboardInterrupt" not in rest, rest
    assert len(list((tmp_path / "o").glob("a_*"))) == 4 and len(list((tmp_path / "o").glob("b_*"))) == 4
