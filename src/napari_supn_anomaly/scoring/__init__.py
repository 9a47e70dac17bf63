"""Scoring cells: every scorer in one registry, calibration on healthy cells, the ssl-* networks.

The command line and the widgets call :func:`resolve` once and hand the :class:`Scorer` to the
pipeline, which only calls its methods.
"""
from .calibration import Calibration, calibrate
from .networks import (ScorerNetworks, load_network, network_scorer, read_network, save_network, shipped_network_path,
                       train_calibrated_network, train_network)
from .registry import (DEFAULT_SCORE_RULES, ENSEMBLE_MEMBERS, INSTANT, NEEDS_TRAINING, REGISTRY, SLOW, ScorerInfo,
                       describe_cost, describe_scorers, network_scorer_names, scorer_info, scorer_names)
from .resolve import available_scorers, default_scorer_name, resolve
from .scorer import Scorer

__all__ = [
    "Calibration", "calibrate", "ScorerNetworks", "load_network", "network_scorer", "read_network", "save_network",
    "shipped_network_path", "train_calibrated_network", "train_network", "DEFAULT_SCORE_RULES", "ENSEMBLE_MEMBERS",
    "INSTANT", "NEEDS_TRAINING", "REGISTRY", "SLOW", "ScorerInfo", "describe_cost", "describe_scorers",
    "network_scorer_names", "scorer_info", "scorer_names", "available_scorers", "default_scorer_name", "resolve",
    "Scorer",
]
