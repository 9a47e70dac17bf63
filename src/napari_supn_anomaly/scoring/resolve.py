"""Choosing a scorer for a model: the default-scorer rule, what a model can run, and the one
place that says "this model cannot run that scorer"."""
from __future__ import annotations

from ..errors import ScorerUnavailable
from ..models import AnomalyModel
from ..supn.self_supervised import TrainedSegmenter
from .networks import ScorerNetworks, network_scorer, require_network, shipped_network_path
from .registry import REGISTRY, scorer_info
from .scorer import Scorer


def default_scorer_name(model: AnomalyModel) -> str:
    """The model's ``default_scorer`` when it can run (one of its own likelihoods, or a scorer it holds
    a healthy calibration for, such as ``supn+saturation``), else its first likelihood."""
    default = model.metadata.get("default_scorer")
    if default in model.scorers:
        return default
    info = REGISTRY.get(default)
    if info is not None and not info.needs_network and default in model.metadata.get("calibration", {}):
        return default
    return model.scorers[0]


def available_scorers(model: AnomalyModel, networks: ScorerNetworks | None = None) -> list[str]:
    """Scorers that can run on whole fields with this model as it is: its own likelihoods plus the
    registry's scorers it holds a healthy calibration for, the self-supervised ones only where their
    network is at hand (shipped with the built-in model, or attached in ``networks``)."""
    calibrated = model.metadata.get("calibration", {})
    extra = [n for n, info in REGISTRY.items() if n not in model.scorers and n in calibrated
             and (not info.needs_network or shipped_network_path(model, n) is not None
                  or (networks is not None and networks.get(model, n) is not None))]
    return list(model.scorers) + extra


def resolve(model: AnomalyModel, name: str | None = None, network: TrainedSegmenter | None = None, *,
            require_calibration: bool = True, **options) -> Scorer:
    """The scorer ``name`` bound to ``model``; raises ScorerUnavailable (a message for people) if it cannot run.

    ``name`` None: the network's scorer when a network is given, else the model's default scorer.
    ``network``: the trained network of an ssl-* scorer; None takes the one shipped with the model.
    ``require_calibration``: refuse a scorer that combines maps or has no likelihood of the model's
    own unless it holds a healthy calibration (pass False to calibrate it).
    """
    if name is None:
        name = network_scorer(network) if network is not None else default_scorer_name(model)
    info = scorer_info(name)
    if not info.made_for(model.channels, model.modality):
        if info.rgb_only and model.channels != 3:
            raise ScorerUnavailable(f"the scorer {name!r} reads a stain's colour and needs a model of stained (RGB) "
                                    f"cells; the model {model.name!r} has {model.channels} channel(s)")
        raise ScorerUnavailable(f"the scorer {name!r} is made for {' and '.join(info.modalities)} images; the model "
                                f"{model.name!r} is a {model.modality} model")
    if info.likelihood:
        if name not in model.scorers:
            raise _unavailable(model, name)
        return Scorer(model, info, **options)
    if info.needs_network:
        return Scorer(model, info, require_network(model, name, network), **options)
    if require_calibration and name not in model.metadata.get("calibration", {}):
        raise _unavailable(model, name)
    return Scorer(model, info, **options)


def _unavailable(model: AnomalyModel, name: str) -> ScorerUnavailable:
    return ScorerUnavailable(f"the model {model.name!r} has no scorer {name!r}; it has "
                             f"{', '.join(available_scorers(model))}")
