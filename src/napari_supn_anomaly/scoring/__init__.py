"""Scoring cells: every scorer in one registry, calibration on healthy cells, the ssl-* networks.

The command line and the widgets call :func:`resolve` once and hand the :class:`Scorer` to the
pipeline, which only calls its methods.
"""
from ..lazy import exports_on_first_use

_EXPORTS = {
    "Calibration": "calibration", "calibrate": "calibration",
    "ScorerNetworks": "networks", "load_network": "networks", "network_scorer": "networks",
    "read_network": "networks", "save_network": "networks", "shipped_network_path": "networks",
    "train_calibrated_network": "networks", "train_network": "networks",
    "DEFAULT_SCORE_RULES": "registry", "ENSEMBLE_MEMBERS": "registry", "FINETUNED_DEFAULT_SCORERS": "registry",
    "INSTANT": "registry",
    "NEEDS_TRAINING": "registry", "REGISTRY": "registry", "SLOW": "registry", "ScorerInfo": "registry",
    "describe_cost": "registry", "network_scorer_names": "registry",
    "scorer_info": "registry", "scorer_names": "registry",
    "available_scorers": "resolve", "default_scorer_name": "resolve", "resolve": "resolve",
    "Scorer": "scorer",
}
__all__ = list(_EXPORTS)
__getattr__ = exports_on_first_use(__name__, _EXPORTS)
