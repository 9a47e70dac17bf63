"""supn-anomaly evaluate: writes its table and ROC curves; bad input is one clear line."""
import argparse
import csv

import numpy as np
import pytest
import torch
from PIL import Image

from napari_supn_anomaly.cli import evaluate_cmd
from napari_supn_anomaly.errors import InputError

from _tiny_cells import disk_cells, tiny_model


def _run(argv):
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")
    evaluate_cmd.add_parser(sub, "evaluate")
    return evaluate_cmd.run(parser.parse_args(["evaluate", *argv]))


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    torch.set_num_threads(1)
    return tiny_model(iters=120).save(tmp_path_factory.mktemp("m") / "tiny")


def _write_folder(root, n_healthy=10, n_infected=6):
    for sub, (crops, _) in (("healthy", disk_cells(n_healthy, seed=11)),
                            ("infected", disk_cells(n_infected, seed=12, blob=True))):
        (root / sub).mkdir(parents=True)
        for i, c in enumerate(crops):
            Image.fromarray(np.clip(c[0], 0, 255).astype(np.uint8)).save(root / sub / f"cell{i:02d}.png")


def test_evaluate_writes_table_and_roc_curves(model_file, tmp_path, capsys):
    data = tmp_path / "cells"
    _write_folder(data)
    out = tmp_path / "out"
    assert _run(["--model", str(model_file), "--dataset", str(data), "--scorers", "recon,l2,combi",
                 "--out", str(out), "--bootstrap", "50"]) == 0
    rows = list(csv.DictReader(open(out / "results.csv")))
    assert [r["scorer"] for r in rows] == ["recon", "l2", "combi"]
    for r in rows:
        assert r["n_healthy"] == "5" and r["n_anomalous"] == "6"   # half the healthy cells calibrate
        assert 0.0 <= float(r["auroc"]) <= 1.0 and float(r["seconds_per_100_cells"]) > 0
    assert "| recon |" in (out / "results.md").read_text()
    pngs = list(out.glob("roc_*.png"))
    assert len(pngs) == 1 and pngs[0].stat().st_size > 1000
    assert "wrote" in capsys.readouterr().out


def test_evaluate_bad_input_is_one_clear_message(model_file, tmp_path):
    with pytest.raises(InputError, match="unknown scorer"):
        _run(["--model", str(model_file), "--dataset", str(tmp_path), "--scorers", "recon,bogus", "--out", str(tmp_path)])
    with pytest.raises(InputError, match="does not exist"):
        _run(["--model", str(model_file), "--dataset", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")])
    with pytest.raises(FileNotFoundError, match="healthy"):
        _run(["--model", str(model_file), "--dataset", str(tmp_path), "--out", str(tmp_path / "o")])


def test_evaluate_is_a_registered_subcommand():
    from napari_supn_anomaly.cli import COMMANDS
    assert COMMANDS["evaluate"] == "evaluate_cmd"


def test_saved_self_supervised_networks_carry_their_calibration(model_file, tmp_path):
    from napari_supn_anomaly.models import load_model
    from napari_supn_anomaly.scoring import ScorerNetworks, available_scorers

    data = tmp_path / "cells"
    _write_folder(data, n_healthy=12)
    nets = tmp_path / "nets"
    assert _run(["--model", str(model_file), "--dataset", str(data), "--scorers", "ssl-fpi", "--out",
                 str(tmp_path / "out"), "--bootstrap", "20", "--ssl-iterations", "3", "--no-perturbations",
                 "--save-segmenters", str(nets)]) == 0
    saved = list(nets.glob("*.safetensors"))
    assert len(saved) == 1
    model = load_model(model_file)
    networks = ScorerNetworks()
    assert networks.attach_file(model, saved[0], require_calibration=True) == "ssl-fpi"
    assert "ssl-fpi" in available_scorers(model, networks)


def test_all_scorers_of_a_one_channel_model_leave_out_the_stains_saturation(model_file):
    from napari_supn_anomaly.models import load_model
    from napari_supn_anomaly.scoring import scorer_names

    model = load_model(str(model_file))
    assert model.channels == 1
    names = evaluate_cmd.runnable_on(model, scorer_names())
    assert "supn+saturation" not in names and {"supn", "ensemble", "recon"} <= set(names)
