"""Model files: round trip, and one clear ModelFileError for anything that is not a good model file."""
import json

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from napari_supn_anomaly.models import AnomalyModel, ModelFileError, builtin_model_names, load_model, read_metadata
from napari_supn_anomaly.models.model_file import METADATA_KEY
from napari_supn_anomaly.supn import ArchConfig, SupnVAE

TINY = ArchConfig(crop_size=16, latent_dim=4, widths=(4, 8), head_widths=(4, 4))




def tiny_model(seed=0) -> AnomalyModel:
    torch.manual_seed(seed)
    net = SupnVAE(TINY)
    with torch.no_grad():  # make the heads non-trivial so the round trip checks real numbers
        for p in net.parameters():
            p.add_(0.05 * torch.randn_like(p))
    meta = {"name": "tiny", "modality": "fluorescence", "channel_names": ["fluorescence"],
            "cell_diameter_px": 7.5, "intensity": {"low": [10.0], "high": [200.0]},
            "score_rules": {"supn": "spot", "diag": "spot", "l2": "bright"},
            "calibration": {s: {"healthy_scores": [0.5, 1.0, 2.0, 3.0]} for s in ("supn", "diag", "l2")}}
    return AnomalyModel(net, meta)


@pytest.fixture
def saved(tmp_path):
    model = tiny_model()
    return model, model.save(tmp_path / "tiny.safetensors")


def crops(n=3, seed=1):
    rng = np.random.default_rng(seed)
    x = rng.uniform(10, 200, size=(n, 1, 16, 16)).astype(np.float32)
    m = np.zeros((n, 16, 16), bool)
    m[:, 4:12, 4:12] = True
    return x, m


def test_round_trip_keeps_weights_metadata_and_scores(saved):
    model, path = saved
    again = AnomalyModel.from_file(path)
    for k, v in model.net.state_dict().items():
        assert torch.equal(v, again.net.state_dict()[k]), k
    assert ArchConfig.from_dict(again.metadata["architecture"]) == TINY
    assert again.cell_diameter_px == 7.5 and again.channel_names == ["fluorescence"]
    assert again.score_rule("l2") == "bright"
    x, m = crops()
    for scorer in ("supn", "diag", "l2"):
        a = model.score_crops(x, m, scorer).scores
        b = again.score_crops(x, m, scorer).scores
        np.testing.assert_allclose(a, b, rtol=1e-5)
    assert again.healthy_fpr(2.0) == 0.5 and again.threshold_for_fpr(0.0) == 3.0


def test_saving_adds_the_suffix(tmp_path):
    path = tiny_model().save(tmp_path / "mymodel")
    assert path.name == "mymodel.safetensors" and path.exists()
    assert read_metadata(path)["name"] == "tiny"


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ModelFileError, match="not found"):
        AnomalyModel.from_file(tmp_path / "nope.safetensors")
    with pytest.raises(ModelFileError, match="folder"):
        AnomalyModel.from_file(tmp_path)


def test_unknown_builtin_name_lists_the_builtins():
    with pytest.raises(ModelFileError, match="no built-in model called 'no-such-model'"):
        load_model("no-such-model")


def test_text_file_is_not_a_model(tmp_path):
    bad = tmp_path / "notes.safetensors"
    bad.write_text("these are my notes, not a model")
    with pytest.raises(ModelFileError, match="not a napari-supn-anomaly model file"):
        AnomalyModel.from_file(bad)


def test_foreign_safetensors_file(tmp_path):
    foreign = tmp_path / "other.safetensors"
    save_file({"w": torch.zeros(3)}, str(foreign), metadata={"framework": "something else"})
    with pytest.raises(ModelFileError, match="not a napari-supn-anomaly model"):
        AnomalyModel.from_file(foreign)


def test_truncated_file(saved, tmp_path):
    _, path = saved
    data = path.read_bytes()
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ModelFileError, match="damaged"):
        AnomalyModel.from_file(cut)
    stub = tmp_path / "stub.safetensors"
    stub.write_bytes(data[:5])
    with pytest.raises(ModelFileError):
        AnomalyModel.from_file(stub)


def test_missing_weights_and_bad_architecture(saved, tmp_path):
    model, _ = saved
    state = {k: v for k, v in model.net.state_dict().items() if not k.startswith("heads.supn")}
    header = dict(model.metadata, architecture=TINY.to_dict(), format="napari-supn-anomaly-model", format_version=1)
    partial = tmp_path / "partial.safetensors"
    save_file(state, str(partial), metadata={METADATA_KEY: json.dumps(header)})
    with pytest.raises(ModelFileError, match="damaged or incomplete"):
        AnomalyModel.from_file(partial)
    odd = tmp_path / "odd.safetensors"
    header["architecture"] = dict(TINY.to_dict(), wings=3)
    save_file(model.net.state_dict(), str(odd), metadata={METADATA_KEY: json.dumps(header)})
    with pytest.raises(ModelFileError, match="damaged or incomplete"):
        AnomalyModel.from_file(odd)


def test_newer_format_version_asks_for_an_update(saved, tmp_path):
    model, _ = saved
    header = dict(model.metadata, architecture=TINY.to_dict(), format="napari-supn-anomaly-model", format_version=99)
    newer = tmp_path / "newer.safetensors"
    save_file(model.net.state_dict(), str(newer), metadata={METADATA_KEY: json.dumps(header)})
    with pytest.raises(ModelFileError, match="newer"):
        AnomalyModel.from_file(newer)


def test_builtin_fluorescence_model_loads_and_is_described():
    if "fluorescence-rbc" not in builtin_model_names():
        pytest.skip("the built-in model file has not been built (benchmarks/build/fluorescence_model.py)")
    model = load_model("fluorescence-rbc")
    assert model.channel_names == ["fluorescence"] and model.modality == "fluorescence"
    assert set(model.scorers) == {"supn", "diag", "l2"}
    for scorer in model.scorers:
        assert len(model.healthy_scores(scorer)) >= 50
    assert 10 < model.cell_diameter_px < model.crop_size
    assert model.metadata["training"]["data"]


def _turned(a, k):
    return np.ascontiguousarray(np.rot90(a, k, (-2, -1)))


def test_rotations_average_the_maps_of_the_turned_crops_and_survive_the_round_trip(tmp_path):
    plain = tiny_model()
    x, m = crops()
    expected = np.mean([_turned(plain.score_crops(_turned(x, k), _turned(m, k), "supn").maps, -k) for k in range(4)], 0)
    model = tiny_model()
    model.metadata["rotations"] = 4
    again = AnomalyModel.from_file(model.save(tmp_path / "turned.safetensors"))
    assert again.rotations == 4 and plain.rotations == 1
    four = again.score_crops(x, m, "supn")
    np.testing.assert_allclose(four.maps, expected, rtol=1e-4, atol=1e-4)
    # a crop turned a quarter scores as the crop, its map turned with it; one orientation alone does not
    turned = again.score_crops(_turned(x, 1), _turned(m, 1), "supn")
    np.testing.assert_allclose(turned.scores, four.scores, rtol=1e-4)
    np.testing.assert_allclose(turned.maps, _turned(four.maps, 1), rtol=1e-4, atol=1e-4)
    assert not np.allclose(plain.score_crops(_turned(x, 1), _turned(m, 1), "supn").scores,
                           plain.score_crops(x, m, "supn").scores, rtol=1e-4)


@pytest.mark.parametrize("rotations", [3, "4", True, 0])
def test_a_bad_rotations_entry_is_a_damaged_header(saved, tmp_path, rotations):
    model, _ = saved
    header = dict(model.metadata, rotations=rotations, architecture=TINY.to_dict(),
                  format="napari-supn-anomaly-model", format_version=1)
    bad = tmp_path / "bad.safetensors"
    save_file(model.net.state_dict(), str(bad), metadata={METADATA_KEY: json.dumps(header)})
    with pytest.raises(ModelFileError, match="rotations"):
        AnomalyModel.from_file(bad)


def test_the_heatmap_units_say_the_orientations_are_averaged():
    from napari_supn_anomaly.scoring import resolve

    model = tiny_model()
    assert "orientations" not in resolve(model, "supn").units
    model.metadata["rotations"] = 4
    assert resolve(model, "supn").units.endswith("mean of 4 orientations")
