"""The maths and the networks: no napari, no Qt, no files, no cells."""
from ..lazy import exports_on_first_use

_EXPORTS = {
    "LIKELIHOODS": "networks", "ArchConfig": "networks", "SupnVAE": "networks", "kl_divergence": "networks",
    "IntensityStats": "normalisation", "SupnFactor": "precision", "stencil_offsets": "precision",
    "ROTATIONS": "scoring", "check_rotations": "scoring", "SCORE_RULES": "scoring", "ScoreRule": "scoring", "anomaly_maps": "scoring",
    "cell_scores": "scoring", "matched_spot_map": "scoring", "pixel_map": "scoring", "whitened_residual": "scoring",
}
__all__ = list(_EXPORTS)
__getattr__ = exports_on_first_use(__name__, _EXPORTS)
