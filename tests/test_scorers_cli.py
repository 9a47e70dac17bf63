"""supn-anomaly score-cells --scorer NAME with the seed papers' scorers (calibrated on --healthy cells)."""
import csv

import numpy as np
import pytest
import torch
from PIL import Image

from napari_supn_anomaly.cli import main

from _tiny_cells import disk_cells, tiny_model


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.set_num_threads(1)
    return tiny_model(iters=120).save(tmp_path_factory.mktemp("m") / "tiny")


def _folder(path, crops):
    path.mkdir(parents=True)
    for i, c in enumerate(crops):
        Image.fromarray(np.clip(c[0], 0, 255).astype(np.uint8)).save(path / f"c{i:02d}.png")
    return path


def test_score_cells_with_a_registry_scorer(model_file, tmp_path, capsys):
    healthy = _folder(tmp_path / "healthy", disk_cells(10, seed=21)[0])
    cells = _folder(tmp_path / "cells", np.concatenate([disk_cells(3, seed=22)[0], disk_cells(3, seed=23, blob=True)[0]]))
    out = tmp_path / "scores.csv"
    code = main(["score-cells", "--model", str(model_file), "--images", str(cells), "--out", str(out),
                 "--scorer", "combi", "--healthy", str(healthy), "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 6
    scores = np.array([float(r["score"]) for r in rows])
    assert np.isfinite(scores).all()
    assert all(0.0 <= float(r["healthy_fpr"]) <= 1.0 for r in rows)


def test_score_cells_registry_scorer_without_calibration_is_one_clear_line(model_file, tmp_path, capsys):
    cells = _folder(tmp_path / "cells", disk_cells(3, seed=24)[0])
    code = main(["score-cells", "--model", str(model_file), "--images", str(cells), "--out", str(tmp_path / "s.csv"),
                 "--scorer", "recon"])
    assert code == 2
    assert "--healthy" in capsys.readouterr().err
    code = main(["score-cells", "--model", str(model_file), "--images", str(cells), "--out", str(tmp_path / "s.csv"),
                 "--scorer", "ssl-ppii"])
    assert code == 2
    assert "--segmenter" in capsys.readouterr().err
