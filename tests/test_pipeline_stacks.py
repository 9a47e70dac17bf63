"""Detection on images and stacks: axes, channels, labels, thresholds, cancelling."""
from __future__ import annotations

import numpy as np
import pytest

from _tiny_models import tiny_model
from napari_supn_anomaly.errors import Cancelled
from napari_supn_anomaly.pipeline.axes import default_axes, select_channels
from napari_supn_anomaly.pipeline.stacks import DetectSettings, detect, iter_detect
from napari_supn_anomaly.scoring import resolve
from napari_supn_anomaly.synthetic import make_field


@pytest.fixture(scope="module")
def fields():
    return [make_field((192, 192), "fluorescence", cell_diameter=30, infected_fraction=0.3, seed=s) for s in (1, 2)]


def test_single_field(fields):
    model = tiny_model("fluorescence")
    result = detect(fields[0].image, "YX", resolve(model), settings=DetectSettings(fpr=0.05))
    assert result.heatmap.shape == result.cells.shape == fields[0].image.shape
    assert not result.is_stack and "plane" not in result.candidate_table.columns
    assert list(result.cell_table.columns)[:8] == ["cell_id", "y", "x", "area", "score", "candidate", "edge", "kind"]
    assert result.threshold == pytest.approx(model.threshold_for_fpr(0.05, model.scorers[0]))
    p = result.provenance
    assert p["model"] == "tiny-fluorescence" and p["target_fpr"] == 0.05 and p["cells_from"] == "segmentation"
    assert p["cell_diameter_source"] == "measured" and 25 < p["cell_diameter_px"] < 35
    assert set(p["timings_s"]) >= {"segmentation_s", "score_s", "paste_s"}


def test_stack_plane_by_plane_with_given_labels(fields):
    model = tiny_model("fluorescence")
    stack = np.stack([f.image for f in fields])
    labels = np.stack([f.cells for f in fields])
    events = []
    result = detect(stack, "ZYX", resolve(model), labels=labels, settings=DetectSettings(threshold=0.0, cell_diameter=30),
                    on_progress=events.append)
    assert result.is_stack and result.plane_axes == "Z" and result.heatmap.shape == stack.shape
    np.testing.assert_array_equal(result.cells, labels)
    assert {"plane", "z"} <= set(result.candidate_table.columns)
    assert sorted(result.cell_table["plane"].unique()) == [0, 1]
    assert len(result.cell_table) == labels[0].max() + labels[1].max()
    assert [e.plane for e in events if e.stage == "plane done"] == [0, 1]
    assert events[-1].fraction == 1.0
    assert result.provenance["cells_from"] == "labels"


def test_channels_must_be_chosen_explicitly(fields):
    model = tiny_model("fluorescence")
    two = np.stack([fields[0].image, fields[1].image])
    with pytest.raises(ValueError, match="choose the channel"):
        detect(two, "CYX", resolve(model))
    with pytest.raises(ValueError, match="channel 5 does not exist"):
        detect(two, "CYX", resolve(model), channel=5)
    result = detect(two, "CYX", resolve(model), channel=1, settings=DetectSettings(cell_diameter=30))
    assert result.heatmap.shape == fields[1].image.shape and result.provenance["channel"] == 1
    # a grey model on an RGB image sees the mean of the colours
    assert select_channels("YXS", (10, 10, 3), model, None) == ("S", None)


def test_rgb_model_reads_all_three_colours():
    model = tiny_model("brightfield-stained")
    f = make_field((192, 192), "brightfield-stained", cell_diameter=30, infected_fraction=0.5, seed=4)
    result = detect(f.image, "YXS", resolve(model))
    assert result.heatmap.shape == (192, 192) and len(result.cell_table) > 5
    with pytest.raises(ValueError, match="needs 3 channels"):
        detect(f.image[..., 0], "YX", resolve(model))


def test_bad_input_is_refused_with_a_reason(fields):
    model = tiny_model("fluorescence")
    with pytest.raises(ValueError, match="constant"):
        detect(np.zeros((64, 64)), "YX", resolve(model))
    with pytest.raises(ValueError, match="axes"):
        detect(fields[0].image, "YXZ", resolve(model))
    with pytest.raises(ValueError, match="cell labels"):
        detect(fields[0].image, "YX", resolve(model), labels=np.zeros((10, 10), np.int32))
    with pytest.raises(ValueError, match="unknown scorer"):
        resolve(model, "nope")


def test_cancel_between_batches(fields):
    model = tiny_model("fluorescence")
    stack = np.stack([f.image for f in fields])
    asked = []

    def stop():
        asked.append(1)
        return len(asked) > 3

    gen = iter_detect(stack, "TYX", resolve(model), settings=DetectSettings(batch_size=2), should_stop=stop)
    seen = []
    with pytest.raises(Cancelled):
        for event in gen:
            seen.append(event)
    assert seen[-1].plane == 0 and seen[-1].stage == "scoring" and seen[-1].done <= 4
    # closing the generator stops it too, without error
    gen = iter_detect(stack, "TYX", resolve(model))
    next(gen)
    gen.close()


def test_default_axes():
    assert default_axes((5, 64, 64)) == "ZYX"
    assert default_axes((2, 5, 64, 64)) == "TZYX"
    assert default_axes((64, 64, 3), rgb=True) == "YXS"
    assert default_axes((64, 64)) == "YX"


def test_without_a_rate_each_model_flags_its_own_default_share():
    from napari_supn_anomaly.pipeline.stacks import choose_run_threshold

    scores = np.random.default_rng(0).lognormal(size=400)
    for modality, rate in (("fluorescence", 0.05), ("brightfield-stained", 0.01)):
        scorer = resolve(tiny_model(modality))
        assert choose_run_threshold(scorer, DetectSettings(), scores).fpr == rate
        assert choose_run_threshold(scorer, DetectSettings(fpr=0.2), scores).fpr == 0.2
    stained = make_field((160, 160), "brightfield-stained", cell_diameter=30, seed=1)
    result = detect(stained.image, "YXS", resolve(tiny_model("brightfield-stained")))
    assert result.provenance["target_fpr"] == 0.01
