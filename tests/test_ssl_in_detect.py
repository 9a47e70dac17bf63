"""Self-supervised (ssl-*) scorers in whole-field detection: a trained network travels with the run."""
from __future__ import annotations

import numpy as np
import pytest
import tifffile
import torch

from _field_cells import CELL_DIAMETER as FIELD_CELL_DIAMETER
from _field_cells import field_cell_crops
from _tiny_models import tiny_model
from napari_supn_anomaly import scoring as S
from napari_supn_anomaly.cli import main
from napari_supn_anomaly.errors import ModelFileError, ScorerUnavailable
from napari_supn_anomaly.models import builtin_model_names, load_model, read_metadata
from napari_supn_anomaly.pipeline.stacks import DetectSettings, detect
from napari_supn_anomaly.synthetic import make_field

@pytest.fixture(scope="module")
def trained():
    """A tiny model and an ssl-ppii network trained (seconds) and calibrated on its healthy cells."""
    torch.set_num_threads(1)
    model = tiny_model("fluorescence").copy()
    train_crops, train_masks = field_cell_crops(model, seed=4)
    cal_crops, cal_masks = field_cell_crops(model, seed=5)
    events = list(S.train_calibrated_network("ssl-ppii", model, train_crops, train_masks, cal_crops, cal_masks,
                                            iterations=20, pool_size=24))
    segmenter, calibration = events[-1]
    model.metadata["calibration"].pop("ssl-ppii")  # the bare model: the network and calibration come separately
    return model, segmenter, calibration


@pytest.fixture
def network_file(trained, tmp_path):
    model, segmenter, calibration = trained
    return S.save_network(tmp_path / "tiny.ssl-ppii", segmenter, model, calibration)


def test_detection_runs_an_ssl_scorer_with_its_network(trained):
    model, segmenter, calibration = trained
    model = model.copy()
    field = make_field((192, 192), "fluorescence", cell_diameter=FIELD_CELL_DIAMETER, infected_fraction=0.3, seed=3)
    with pytest.raises(ScorerUnavailable, match="needs its trained network"):
        S.resolve(model, "ssl-ppii")
    assert "ssl-ppii" not in S.available_scorers(model)

    # a network given for the run, with a threshold (no calibration in the model)
    given = detect(field.image, "YX", S.resolve(model, "ssl-ppii", segmenter), settings=DetectSettings(threshold=0.5))
    assert given.provenance["scorer"] == "ssl-ppii"
    assert given.heatmap.shape == field.image.shape
    inside = given.cells > 0
    assert 0.0 <= given.heatmap.min() and given.heatmap.max() <= 1.0 and given.heatmap[inside].max() > 0
    assert (given.heatmap[~inside] == 0).all()

    # attached to the model with its calibration: listed, thresholded by healthy FPR, same maps
    networks = S.ScorerNetworks()
    assert networks.attach(model, segmenter, calibration) == "ssl-ppii"
    assert "ssl-ppii" in S.available_scorers(model, networks)
    scorer = S.resolve(model, "ssl-ppii", networks.get(model, "ssl-ppii"))
    attached = detect(field.image, "YX", scorer, settings=DetectSettings(fpr=0.05))
    np.testing.assert_allclose(attached.heatmap, given.heatmap, atol=1e-6)
    assert attached.provenance["threshold"] == pytest.approx(model.threshold_for_fpr(0.05, "ssl-ppii"))
    assert attached.provenance["target_fpr"] == 0.05


def test_a_network_for_another_scorer_is_refused(trained):
    model, segmenter, _ = trained
    with pytest.raises(ScorerUnavailable, match="trained for 'ssl-ppii', not 'ssl-fpi'"):
        S.resolve(model, "ssl-fpi", segmenter)


def test_network_file_round_trip_and_clear_errors(trained, network_file, tmp_path):
    model, segmenter, calibration = trained
    fresh = model.copy()
    networks = S.ScorerNetworks()
    assert networks.attach_file(fresh, network_file, require_calibration=True) == "ssl-ppii"
    assert fresh.metadata["calibration"]["ssl-ppii"]["healthy_scores"] == calibration.healthy_scores
    assert "ssl-ppii" in S.available_scorers(fresh, networks)
    assert networks.source(fresh, "ssl-ppii") == network_file.name

    # made for another model (other crop size and intensities)
    with pytest.raises(ModelFileError, match="does not fit the model 'fluorescence-rbc'"):
        networks.attach_file(load_model("fluorescence-rbc"), network_file)
    # an anomaly model is not a network; junk is not a network; a cut file is damaged; a missing one is missing
    with pytest.raises(ModelFileError, match="anomaly model, not a self-supervised scorer network"):
        S.load_network(model.save(tmp_path / "model"), model)
    junk = tmp_path / "junk.safetensors"
    junk.write_bytes(b"not a network at all" * 10)
    with pytest.raises(ModelFileError, match="not a napari-supn-anomaly model file"):
        S.load_network(junk, model)
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(network_file.read_bytes()[:-5000])
    with pytest.raises(ModelFileError, match="damaged"):
        S.load_network(cut, model)
    with pytest.raises(ModelFileError, match="not found"):
        S.load_network(tmp_path / "nothing.safetensors", model)

    # without a calibration: attached, but the stale entry of the model is dropped and the widget path refuses
    bare = S.save_network(tmp_path / "bare", segmenter, model)
    stale = model.copy()
    networks.attach(stale, segmenter, calibration)
    with pytest.raises(ModelFileError, match="no healthy calibration"):
        networks.attach_file(stale.copy(), bare, require_calibration=True)
    networks.attach_file(stale, bare)
    assert "ssl-ppii" not in stale.metadata["calibration"] and "ssl-ppii" not in S.available_scorers(stale, networks)


def test_detect_command_with_a_segmenter_file(trained, network_file, tmp_path, capsys):
    model, _, _ = trained
    model_file = model.save(tmp_path / "tiny-model")
    field = make_field((160, 160), "fluorescence", cell_diameter=FIELD_CELL_DIAMETER, infected_fraction=0.3, seed=8)
    image = tmp_path / "field.tif"
    tifffile.imwrite(image, field.image)
    out = tmp_path / "out"
    base = ["detect", str(image), "--model", str(model_file), "--out", str(out), "--quiet"]
    assert main(base + ["--scorer", "ssl-ppii"]) == 2
    assert "needs its trained network" in capsys.readouterr().err
    assert main(base + ["--segmenter", str(network_file)]) == 0, capsys.readouterr().err
    assert (out / "field_heatmap.tif").exists() and (out / "field_candidates.csv").exists()
    heat = tifffile.imread(out / "field_heatmap.tif")
    assert heat.max() <= 1.0 and heat.max() > 0
    assert main(base + ["--segmenter", str(model_file)]) == 2
    err = capsys.readouterr().err
    assert "not a self-supervised scorer network" in err and len(err.strip().splitlines()) == 1


def test_train_scorer_command_makes_a_calibrated_network_for_score_cells(tmp_path, capsys):
    from PIL import Image

    model = tiny_model("fluorescence")
    model_file = model.save(tmp_path / "tiny-model")
    crops, masks = field_cell_crops(model, seed=11)
    folder = tmp_path / "healthy"
    folder.mkdir()
    for i, (c, m) in enumerate(zip(crops, masks)):
        Image.fromarray(np.clip(c[0], 0, 255).astype(np.uint8)).save(folder / f"c{i:02d}.png")
    net = tmp_path / "net.safetensors"
    code = main(["train-scorer", "--model", str(model_file), "--scorer", "ssl-fpi", "--images", str(folder),
                 "--out", str(net), "--iterations", "10", "--pool", "16", "--holdout", "0.25"])
    assert code == 0, capsys.readouterr().err
    assert read_metadata(net)["calibration"]["n_cells"] >= 2
    out = tmp_path / "scores.csv"
    code = main(["score-cells", "--model", str(model_file), "--images", str(folder), "--out", str(out),
                 "--scorer", "ssl-fpi", "--segmenter", str(net)])
    assert code == 0, capsys.readouterr().err  # no --healthy needed: the network carries its calibration
    assert len(out.read_text().strip().splitlines()) == len(crops) + 1
    code = main(["score-cells", "--model", str(model_file), "--images", str(folder), "--out", str(out),
                 "--scorer", "ssl-ppii", "--segmenter", str(net)])
    assert code == 2 and "network of 'ssl-fpi', not of 'ssl-ppii'" in capsys.readouterr().err


def test_builtin_fluorescence_model_ships_a_calibrated_ssl_ppii_network():
    assert all("." not in n for n in builtin_model_names())  # shipped networks are not listed as models
    model = load_model("fluorescence-rbc")
    path = S.shipped_network_path(model, "ssl-ppii")
    assert path is not None and path.stat().st_size < 2_000_000
    assert "ssl-ppii" in S.available_scorers(model)
    assert model.threshold_for_fpr(0.01, "ssl-ppii") > 0
    segmenter = S.resolve(model, "ssl-ppii").network
    assert S.network_scorer(segmenter) == "ssl-ppii"
    assert S.resolve(load_model("fluorescence-rbc"), "ssl-ppii").network is segmenter  # loaded once
    # a copy (e.g. a fine-tuned model under another name) has no network unless one is attached
    other = model.copy()
    other.metadata["name"] = "fluorescence-rbc-finetuned"
    assert "ssl-ppii" not in S.available_scorers(other)


def test_builtin_giemsa_model_offers_its_calibrated_instant_scorers_and_ssl_ppii():
    model = load_model("giemsa-rbc")
    usable = S.available_scorers(model)
    assert {"recon", "grad-kl", "grad-rec", "grad-elbo", "combi", "combi-add", "ensemble"} <= set(usable)
    held_back = model.metadata["training"]["n_held_back"]
    for name in ("recon", "combi", "ensemble"):
        assert model.metadata["calibration"][name]["n_cells"] == held_back
        assert np.isfinite(model.threshold_for_fpr(0.01, name))
    shipped = [n for n in S.network_scorer_names() if S.shipped_network_path(model, n) is not None]
    assert shipped == ["ssl-ppii"] and "ssl-ppii" in usable
    assert model.metadata["calibration"]["ssl-ppii"]["n_cells"] == held_back
    assert S.resolve(model, "ssl-ppii").network.config.generator == "ppii"
