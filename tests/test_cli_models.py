"""supn-anomaly models lists every built-in model with its modality, channels and scorers."""
from napari_supn_anomaly.cli import main
from napari_supn_anomaly.models import builtin_model_names, load_model
from napari_supn_anomaly.scoring import available_scorers, default_scorer_name


def test_models_lists_the_built_in_models_and_their_scorers(capsys):
    assert main(["models"]) == 0
    text = capsys.readouterr().out
    models_part, scorers_part = text.split("\n\nScorers of each model")
    rows = models_part.splitlines()
    names = builtin_model_names()
    assert {"fluorescence-rbc", "giemsa-rbc"} <= set(names)
    header = rows.index(next(r for r in rows if r.startswith("MODEL")))
    assert rows[header].split()[:5] == ["MODEL", "MODALITY", "CHANNELS", "DEFAULT", "SCORER"]
    assert [r.split()[0] for r in rows[header + 1:]] == names
    assert any("brightfield-stained" in r and "red, green, blue" in r for r in rows)
    scorer_rows = scorers_part.split("\n\n")[0].splitlines()[1:]
    assert scorer_rows[0].split() == ["MODEL", "SCORERS"]
    by_model, current = {}, None
    for row in scorer_rows[1:]:
        if not row.startswith(" "):
            current = row.split()[0]
        by_model.setdefault(current, "")
        by_model[current] += row
    assert list(by_model) == names
    for name in names:
        model = load_model(name)
        default = default_scorer_name(model)
        assert f"{default} (default)" in by_model[name]
        assert all(s in by_model[name] for s in available_scorers(model))
        assert any(r.startswith(name) and f" {default} " in r for r in rows)  # the DEFAULT SCORER column
    assert "ssl-fpi" in by_model["fluorescence-rbc"] and "ssl-fpi" not in by_model["giemsa-rbc"]


def test_unknown_model_is_one_line_and_exit_code_2(capsys, tmp_path):
    assert main(["score-cells", "--model", "no-such-model", "--images", str(tmp_path), "--out",
                 str(tmp_path / "s.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no built-in model called 'no-such-model'" in err[0]
