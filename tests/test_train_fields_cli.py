"""supn-anomaly train --init MODEL --fields IMAGE... --regions REGIONS.csv, then detect --model with the result."""
import numpy as np
import pytest
import tifffile

from _tiny_models import tiny_model_file
from napari_supn_anomaly.cli import main
from napari_supn_anomaly.models import load_model, read_metadata


def disc_field(h=240, w=300, r=12, spacing=40, seed=0):
    """Dark discs on a light background (unstained bright-field), uint8."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    img = np.full((h, w), 225.0)
    for cy in range(spacing // 2 + 4, h - r - 2, spacing):
        for cx in range(spacing // 2 + 4, w - r - 2, spacing):
            img[(yy - cy) ** 2 + (xx - cx) ** 2 <= (r + rng.uniform(-1, 1)) ** 2] = 70
    return np.clip(img + rng.normal(0, 3, img.shape), 0, 255).astype(np.uint8)


@pytest.fixture
def fields(tmp_path):
    paths = []
    for i in range(2):
        p = tmp_path / f"field{i}.tif"
        tifffile.imwrite(p, disc_field(seed=i))
        paths.append(str(p))
    regions = tmp_path / "REGIONS.csv"
    regions.write_text("image,y0,x0,y1,x1\nfield0.tif,0,0,130,300\nfield1.tif,0,0,130,170\n")
    return paths, regions


def test_train_on_fields_then_detect_with_the_result(tmp_path, fields, capsys):
    paths, regions = fields
    base = tiny_model_file("fluorescence")
    base_bytes = open(base, "rb").read()
    out = tmp_path / "new-scope.safetensors"
    code = main(["train", "--init", base, "--fields", *paths, "--regions", str(regions), "--out", str(out),
                 "--iterations", "3", "--minutes", "1", "--seed", "2", "--device", "cpu"])
    assert code == 0, capsys.readouterr().err
    assert open(base, "rb").read() == base_bytes          # the base model file is never modified
    meta = read_metadata(out)
    assert meta["modality"] == "brightfield" and meta["training"]["finetune"]["intensity_inverted"]
    assert meta["base_model"]["name"] == "tiny-fluorescence" and meta["base_model"]["source"] == base
    data = meta["training"]["data"]
    assert sorted(data["train"]["images"] + data["held_back"]["images"])[0] == "field0.tif"
    assert {r["image"] for r in data["train"]["regions"]} == {"field0.tif", "field1.tif"}
    assert meta["training"]["finetune"]["seed"] == 2
    assert len(meta["calibration"]["supn"]["healthy_scores"]) == meta["training"]["n_held_back"] >= 2

    detect_dir = tmp_path / "detected"
    assert main(["detect", paths[1], "--model", str(out), "--out", str(detect_dir)]) == 0
    assert (detect_dir / "field1_cells.csv").exists() and (detect_dir / "field1_heatmap.tif").exists()
    assert load_model(out).modality == "brightfield"


@pytest.mark.parametrize("extra, message", [
    (["--regions", "{missing}"], "regions file not found"),
    ([], "--fields needs --regions"),
    (["--regions", "{outside}"], "lies outside the image"),
    (["--regions", "{other}"], "is on 'other.tif', which is not among the images given"),
])
def test_bad_field_inputs_exit_2_with_one_line(tmp_path, fields, capsys, extra, message):
    paths, _ = fields
    (tmp_path / "outside.csv").write_text("image,y0,x0,y1,x1\nfield0.tif,500,500,600,600\n")
    (tmp_path / "other.csv").write_text("image,y0,x0,y1,x1\nother.tif,0,0,100,100\n")
    extra = [e.format(missing=tmp_path / "none.csv", outside=tmp_path / "outside.csv", other=tmp_path / "other.csv")
             for e in extra]
    code = main(["train", "--init", tiny_model_file("fluorescence"), "--fields", *paths, *extra,
                 "--out", str(tmp_path / "m.safetensors")])
    err = capsys.readouterr().err
    assert code == 2 and message in err, err
    assert len(err.strip().splitlines()) == 1
    assert not (tmp_path / "m.safetensors").exists()


def test_fields_need_a_base_model(tmp_path, fields, capsys):
    paths, regions = fields
    code = main(["train", "--fields", *paths, "--regions", str(regions), "--out", str(tmp_path / "m.safetensors")])
    assert code == 2 and "--init" in capsys.readouterr().err
