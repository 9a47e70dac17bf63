"""The maths and the networks: no napari, no Qt, no files, no cells."""
from .networks import LIKELIHOODS, ArchConfig, SupnVAE, kl_divergence
from .normalisation import IntensityStats
from .precision import SupnFactor, stencil_offsets
from .scoring import SCORE_RULES, ScoreRule, anomaly_maps, cell_scores, matched_spot_map, pixel_map, whitened_residual

__all__ = [
    "LIKELIHOODS", "ArchConfig", "SupnVAE", "kl_divergence", "IntensityStats", "SupnFactor",
    "stencil_offsets", "SCORE_RULES", "ScoreRule", "cell_scores", "pixel_map", "whitened_residual",
    "anomaly_maps", "matched_spot_map",
]
