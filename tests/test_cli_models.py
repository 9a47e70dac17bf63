"""supn-anomaly models lists every built-in model with its modality and channels."""
from napari_supn_anomaly.cli import main
from napari_supn_anomaly.models import builtin_model_names


def test_models_lists_the_built_in_models(capsys):
    assert main(["models"]) == 0
    out = capsys.readouterr().out.splitlines()
    names = builtin_model_names()
    assert {"fluorescence-rbc", "giemsa-rbc"} <= set(names)
    assert [line.split()[0] for line in out] == names
    assert any("brightfield-stained" in line and "red, green, blue" in line for line in out)


def test_unknown_model_is_one_line_and_exit_code_2(capsys, tmp_path):
    assert main(["score-cells", "--model", "no-such-model", "--images", str(tmp_path), "--out",
                 str(tmp_path / "s.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no built-in model called 'no-such-model'" in err[0]
