"""Issue 16: bad input and faults end in a correct result or one clear line (exit 2), never a
traceback, a hang, a lost model or result, or a silent "all clear". One test per case of the issue."""
from __future__ import annotations

import contextlib
import errno
import json
import os
import signal
import subprocess

import numpy as np
import pytest
import tifffile
import torch
from PIL import Image
from safetensors.torch import load_file, save_file

from _tiny_models import tiny_model, tiny_model_file as trained_model_file
from napari_supn_anomaly import files
from napari_supn_anomaly.errors import InputError, ModelFileError, NoCellsFound
from napari_supn_anomaly.models import load_model
from napari_supn_anomaly.models.model_file import METADATA_KEY
from napari_supn_anomaly.pipeline.stacks import DetectSettings, detect
from napari_supn_anomaly.scoring import resolve
from napari_supn_anomaly.synthetic import make_field
from test_cli_engine import assert_one_line_error, run_cli, tiny_model_file, write_cells


@pytest.fixture(scope="module")
def model_file():
    return trained_model_file("fluorescence")


@pytest.fixture(scope="module")
def field():
    return make_field((192, 192), "fluorescence", cell_diameter=30, infected_fraction=0.3, seed=9)


@pytest.fixture
def field_tif(tmp_path, field):
    path = tmp_path / "field.tif"
    tifffile.imwrite(path, field.image)
    return path


def detect_cli(capsys, image, model, out, *extra):
    return run_cli(capsys, "detect", image, "--model", model, "--out", out, "--quiet", *extra)


def never(what):
    def refuse(*_a, **_k):
        raise AssertionError(f"{what} started although the command should have stopped before it")
    return refuse


@contextlib.contextmanager
def within(seconds: int):
    """Fail instead of hanging: SIGALRM interrupts a blocking open() of a FIFO in this thread."""
    if not hasattr(signal, "SIGALRM"):  # Windows: no alarm (and no FIFOs)
        yield
        return

    def alarm(*_):
        raise TimeoutError(f"still running after {seconds} s")
    previous = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, previous)


def with_header(tmp_path, source: str, name: str, change) -> str:
    """A copy of the model file ``source`` whose JSON header (or weights) ``change`` damages."""
    tensors = load_file(source)
    with open(source, "rb") as fh:
        size = int.from_bytes(fh.read(8), "little")
        meta = json.loads(json.loads(fh.read(size))["__metadata__"][METADATA_KEY])
    header = change(meta, tensors)
    path = tmp_path / f"{name}.safetensors"
    save_file(tensors, str(path), metadata={METADATA_KEY: json.dumps(meta if header is None else header)})
    return str(path)


# -- data loss --------------------------------------------------------------------------------------

def test_train_out_existing_model_is_refused_without_overwrite(tmp_path, capsys):
    cells = write_cells(tmp_path / "cells", n=10)
    existing = tmp_path / "mine.safetensors"
    tiny_model_file(existing)
    before = existing.read_bytes()
    for out in (existing, tmp_path / "mine"):  # the suffix is added, so "mine" is the same file
        code, _, err = run_cli(capsys, "train", "--images", cells, "--out", out, "--iterations", "2")
        assert_one_line_error(code, err, "already exists", "--overwrite")
    assert existing.read_bytes() == before
    code, _, err = run_cli(capsys, "train", "--images", cells, "--out", existing, "--iterations", "2", "--overwrite")
    assert code == 0, err
    assert existing.read_bytes() != before and load_model(existing).name == "mine"


def test_train_never_replaces_the_init_model(tmp_path, capsys, monkeypatch):
    import napari_supn_anomaly.training.finetune as finetune_module

    monkeypatch.setattr(finetune_module, "finetune", never("fine-tuning"))
    cells = write_cells(tmp_path / "cells", n=10)
    base = tmp_path / "base.safetensors"
    tiny_model_file(base)
    before = base.read_bytes()
    for out in (base, tmp_path / "base"):
        for extra in ((), ("--overwrite",)):
            code, _, err = run_cli(capsys, "train", "--images", cells, "--init", base, "--out", out, *extra)
            assert_one_line_error(code, err, "--out", "base.safetensors", "never replaced")
    assert base.read_bytes() == before


# -- work lost at the end -----------------------------------------------------------------------------

@pytest.mark.parametrize("place", [
    pytest.param("proc", marks=pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="no /proc on this system")),
    "read-only file system"])
def test_train_into_an_unwritable_place_stops_before_training(tmp_path, capsys, monkeypatch, place):
    import napari_supn_anomaly.training as training

    monkeypatch.setattr(training, "fit_anomaly_model", never("training"))
    cells = write_cells(tmp_path / "cells", n=10)
    folder = tmp_path / "read-only"
    if place == "proc":
        folder = "/proc"
    else:  # root writes through permission bits: only a read-only mount stops it
        folder.mkdir()
        if not is_root() or subprocess.run(["mount", "-t", "tmpfs", "-o", "ro,size=64k", "tmpfs", str(folder)],
                                               capture_output=True).returncode:
            folder.chmod(0o555)
            if os.access(folder, os.W_OK):
                pytest.skip("cannot make a read-only folder here (root without mount permission); /proc covers it")
    try:
        code, _, err = run_cli(capsys, "train", "--images", cells, "--out", f"{folder}/model.safetensors")
    finally:
        if place != "proc" and os.path.ismount(folder):
            subprocess.run(["umount", str(folder)], check=True)
    assert_one_line_error(code, err, "--out", f"cannot write in {folder}")


@pytest.mark.parametrize("command", ["detect", "demo"])
def test_out_that_is_a_file_stops_before_detection(tmp_path, capsys, monkeypatch, model_file, field_tif, command):
    import napari_supn_anomaly.pipeline.stacks as stacks

    monkeypatch.setattr(stacks, "iter_detect", never("detection"))
    taken = tmp_path / "results"
    taken.write_text("my notes")
    argv = ([command, field_tif, "--model", model_file] if command == "detect" else [command, "--model", model_file])
    code, _, err = run_cli(capsys, *argv, "--out", taken)
    assert_one_line_error(code, err, "--out", "is a file, not a folder")
    assert taken.read_text() == "my notes"


def test_score_cells_never_writes_over_a_crop(tmp_path, capsys):
    cells = write_cells(tmp_path / "cells", n=4)
    before = (cells / "cell_00.png").read_bytes()
    model = tiny_model_file(tmp_path / "tiny.safetensors")
    code, _, err = run_cli(capsys, "score-cells", "--model", model, "--images", cells, "--out", cells / "cell_00.png")
    assert_one_line_error(code, err, "cell_00.png", "never replaced")
    assert (cells / "cell_00.png").read_bytes() == before


def test_detect_never_writes_over_an_input(tmp_path, capsys, model_file, field, field_tif):
    labels = tmp_path / "field_cells.tif"  # where detect would write its own cell labels
    tifffile.imwrite(labels, field.cells.astype(np.uint16))
    before = labels.read_bytes()
    code, _, err = detect_cli(capsys, field_tif, model_file, tmp_path, "--cells", labels)
    assert_one_line_error(code, err, "field_cells.tif", "never replaced")
    assert labels.read_bytes() == before


# -- disk full -----------------------------------------------------------------------------------------

def is_root() -> bool:
    return getattr(os, "geteuid", lambda: -1)() == 0


def _mount_tiny_tmpfs(folder) -> bool:
    if not is_root():
        return False
    return subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(folder)],
                          capture_output=True).returncode == 0


@pytest.fixture(params=["tmpfs", "dev-full"])
def full_disk(request, tmp_path, monkeypatch):
    """A folder on a full disk: a 64 KiB tmpfs filled up (where this user may mount one), or a
    folder whose temporary files are links to /dev/full. Either way the kernel answers ENOSPC."""
    folder = tmp_path / "disk"
    folder.mkdir()
    if request.param == "tmpfs":
        if not _mount_tiny_tmpfs(folder):
            pytest.skip("cannot mount a tmpfs here (not root, or no mount permission); the dev-full case runs")
        with contextlib.suppress(OSError), open(folder / "filler", "wb") as fh:
            while True:
                fh.write(bytes(4096))
                fh.flush()
        yield folder
        subprocess.run(["umount", str(folder)], check=True)
    else:
        if not os.path.exists("/dev/full"):
            pytest.skip("this system has no /dev/full; the tmpfs case covers it")

        ordinary = files._temporary_path

        def to_dev_full(final):
            if folder not in final.parents:
                return ordinary(final)
            link = final.with_name(f".{final.stem}.partial-test{final.suffix}")
            link.symlink_to("/dev/full")
            return link

        monkeypatch.setattr(files, "_temporary_path", to_dev_full)
        yield folder


def results_in(folder):
    return sorted(p.name for p in folder.rglob("*") if p.name != "filler")


def test_detect_on_a_full_disk_leaves_no_heatmap(capsys, model_file, field_tif, full_disk):
    code, _, err = detect_cli(capsys, field_tif, model_file, full_disk / "out")
    assert_one_line_error(code, err, "disk full")
    assert not [n for n in results_in(full_disk) if n.endswith((".tif", ".csv"))], results_in(full_disk)


def test_score_cells_on_a_full_disk_leaves_no_partial_file(tmp_path, capsys, full_disk):
    cells = write_cells(tmp_path / "cells", n=4)
    model = tiny_model_file(tmp_path / "tiny.safetensors")
    code, _, err = run_cli(capsys, "score-cells", "--model", model, "--images", cells, "--out", full_disk / "s.csv")
    assert_one_line_error(code, err, "disk full")
    assert results_in(full_disk) == []


def test_train_on_a_full_disk_is_one_line(tmp_path, capsys, full_disk):
    cells = write_cells(tmp_path / "cells", n=10)
    code, _, err = run_cli(capsys, "train", "--images", cells, "--out", full_disk / "m", "--iterations", "2")
    assert_one_line_error(code, err, "disk full")
    assert results_in(full_disk) == []


def test_atomic_outputs_turn_enospc_into_one_message(tmp_path):
    target = tmp_path / "x.csv"
    with pytest.raises(InputError, match="disk full"):
        with files.atomic_outputs([target]) as (tmp,):
            tmp.write_text("half")
            raise OSError(errno.ENOSPC, "No space left on device")
    assert list(tmp_path.iterdir()) == []


# -- tracebacks ------------------------------------------------------------------------------------------

def test_truncated_tiff_is_one_line(tmp_path, capsys, model_file, field):
    tifffile.imwrite(tmp_path / "z.tif", field.image, compression="zlib")
    data = (tmp_path / "z.tif").read_bytes()
    (tmp_path / "cut.tif").write_bytes(data[: len(data) * 2 // 3])
    code, _, err = detect_cli(capsys, tmp_path / "cut.tif", model_file, tmp_path / "o")
    assert_one_line_error(code, err, "cut.tif", "damaged or cut short")


@pytest.mark.parametrize("diameter, words", [("inf", ["--cell-diameter", "positive"]),
                                              ("nan", ["--cell-diameter", "positive"]),
                                              ("3000", ["3000 px", "larger than the image"]),
                                              ("1e9", ["1e+09 px", "larger than the image"])])
def test_cell_diameter_out_of_range_is_refused_at_once(tmp_path, capsys, model_file, field_tif, diameter, words):
    with within(60):
        code, _, err = detect_cli(capsys, field_tif, model_file, tmp_path / "o", "--cell-diameter", diameter)
    assert_one_line_error(code, err, *words)


def test_labels_with_huge_ids_are_numbered_not_allocated(tmp_path, capsys, model_file, field, field_tif):
    labels = field.cells.astype(np.int32)
    labels[labels == labels.max()] = 2**31 - 1
    tifffile.imwrite(tmp_path / "labels.tif", labels)
    code, out, err = detect_cli(capsys, field_tif, model_file, tmp_path / "o", "--cells", tmp_path / "labels.tif")
    assert code == 0, err
    written = tifffile.imread(tmp_path / "o" / "field_cells.tif")
    assert written.max() == len(np.unique(field.cells)) - 1 == len(np.unique(written)) - 1


def _nan_weights(meta, tensors):
    tensors["heads.supn.out.bias"].fill_(float("nan"))


DAMAGES = {  # what is done to a good file's (header, weights); a returned value replaces the header
    "metadata is a list": (lambda m, t: [m], "not a table"),
    "metadata is a string": (lambda m, t: "a model", "not a table"),
    "no cell diameter": (lambda m, t: m.pop("cell_diameter_px") and None, "cell diameter"),
    "bad score rule": (lambda m, t: m["score_rules"].update(supn="sharpest"), "score rule"),
    "zero diameter": (lambda m, t: m.update(cell_diameter_px=0), "cell diameter"),
    "empty calibration": (lambda m, t: m.update(calibration={}), "calibration is empty"),
    "calibration without scores": (lambda m, t: m["calibration"]["supn"].update(healthy_scores=[]), "calibration"),
    "no score rules": (lambda m, t: m.pop("score_rules") and None, "no score rules"),
    "equal intensity low and high": (lambda m, t: m.update(intensity={"low": [50.0], "high": [50.0]}), "intensity"),
    "NaN weights": (_nan_weights, "not numbers"),
    "format version is text": (lambda m, t: m.update(format_version="one"), "format_version"),
}


@pytest.mark.parametrize("damage", list(DAMAGES))
def test_damaged_model_header_names_the_file(tmp_path, model_file, damage):
    change, words = DAMAGES[damage]
    bad = with_header(tmp_path, model_file, "damaged", change)
    with pytest.raises(ModelFileError, match=words) as exc:
        load_model(bad)
    assert "damaged.safetensors" in str(exc.value) and "\n" not in str(exc.value)


def test_damaged_model_on_the_command_line_is_one_line(tmp_path, capsys, model_file, field_tif):
    bad = with_header(tmp_path, model_file, "damaged", lambda m, t: m.pop("cell_diameter_px") and None)
    code, _, err = detect_cli(capsys, field_tif, bad, tmp_path / "o")
    assert_one_line_error(code, err, "damaged.safetensors", "cell diameter")


def test_huge_declared_latent_is_refused_before_any_network_is_built(tmp_path, model_file, monkeypatch):
    import napari_supn_anomaly.models.anomaly_model as anomaly_model

    bad = with_header(tmp_path, model_file, "wide", lambda m, t: m["architecture"].update(latent_dim=200000))
    monkeypatch.setattr(anomaly_model, "SupnVAE", never("building the network"))
    with pytest.raises(ModelFileError, match="wide.safetensors.*latent_dim"):
        load_model(bad)
    within_limits = with_header(tmp_path, model_file, "wider", lambda m, t: m["architecture"].update(latent_dim=4000))
    with pytest.raises(ModelFileError, match="do not match its architecture"):
        load_model(within_limits)


def test_models_written_by_this_and_earlier_versions_still_load(tmp_path, model_file):
    for name in ("fluorescence-rbc", "giemsa-rbc"):
        assert load_model(name).name == name
    assert load_model(model_file).name == "tiny-fluorescence"
    assert load_model(tiny_model_file(tmp_path / "saved.safetensors")).name == "tiny"


# -- hangs -----------------------------------------------------------------------------------------------

@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes (FIFOs) are POSIX")
def test_fifo_as_image_or_model_is_refused_without_opening_it(tmp_path, capsys, model_file, field_tif):
    pipe = tmp_path / "pipe.tif"
    os.mkfifo(pipe)
    model_pipe = tmp_path / "pipe.safetensors"
    os.mkfifo(model_pipe)
    with within(60):
        code, _, err = detect_cli(capsys, pipe, model_file, tmp_path / "o")
        assert_one_line_error(code, err, "pipe.tif", "not a regular file")
        code, _, err = detect_cli(capsys, field_tif, model_pipe, tmp_path / "o")
        assert_one_line_error(code, err, "pipe.safetensors", "not a regular file")


# -- silently wrong ------------------------------------------------------------------------------------

def test_a_model_that_scores_nan_is_refused_not_run(field):
    model = tiny_model("fluorescence").copy()
    with torch.no_grad():
        model.net.heads["supn"].out.bias.fill_(float("nan"))
    with pytest.raises(ModelFileError, match="NaN"):
        detect(field.image, "YX", resolve(model, "supn"))


def test_pure_noise_is_refused_in_one_line(tmp_path, capsys, field):
    noise = np.random.default_rng(0).integers(0, 256, (256, 256)).astype(np.uint8)
    with pytest.raises(NoCellsFound, match="noise"):
        detect(noise, "YX", resolve(tiny_model("fluorescence")))
    tifffile.imwrite(tmp_path / "noise.tif", noise)
    code, _, err = detect_cli(capsys, tmp_path / "noise.tif", tiny_model_file(tmp_path / "t.safetensors"),
                              tmp_path / "o")
    assert_one_line_error(code, err, "noise")


def test_cells_drowned_in_noise_are_flagged_in_summary_provenance_and_cli(tmp_path, capsys, field):
    # the cells still stand out on average, but neighbouring pixels are nearly unrelated (correlation ~0.1)
    image = field.image.astype(np.float32)
    noisy = np.clip(image + np.random.default_rng(0).normal(0, 3 * image.std(), image.shape), 0, 255).astype(np.uint8)
    result = detect(noisy, "YX", resolve(tiny_model("fluorescence")))
    assert len(result.cell_table) and result.warnings and "does not look like red cells" in result.summary()
    assert result.provenance["warnings"] == result.warnings
    real = detect(field.image, "YX", resolve(tiny_model("fluorescence")))
    assert real.warnings == [] and "WARNING" not in real.summary()
    tifffile.imwrite(tmp_path / "noisy.tif", noisy)
    code, out, err = detect_cli(capsys, tmp_path / "noisy.tif", tiny_model_file(tmp_path / "t.safetensors"),
                                tmp_path / "o")
    assert code == 0 and "WARNING: this field does not look like red cells" in out
    with tifffile.TiffFile(tmp_path / "o" / "noisy_heatmap.tif") as written:
        assert "does not look like red cells" in written.pages[0].description


@pytest.mark.parametrize("settings, words", [({"fpr": 5}, "fpr"), ({"fpr": -1}, "fpr"), ({"fpr": float("nan")}, "fpr"),
                                             ({"threshold": float("nan")}, "threshold"),
                                             ({"batch_size": 0}, "batch_size")])
def test_api_refuses_settings_that_cannot_be_met(field, settings, words):
    with pytest.raises(InputError, match=words):
        detect(field.image, "YX", resolve(tiny_model("fluorescence")), settings=DetectSettings(**settings))


def test_threshold_nan_on_the_command_line(tmp_path, capsys, model_file, field_tif):
    code, _, err = detect_cli(capsys, field_tif, model_file, tmp_path / "o", "--threshold", "nan")
    assert_one_line_error(code, err, "--threshold")


@pytest.mark.parametrize("image, words", [
    (lambda f: f.astype(np.complex64), "complex"),
    (lambda f: f > 100, "boolean"),
    (lambda f: f.tolist(), None),  # a nested list of numbers is an image
    (lambda f: [[1, 2], [3]], "not an array of numbers"),
    (lambda f: f.astype(object), "do(es)? not hold numbers"),
])
def test_api_takes_only_arrays_of_numbers(field, image, words):
    scorer = resolve(tiny_model("fluorescence"))
    if words is None:
        assert len(detect(image(field.image), "YX", scorer).cell_table) > 0
        return
    with pytest.raises(InputError, match=words):
        detect(image(field.image), "YX", scorer)


# -- misleading messages -------------------------------------------------------------------------------

def test_rgba_png_with_the_giemsa_model_drops_alpha(tmp_path, capsys):
    from napari_supn_anomaly.sample_data import load_sample

    rgb = np.asarray(load_sample("giemsa").image)[0, :300, :300]
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    Image.fromarray(np.dstack([rgb, np.full(rgb.shape[:2], 255, np.uint8)]), "RGBA").save(tmp_path / "rgba.png")
    for name in ("rgb", "rgba"):
        code, _, err = detect_cli(capsys, tmp_path / f"{name}.png", "giemsa-rbc", tmp_path / "o")
        assert code == 0, err
    assert (tmp_path / "o" / "rgba_cells.csv").read_text() == (tmp_path / "o" / "rgb_cells.csv").read_text()


def test_finite_float64_beyond_float32_is_not_called_nan(tmp_path, capsys, model_file, field):
    tifffile.imwrite(tmp_path / "big.tif", field.image.astype(np.float64) * 1e300)
    code, _, err = detect_cli(capsys, tmp_path / "big.tif", model_file, tmp_path / "o")
    assert_one_line_error(code, err, "big.tif", "values reach", "rescale")
    assert "NaN" not in err


def test_binary_regions_csv_is_not_a_decode_error(tmp_path, capsys, field_tif, model_file):
    (tmp_path / "regions.csv").write_bytes(bytes(range(256)) * 4)
    code, _, err = run_cli(capsys, "train", "--init", model_file, "--fields", field_tif, "--regions",
                           tmp_path / "regions.csv", "--out", tmp_path / "new")
    assert_one_line_error(code, err, "regions.csv", "not a text CSV")


def test_all_zero_masks_are_named_as_such(tmp_path, capsys):
    cells = write_cells(tmp_path / "cells", n=4)
    (tmp_path / "masks").mkdir()
    for p in cells.iterdir():
        Image.fromarray(np.zeros((40, 40), np.uint8)).save(tmp_path / "masks" / p.name)
    model = tiny_model_file(tmp_path / "tiny.safetensors")
    code, _, err = run_cli(capsys, "score-cells", "--model", model, "--images", cells, "--masks", tmp_path / "masks",
                           "--out", tmp_path / "s.csv")
    assert_one_line_error(code, err, "every mask", "empty")
    assert "give --masks" not in err


def test_minutes_nan_is_refused(tmp_path, capsys):
    cells = write_cells(tmp_path / "cells", n=10)
    code, _, err = run_cli(capsys, "train", "--images", cells, "--out", tmp_path / "m", "--minutes", "nan")
    assert_one_line_error(code, err, "--minutes")
    assert not (tmp_path / "m.safetensors").exists()


def test_channel_on_a_one_channel_image_is_refused(tmp_path, capsys, model_file, field_tif):
    code, _, err = detect_cli(capsys, field_tif, model_file, tmp_path / "o", "--channel", "2")
    assert_one_line_error(code, err, "channel 2 does not exist", "one channel")
    code, _, err = detect_cli(capsys, field_tif, model_file, tmp_path / "o", "--channel", "0")
    assert code == 0, err
