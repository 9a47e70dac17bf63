"""Choosing the device, and full float32 while scoring (TF32 moved GPU scores: docs/benchmarks/gpu.md)."""
import numpy as np
import pytest
import torch

from napari_supn_anomaly.models import load_model
from napari_supn_anomaly.scoring import resolve
from napari_supn_anomaly.supn.devices import describe_device, exact_float32, resolve_device
from napari_supn_anomaly.supn.normalisation import IntensityStats


def _tf32_flags():
    return torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32


@pytest.fixture
def tf32_on():
    saved = _tf32_flags()
    torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = True
    yield
    torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved


def test_exact_float32_turns_tf32_off_inside_and_restores_it(tf32_on):
    with exact_float32():
        assert _tf32_flags() == (False, False)
    assert _tf32_flags() == (True, True)
    with pytest.raises(RuntimeError), exact_float32():
        raise RuntimeError("a failing batch")
    assert _tf32_flags() == (True, True)


def test_scoring_runs_in_full_float32_and_leaves_the_flags_as_they_were(tf32_on, monkeypatch):
    import napari_supn_anomaly.models.anomaly_model as anomaly_model

    seen = []
    real = anomaly_model.anomaly_maps

    def spy(*args, **kwargs):
        seen.append(_tf32_flags())
        return real(*args, **kwargs)

    monkeypatch.setattr(anomaly_model, "anomaly_maps", spy)
    model = load_model("giemsa-rbc")
    rng = np.random.default_rng(0)
    crops = rng.uniform(60, 200, (5, model.channels, model.crop_size, model.crop_size)).astype(np.float32)
    masks = np.ones((5, model.crop_size, model.crop_size), bool)
    resolve(model).score(crops, masks, batch_size=2)
    assert seen and all(flags == (False, False) for flags in seen)
    assert _tf32_flags() == (True, True)


def test_normalising_in_place_gives_the_same_numbers_as_the_formula():
    stats = IntensityStats([3.0, 4.5, 0.0], [250.7, 200.0, 1.0])
    lo = np.float32(stats.low)[None, :, None, None]
    hi = np.float32(stats.high)[None, :, None, None]
    rng = np.random.default_rng(1)
    for images in (rng.integers(0, 256, (4, 3, 6, 6)).astype(np.uint8), rng.uniform(-5, 300, (4, 3, 6, 6)),
                   rng.uniform(0, 255, (4, 3, 6, 6)).astype(np.float32)):
        expected = (2.0 * (images.astype(np.float32) - lo) / (hi - lo) - 1.0).astype(np.float32)
        got = stats.apply(images)
        assert got.dtype == np.float32 and np.array_equal(got, expected)
    images = rng.uniform(0, 255, (2, 3, 4, 4)).astype(np.float32)
    before = images.copy()
    stats.apply(images)
    assert np.array_equal(images, before)  # the caller's crops are never changed


def test_asking_for_an_absent_gpu_is_a_readable_error():
    if torch.cuda.is_available():
        pytest.skip("this machine has a CUDA GPU")
    with pytest.raises(ValueError, match="use --device cpu"):
        resolve_device("cuda")
    assert resolve_device("cpu").type == "cpu"
    assert describe_device(torch.device("cpu")).startswith("CPU")
