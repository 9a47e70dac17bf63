"""The 'purple-profiled' score rule: the whitened residual with each crop's colour cast (a
per-channel offset and gain of the decoded mean) profiled out under the learned precision."""
from pathlib import Path

import numpy as np
import pytest
import torch

from napari_supn_anomaly.models import AnomalyModel, load_model
from napari_supn_anomaly.supn import ArchConfig, SupnVAE
from napari_supn_anomaly.supn.precision import (
    SupnFactor,
    n_cross_channel,
    n_off_diagonal,
)
from napari_supn_anomaly.supn.scoring import (
    SCORE_RULES,
    anomaly_maps,
    pixel_map,
    profile_colour,
)

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def random_factor(channels=3, h=12, w=13, batch=2, seed=0, scale=0.3):
    g = torch.Generator().manual_seed(seed)
    log_diag = scale * torch.randn(batch, channels, h, w, generator=g, dtype=torch.float64)
    off = scale * torch.randn(batch, channels, n_off_diagonal(1), h, w, generator=g, dtype=torch.float64)
    cross = scale * torch.randn(batch, n_cross_channel(channels), h, w, generator=g, dtype=torch.float64)
    return SupnFactor(log_diag, off, cross, 1)


def test_a_colour_cast_of_the_whole_crop_leaves_the_profiled_residual_unchanged():
    factor = random_factor()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 12, 13, generator=g, dtype=torch.float64)
    mean = torch.randn(2, 3, 12, 13, generator=g, dtype=torch.float64)
    offset = torch.tensor([0.4, -0.2, 0.7], dtype=torch.float64)[None, :, None, None]
    gain = torch.tensor([0.3, 0.1, -0.25], dtype=torch.float64)[None, :, None, None]
    cast = x + offset + gain * mean  # another stain / lamp: each channel shifted and scaled
    assert torch.allclose(profile_colour(factor, cast, mean), profile_colour(factor, x, mean), atol=1e-6)
    # ... while the plain whitened residual moves with the cast
    assert not torch.allclose(factor.whiten(cast - mean), factor.whiten(x - mean), atol=1e-3)


def test_profiled_residual_is_the_whitened_residual_minus_its_projection_on_the_cast():
    factor = random_factor(seed=2)
    g = torch.Generator().manual_seed(3)
    x, mean = (torch.randn(2, 3, 12, 13, generator=g, dtype=torch.float64) for _ in range(2))
    zp = profile_colour(factor, x, mean)
    for ch in range(3):
        for plane in (torch.ones_like(mean[:, ch]), mean[:, ch]):
            basis = torch.zeros_like(x)
            basis[:, ch] = plane
            q = factor.whiten(basis)
            assert torch.allclose((q * zp).flatten(1).sum(1), torch.zeros(2, dtype=torch.float64), atol=1e-6)
    # orthogonal projection: what is left is never larger than z, and a local stain spot survives
    z = factor.whiten(x - mean)
    assert bool((zp.square().flatten(1).sum(1) <= z.square().flatten(1).sum(1) + 1e-9).all())
    spot = torch.zeros_like(x)
    spot[:, 1, 5:7, 5:7] = -2.0  # darker in green only: the purple of a stained parasite
    gain_at_spot = pixel_map(profile_colour(factor, x + spot, mean), SCORE_RULES["purple-profiled"])[:, 6, 6] \
        - pixel_map(zp, SCORE_RULES["purple-profiled"])[:, 6, 6]
    assert bool((gain_at_spot != 0).all())


def test_purple_profiled_is_registered_runs_through_anomaly_maps_and_needs_rgb():
    rule = SCORE_RULES["purple-profiled"]
    assert rule.colour_profiled and rule.statistic == "purple" and "z_blue - z_green" in rule.units
    assert not SCORE_RULES["purple"].colour_profiled
    torch.manual_seed(0)
    net = SupnVAE(ArchConfig(crop_size=16, channels=3, latent_dim=4, widths=(4, 8), head_widths=(4, 4))).eval()
    x = torch.randn(3, 3, 16, 16)
    with torch.no_grad():
        mu, _ = net.encode(x)
        mean = net.decode_mean(mu)
        for lik in ("supn", "diag", "l2"):
            want = pixel_map(profile_colour(net.factor(lik, mu, mean), x, mean), rule)
            got = anomaly_maps(net, x, lik, rule)
            assert got.shape == (3, 16, 16) and torch.allclose(got, want, atol=1e-4)
    grey = SupnVAE(ArchConfig(crop_size=16, channels=1, latent_dim=4, widths=(4, 8), head_widths=(4, 4))).eval()
    with pytest.raises(ValueError, match="RGB"):
        anomaly_maps(grey, torch.randn(1, 1, 16, 16), "supn", rule)


def test_a_model_file_keeps_its_rule_through_save_and_load(tmp_path):
    torch.manual_seed(0)
    net = SupnVAE(ArchConfig(crop_size=16, channels=3, latent_dim=4, widths=(4, 8), head_widths=(4, 4)))
    meta = {"name": "tiny", "modality": "brightfield-stained", "cell_diameter_px": 12.0,
            "intensity": {"low": [0.0, 0.0, 0.0], "high": [1.0, 1.0, 1.0]},
            "score_rules": {"supn": "purple-profiled", "diag": "purple", "l2": "purple"}}
    path = AnomalyModel(net, meta).save(tmp_path / "tiny.safetensors")
    back = AnomalyModel.from_file(path)
    assert back.score_rule("supn") == "purple-profiled" and back.score_rule("diag") == "purple"
    crops = np.random.default_rng(0).uniform(0, 1, (2, 3, 16, 16)).astype(np.float32)
    masks = np.ones((2, 16, 16), bool)
    out = back.score_crops(crops, masks, scorer="supn")
    assert out.maps.shape == (2, 16, 16) and np.isfinite(out.scores).all()


@pytest.mark.skipif(not (DATA / "malarianet_giemsa_fields").exists(), reason="needs ../shared/data (MalariaNet fields)")
def test_on_a_malarianet_field_the_profiled_map_points_at_parasites():
    """Through the pipeline on a real field of another lab: cells with a parasite score above healthy
    ones and parasite pixels rank high (this field measured AUROC 1.0 and pixel AP 0.46 in cells)."""
    from napari_supn_anomaly.evaluation.field_sets import (
        find_cells,
        load_malarianet_fields,
    )
    from napari_supn_anomaly.evaluation.generalisation import detect_field, summarise
    from napari_supn_anomaly.scoring import resolve

    fields = load_malarianet_fields(DATA, ["Trip_064_Day_2_25-11-05"])
    field = next(f for f in fields if f.name.endswith("Image_5_11"))
    model = load_model("giemsa-rbc").copy()
    model.metadata["score_rules"]["supn"] = "purple-profiled"
    run = detect_field(resolve(model, "supn"), field, find_cells(field))
    assert np.isfinite(run.heatmap).all() and (run.heatmap[run.labels == 0] == 0).all()
    out = summarise([run])
    assert out["n_infected_cells"] > 0 and out["auroc"] > 0.9
    assert out["pixel_ap_cells"] > 0.3
