"""The networks of the self-supervised (ssl-*) scorers: training them, their files, and the
networks a session has loaded.

A network runs wherever it is at hand: shipped next to a built-in model
(``models/weights/<model>.<scorer>.safetensors``, calibrated in the model's metadata), or loaded
from a file into a :class:`ScorerNetworks` that the user interface owns for its session; such a
file carries its own healthy calibration.
"""
from __future__ import annotations

import copy
import functools
import weakref
from pathlib import Path
from typing import Callable

import numpy as np

from ..errors import ModelFileError, ScorerUnavailable
from ..models import AnomalyModel
from ..models.builtin import builtin_model_names, builtin_network_path
from ..models.model_file import load_model_file, read_metadata, save_model_file
from ..progress import Progress
from ..supn.self_supervised import TrainedSegmenter, segmenter_from_state, segmenter_state, train_segmenter
from .calibration import Calibration, calibrate
from .registry import REGISTRY, scorer_info
from .scorer import Scorer

NETWORK_KIND = "self-supervised segmentation"


def network_scorer(network: TrainedSegmenter) -> str:
    """The scorer a trained network belongs to (by its synthetic anomaly and equalisation)."""
    for name, info in REGISTRY.items():
        if info.needs_network and (info.network.generator, info.network.equalise) == (
                network.config.generator, network.config.equalise):
            return name
    raise ValueError(f"no scorer uses networks trained with {network.config.generator!r}")  # pragma: no cover


# -- training ------------------------------------------------------------------------------

def train_network(name: str, model: AnomalyModel, healthy_crops: np.ndarray, healthy_masks: np.ndarray, *,
                  iterations: int | None = None, pool_size: int | None = None, seed: int = 0, device="cpu",
                  should_stop: Callable[[], bool] | None = None):
    """Generator for a "needs training" scorer: yields Progress, then the TrainedSegmenter.

    The network sees the healthy crops normalised with the model's own intensity statistics.
    """
    info = scorer_info(name)
    if not info.needs_network:
        raise ValueError(f"scorer {name!r} needs no training")
    cfg = copy.deepcopy(info.network)
    cfg.seed = seed
    if iterations is not None:
        cfg.iterations = int(iterations)
    if pool_size is not None:
        cfg.pool_size = int(pool_size)
    model.check_crops(np.asarray(healthy_crops))
    x = model.normalise(np.asarray(healthy_crops, np.float32))
    yield from train_segmenter(x, np.asarray(healthy_masks, bool), cfg, device=device, should_stop=should_stop)


def train_calibrated_network(name: str, model: AnomalyModel, train_crops: np.ndarray, train_masks: np.ndarray,
                             calibration_crops: np.ndarray, calibration_masks: np.ndarray, *,
                             iterations: int | None = None, pool_size: int | None = None, seed: int = 0,
                             device="cpu", should_stop: Callable[[], bool] | None = None):
    """Generator: :func:`train_network` on the training cells, then :func:`calibrate` on other healthy
    cells (never the ones it trained on). Yields Progress as training goes, a "calibration" Progress
    before calibrating, and finally (TrainedSegmenter, Calibration). The calibration is also stored
    in ``model.metadata``.
    """
    network = None
    for event in train_network(name, model, train_crops, train_masks, iterations=iterations, pool_size=pool_size,
                               seed=seed, device=device, should_stop=should_stop):
        if isinstance(event, Progress):
            yield event
        else:
            network = event
    yield Progress("calibration", 0, 1)
    calibration = calibrate(Scorer(model, scorer_info(name), network), calibration_crops, calibration_masks)
    yield network, calibration


# -- files -----------------------------------------------------------------------------------

def save_network(path: str | Path, network: TrainedSegmenter, model: AnomalyModel,
                 calibration: Calibration | None = None) -> Path:
    """Save a trained network (safetensors) with what ties it to ``model``.

    A file that carries its healthy ``calibration`` can run in the Detect widget and
    ``supn-anomaly detect`` as it is.
    """
    tensors, meta = segmenter_state(network)
    meta.update(scorer=network_scorer(network), base_model=model.name, crop_size=model.crop_size,
                cell_diameter_px=model.cell_diameter_px, intensity=model.intensity.to_dict())
    if calibration is not None:
        meta["calibration"] = calibration.portable()
    return save_model_file(path, tensors, meta)


def _close(a, b) -> bool:
    try:
        return np.allclose(np.asarray(a, np.float64), np.asarray(b, np.float64), rtol=1e-4, atol=1e-6)
    except (TypeError, ValueError):
        return False


def _check_fits(meta: dict, model: AnomalyModel, filename: str) -> None:
    """One clear error when a network was trained on another model's crops (size, channels, intensities)."""
    intensity = meta.get("intensity") or {}
    ours = model.intensity.to_dict()
    fits = (int(meta.get("crop_size", -1)) == model.crop_size and int(meta.get("channels", -1)) == model.channels
            and _close(intensity.get("low"), ours["low"]) and _close(intensity.get("high"), ours["high"])
            and ("cell_diameter_px" not in meta or _close(meta["cell_diameter_px"], model.cell_diameter_px)))
    if not fits:
        raise ModelFileError(
            f"{filename} was trained for the model {meta.get('base_model', '?')!r} "
            f"({meta.get('crop_size', '?')} px crops, {meta.get('channels', '?')} channel(s)); it does not fit the "
            f"model {model.name!r} ({model.crop_size} px crops, {model.channels} channel(s), other intensities "
            f"or cell size): train one for this model")


def read_network(path: str | Path, model: AnomalyModel | None = None) -> tuple[TrainedSegmenter, Calibration | None]:
    """A trained network and the healthy calibration its file carries (None if none).

    With ``model``, checked to have been made for it. Raises ModelFileError (one line for people)
    for a missing, foreign or damaged file.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise ModelFileError(f"scorer network file not found: {path}")
    meta = read_metadata(path)
    if meta.get("kind") != NETWORK_KIND:
        what = "an anomaly model" if "arch" in meta or "score_rules" in meta else "not a network of this plugin"
        raise ModelFileError(f"{path.name} is {what}, not a self-supervised scorer network (ssl-*)")
    if model is not None:
        _check_fits(meta, model, path.name)
    tensors, meta = load_model_file(path)
    try:
        network = segmenter_from_state(tensors, meta)
    except (KeyError, TypeError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"{path.name} is damaged: {str(exc).splitlines()[0]}") from exc
    cal = meta.get("calibration")
    return network, (Calibration.from_dict(cal) if cal and cal.get("healthy_scores") else None)


def load_network(path: str | Path, model: AnomalyModel | None = None) -> TrainedSegmenter:
    return read_network(path, model)[0]


def shipped_network_path(model: AnomalyModel, name: str) -> Path | None:
    """The network file of ``name`` shipped with a built-in model, or None."""
    if model.name not in builtin_model_names():
        return None
    path = builtin_network_path(model.name, name)
    return path if path.is_file() else None


@functools.lru_cache(maxsize=16)
def _load_shipped(path: Path) -> TrainedSegmenter:
    return load_network(path)


def shipped_network(model: AnomalyModel, name: str) -> TrainedSegmenter | None:
    """The network of ``name`` shipped with ``model`` (a built-in model), loaded once per process."""
    path = shipped_network_path(model, name)
    if path is None:
        return None
    _check_fits(read_metadata(path), model, path.name)
    return _load_shipped(path)


# -- a session's networks ------------------------------------------------------------------------

class ScorerNetworks:
    """Networks loaded for models during one session (a napari window, one command).

    Attaching a network lets its model run the network's scorer. The network's own healthy
    calibration replaces the model's entry for that scorer (an entry made with another network
    would give wrong thresholds); without one the scorer needs a threshold or a calibration.
    """

    def __init__(self):
        self._by_model: "weakref.WeakKeyDictionary[AnomalyModel, dict[str, tuple[TrainedSegmenter, str]]]" = (
            weakref.WeakKeyDictionary())

    def attach(self, model: AnomalyModel, network: TrainedSegmenter, calibration: Calibration | None = None,
               source: str = "") -> str:
        name = network_scorer(network)
        table = model.metadata.setdefault("calibration", {})
        if calibration is not None and calibration.healthy_scores:
            table[name] = calibration.to_dict()
        else:
            table.pop(name, None)
        self._by_model.setdefault(model, {})[name] = (network, source)
        return name

    def attach_file(self, model: AnomalyModel, path: str | Path, require_calibration: bool = False) -> str:
        """Load a network file made for ``model`` and attach it; its scorer's name.

        ``require_calibration``: refuse a file without a healthy calibration (nothing is attached then).
        """
        network, calibration = read_network(path, model)
        if require_calibration and calibration is None:
            raise ModelFileError(f"{Path(path).name} carries no healthy calibration, so no threshold can be set; "
                                 f"make it with `supn-anomaly train-scorer`, which calibrates it on held-back "
                                 f"healthy cells")
        return self.attach(model, network, calibration, Path(path).name)

    def get(self, model: AnomalyModel, name: str) -> TrainedSegmenter | None:
        entry = self._by_model.get(model, {}).get(name)
        return None if entry is None else entry[0]

    def source(self, model: AnomalyModel, name: str) -> str | None:
        """Where the network of ``name`` came from: a file name, "shipped with <model>", or None."""
        entry = self._by_model.get(model, {}).get(name)
        if entry is not None:
            return entry[1] or "loaded in this session"
        return f"shipped with {model.name}" if shipped_network_path(model, name) is not None else None


def require_network(model: AnomalyModel, name: str, network: TrainedSegmenter | None) -> TrainedSegmenter:
    """The network to run ``name`` with: the one given, else the one shipped with the model."""
    if network is not None:
        if network_scorer(network) != name:
            raise ScorerUnavailable(f"the network given was trained for {network_scorer(network)!r}, not {name!r}")
        return network
    network = shipped_network(model, name)
    if network is None:
        raise ScorerUnavailable(f"scorer {name!r} needs its trained network and none ships with the model "
                                f"{model.name!r}: load one made for it by 'supn-anomaly train-scorer' (--segmenter "
                                f"FILE, or 'Scorer network…' in the Detect widget)")
    return network
