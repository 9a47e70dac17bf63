"""supn-anomaly train / score-cells on generated PNGs and real crops, and exit code 2 on bad input."""
import csv
import shutil

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from safetensors.torch import save_file

from napari_supn_anomaly.cli import main
from napari_supn_anomaly.crop_folders import read_crop, read_crop_folder
from napari_supn_anomaly.errors import InputError
from napari_supn_anomaly.models import AnomalyModel, builtin_model_names
from napari_supn_anomaly.supn import ArchConfig, SupnVAE

from conftest import require_data




def cell_image(rng, size=40, spot=False, rgb=False, bits=8):
    yy, xx = np.mgrid[:size, :size]
    r = rng.uniform(10, 13)
    mask = (yy - size / 2) ** 2 + (xx - size / 2) ** 2 < r * r
    img = 25 + 110 * mask + rng.normal(0, 4, (size, size))
    if spot:
        img += 90 * np.exp(-((yy - size / 2 - 3) ** 2 + (xx - size / 2 + 2) ** 2) / 2.0)
    img = np.clip(img, 0, 255)
    if bits == 16:
        img = (img * 200).astype(np.uint16)
    else:
        img = img.astype(np.uint8)
    if rgb:
        img = np.stack([img] * 3, -1)
    return img, mask


def write_cells(folder, n=6, seed=0, masks_folder=None, **kw):
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        img, mask = cell_image(rng, spot=(i % 3 == 2), **kw)
        Image.fromarray(img).save(folder / f"cell_{i:02d}.png")
        if masks_folder is not None:
            masks_folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray((mask * 255).astype(np.uint8)).save(masks_folder / f"cell_{i:02d}.png")
    return folder


def tiny_model_file(path, channels=1, names=("fluorescence",)):
    torch.manual_seed(0)
    net = SupnVAE(ArchConfig(crop_size=16, channels=channels, latent_dim=4, widths=(4, 8), head_widths=(4, 4)))
    meta = {"name": "tiny", "modality": "fluorescence", "channel_names": list(names), "cell_diameter_px": 8.0,
            "intensity": {"low": [20.0] * channels, "high": [200.0] * channels},
            "score_rules": {"supn": "spot", "diag": "spot", "l2": "bright"},
            "calibration": {s: {"healthy_scores": list(np.linspace(0, 5, 20))} for s in ("supn", "diag", "l2")}}
    return AnomalyModel(net, meta).save(path)


def read_csv(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def run_cli(capsys, *argv):
    code = main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code, err, *words):
    assert code == 2, err
    assert "Traceback" not in err
    lines = [ln for ln in err.strip().splitlines() if ln.strip()]
    assert lines[-1].startswith("supn-anomaly"), err
    assert ": error: " in lines[-1]
    for w in words:
        assert w.lower() in lines[-1].lower(), (w, lines[-1])


# -- reading crop folders ---------------------------------------------------------------------

def test_read_crops_of_every_kind(tmp_path):
    rng = np.random.default_rng(0)
    gray, _ = cell_image(rng)
    Image.fromarray(gray).save(tmp_path / "a.png")
    Image.fromarray(gray).save(tmp_path / "b.jpg")
    tifffile.imwrite(tmp_path / "c.tif", cell_image(rng, bits=16)[0])
    Image.fromarray(np.stack([gray] * 3, -1)).save(tmp_path / "d_rgb.png")
    assert read_crop(tmp_path / "a.png").shape == (1, 40, 40)
    assert read_crop(tmp_path / "b.jpg").dtype == np.float32
    c = read_crop(tmp_path / "c.tif")
    assert c.shape == (1, 40, 40) and c.max() > 255
    assert read_crop(tmp_path / "d_rgb.png").shape == (3, 40, 40)


def test_masks_matched_by_name_and_subfolders(tmp_path):
    write_cells(tmp_path / "img" / "sub", n=3, masks_folder=tmp_path / "msk" / "sub")
    (tmp_path / "msk" / "sub" / "cell_01.png").rename(tmp_path / "msk" / "cell_01.png")  # matched by stem
    (tmp_path / "msk" / "sub" / "cell_02.png").unlink()                                  # no mask: found later
    folder = read_crop_folder(tmp_path / "img", tmp_path / "msk")
    assert folder.names == ["sub/cell_00.png", "sub/cell_01.png", "sub/cell_02.png"]
    assert folder.masks[0] is not None and folder.masks[1] is not None and folder.masks[2] is None
    assert folder.masks[0].dtype == bool and folder.masks[0].any()


def test_crop_folder_errors(tmp_path):
    with pytest.raises(InputError, match="folder not found"):
        read_crop_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(InputError, match="no images"):
        read_crop_folder(tmp_path / "empty")


# -- score-cells ------------------------------------------------------------------------------

def test_score_cells_on_generated_pngs(tmp_path, capsys):
    imgs = write_cells(tmp_path / "cells", n=6, masks_folder=tmp_path / "masks")
    model = tiny_model_file(tmp_path / "tiny.safetensors")
    out = tmp_path / "scores.csv"
    for masks in (["--masks", tmp_path / "masks"], []):
        code, _, err = run_cli(capsys, "score-cells", "--model", model, "--images", imgs, *masks, "--out", out,
                               "--device", "cpu")
        assert code == 0, err
        rows = read_csv(out)
        assert [r["file"] for r in rows] == [f"cell_{i:02d}.png" for i in range(6)]
        assert all(np.isfinite(float(r["score"])) for r in rows)
        assert all(0.0 <= float(r["healthy_fpr"]) <= 1.0 for r in rows)
        assert {r["candidate"] for r in rows} <= {"0", "1"}
        assert {r["mask"] for r in rows} == ({"given"} if masks else {"found"})
        assert "6 cells scored" in err
    code, _, err = run_cli(capsys, "score-cells", "--model", model, "--images", imgs, "--out", out,
                           "--scorer", "l2", "--cell-diameter", "24")
    assert code == 0, err
    assert len(read_csv(out)) == 6


def test_score_cells_accepts_gray_saved_as_rgb(tmp_path, capsys):
    imgs = write_cells(tmp_path / "cells", n=3, rgb=True)
    model = tiny_model_file(tmp_path / "tiny.safetensors")
    code, _, err = run_cli(capsys, "score-cells", "--model", model, "--images", imgs, "--out", tmp_path / "s.csv")
    assert code == 0, err


def test_score_real_crops_with_the_builtin_model(tmp_path, capsys):
    data = require_data("supn_fl_cells", "validation")
    if "fluorescence-rbc" not in builtin_model_names():
        pytest.skip("the built-in model file has not been built (benchmarks/build/fluorescence_model.py)")
    imgs, masks = tmp_path / "raw", tmp_path / "mask"
    imgs.mkdir()
    masks.mkdir()
    for sub in ("healthy_test", "infected"):
        for f in sorted((data / sub / "raw").glob("*.png"))[:3]:
            shutil.copy(f, imgs / f"{sub}_{f.name}")
            shutil.copy(data / sub / "mask" / f.name, masks / f"{sub}_{f.name}")
    out = tmp_path / "real.csv"
    code, _, err = run_cli(capsys, "score-cells", "--model", "fluorescence-rbc", "--images", imgs,
                           "--masks", masks, "--out", out)
    assert code == 0, err
    rows = read_csv(out)
    assert len(rows) == 6 and {r["mask"] for r in rows} == {"given"}
    # the cell diameter measured on the 128 px crops is about 70 px
    assert all(50 < float(r["cell_diameter_px"]) < 90 for r in rows)


# -- train ------------------------------------------------------------------------------------

def test_train_then_score_and_fine_tune(tmp_path, capsys):
    imgs = write_cells(tmp_path / "healthy", n=24, seed=3)
    out = tmp_path / "mine.safetensors"
    code, _, err = run_cli(capsys, "train", "--images", imgs, "--out", out, "--iterations", "3", "--seed", "1",
                           "--device", "cpu")
    assert code == 0, err
    model = AnomalyModel.from_file(out)
    assert model.name == "mine" and model.metadata["training"]["settings"]["seed"] == 1
    assert len(model.healthy_scores("supn")) >= 2
    code, _, err = run_cli(capsys, "score-cells", "--model", out, "--images", imgs, "--out", tmp_path / "s.csv")
    assert code == 0, err
    tuned = tmp_path / "tuned"
    code, _, err = run_cli(capsys, "train", "--images", imgs, "--init", out, "--out", tuned, "--iterations", "2")
    assert code == 0, err
    tuned_model = AnomalyModel.from_file(tmp_path / "tuned.safetensors")
    assert tuned_model.metadata["base_model"]["name"] == "mine"


# -- bad input: exit code 2 and one line --------------------------------------------------------

def test_score_cells_bad_input(tmp_path, capsys):
    imgs = write_cells(tmp_path / "cells", n=3)
    model = tiny_model_file(tmp_path / "tiny.safetensors")
    out = tmp_path / "s.csv"

    def score(*argv):
        return run_cli(capsys, "score-cells", *argv)

    code, _, err = score("--model", model, "--images", tmp_path / "missing", "--out", out)
    assert_one_line_error(code, err, "folder not found")
    (tmp_path / "empty").mkdir()
    code, _, err = score("--model", model, "--images", tmp_path / "empty", "--out", out)
    assert_one_line_error(code, err, "no images")
    broken = write_cells(tmp_path / "broken", n=2)
    (broken / "zz_broken.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    code, _, err = score("--model", model, "--images", broken, "--out", out)
    assert_one_line_error(code, err, "zz_broken.png")
    notes = tmp_path / "notes.safetensors"
    notes.write_text("not a model")
    code, _, err = score("--model", notes, "--images", imgs, "--out", out)
    assert_one_line_error(code, err, "not a napari-supn-anomaly model")
    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(2)}, str(foreign))
    code, _, err = score("--model", foreign, "--images", imgs, "--out", out)
    assert_one_line_error(code, err, "not a napari-supn-anomaly model")
    cut = tmp_path / "cut.safetensors"
    cut.write_bytes(model.read_bytes()[: model.stat().st_size // 2])
    code, _, err = score("--model", cut, "--images", imgs, "--out", out)
    assert_one_line_error(code, err, "damaged")
    code, _, err = score("--model", "no-such-model", "--images", imgs, "--out", out)
    assert_one_line_error(code, err, "no built-in model")
    rgb = tmp_path / "rgb"
    rgb.mkdir()
    rng = np.random.default_rng(0)
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (30, 30, 3), dtype=np.uint8)).save(rgb / f"c{i}.png")
    code, _, err = score("--model", model, "--images", rgb, "--out", out)
    assert_one_line_error(code, err, "colour")
    three = tiny_model_file(tmp_path / "rgbmodel.safetensors", channels=3, names=("R", "G", "B"))
    code, _, err = score("--model", three, "--images", imgs, "--out", out)
    assert_one_line_error(code, err, "3 channel")
    small_masks = tmp_path / "small_masks"
    small_masks.mkdir()
    Image.fromarray(np.ones((10, 10), np.uint8)).save(small_masks / "cell_00.png")
    code, _, err = score("--model", model, "--images", imgs, "--masks", small_masks, "--out", out)
    assert_one_line_error(code, err, "mask")
    code, _, err = score("--model", model, "--images", imgs, "--out", tmp_path / "no" / "dir" / "s.csv")
    assert_one_line_error(code, err, "does not exist")
    code, _, err = score("--model", model, "--images", imgs, "--out", out, "--fpr", "3")
    assert_one_line_error(code, err, "--fpr")
    assert not out.exists()


def test_train_bad_input(tmp_path, capsys):
    imgs = write_cells(tmp_path / "cells", n=3)
    code, _, err = run_cli(capsys, "train", "--images", tmp_path / "missing", "--out", tmp_path / "m")
    assert_one_line_error(code, err, "folder not found")
    code, _, err = run_cli(capsys, "train", "--images", imgs, "--out", tmp_path / "m")
    assert_one_line_error(code, err, "at least")
    code, _, err = run_cli(capsys, "train", "--images", imgs, "--out", tmp_path / "m", "--init", tmp_path / "nope.safetensors")
    assert_one_line_error(code, err, "not found")
    code, _, err = run_cli(capsys, "train", "--images", imgs, "--out", tmp_path / "m", "--minutes", "-1")
    assert_one_line_error(code, err, "--minutes")
    rgb_model = tiny_model_file(tmp_path / "rgbmodel.safetensors", channels=3, names=("R", "G", "B"))
    many = write_cells(tmp_path / "many", n=10)
    code, _, err = run_cli(capsys, "train", "--images", many, "--out", tmp_path / "m", "--init", rgb_model)
    assert_one_line_error(code, err, "channel")


def test_train_requires_exactly_one_input(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        main(["train", "--out", str(tmp_path / "m")])
    assert exc.value.code == 2
