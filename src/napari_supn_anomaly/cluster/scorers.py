"""A scorer named by files (model name or file, scorer name, network file), loaded once per process."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import InputError

if TYPE_CHECKING:
    from ..scoring import Scorer


@dataclass(frozen=True)
class ScorerSpec:
    model: str                    # a built-in model name or a model file
    scorer: str | None = None     # None: the model's own
    segmenter: str | None = None  # trained network of an ssl-* scorer
    device: str = "auto"


_LOADED: dict[ScorerSpec, Scorer] = {}


def resolve_scorer(model, name: str | None, network_file: str | None = None) -> Scorer:
    """The scorer to run; ``network_file`` is attached to the model first (its scorer is the default)."""
    from ..scoring import ScorerNetworks, resolve

    network = None
    if network_file:
        networks = ScorerNetworks()
        attached = networks.attach_file(model, network_file)
        if name is not None and name != attached:
            raise InputError(f"{Path(network_file).name} is the network of {attached!r}, not of {name!r}")
        name, network = attached, networks.get(model, attached)
    return resolve(model, name, network)


def load_scorer(spec: ScorerSpec) -> Scorer:
    """The scorer of ``spec``, loaded at the first call in this process and kept (one per worker)."""
    if spec not in _LOADED:
        from ..models import load_model
        from ..process_memory import reuse_freed_memory

        reuse_freed_memory()  # this is a command-line or Dask worker process: keep the batch buffers

        model = load_model(spec.model)
        try:
            model.to(spec.device)
        except ValueError as exc:  # a GPU asked for that this machine does not have
            raise InputError(str(exc)) from None
        _LOADED[spec] = resolve_scorer(model, spec.scorer, spec.segmenter)
    return _LOADED[spec]
