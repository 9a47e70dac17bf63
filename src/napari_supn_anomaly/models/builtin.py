"""Built-in models shipped inside the package, and loading a model by name or path.

``weights/<model>.safetensors`` is a built-in model; ``weights/<model>.<scorer>.safetensors`` is
the trained network of one of its self-supervised scorers (``scoring.shipped_network``), not a model.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from .anomaly_model import AnomalyModel
from ..errors import ModelFileError
from .model_file import MODEL_SUFFIX, read_metadata

_WEIGHTS = "weights"


def _weights_dir() -> Path:
    return Path(str(resources.files("napari_supn_anomaly.models").joinpath(_WEIGHTS)))


def builtin_model_names() -> list[str]:
    folder = _weights_dir()
    if not folder.is_dir():
        return []
    stems = (p.name[: -len(MODEL_SUFFIX)] for p in folder.glob("*" + MODEL_SUFFIX))
    return sorted(s for s in stems if "." not in s)  # "<model>.<scorer>" files are scorer networks


def builtin_model_path(name: str) -> Path:
    return _weights_dir() / (name + MODEL_SUFFIX)


def builtin_network_path(model_name: str, scorer: str) -> Path:
    """Where the network of ``scorer`` shipped with the built-in ``model_name`` lives (may not exist)."""
    return _weights_dir() / f"{model_name}.{scorer}{MODEL_SUFFIX}"


def describe_builtin_models() -> list[dict]:
    rows = []
    for name in builtin_model_names():
        meta = read_metadata(builtin_model_path(name))
        rows.append({"name": name, "modality": meta.get("modality", "?"),
                     "channels": ", ".join(meta.get("channel_names", [])),
                     "description": meta.get("description", "")})
    return rows


def load_model(name_or_path: str | Path) -> AnomalyModel:
    """A built-in model by name, or a model file by path."""
    text = str(name_or_path)
    if text in builtin_model_names():
        return AnomalyModel.from_file(builtin_model_path(text))
    path = Path(text).expanduser()
    if not path.exists() and path.suffix != MODEL_SUFFIX and not any(s in text for s in "/\\"):
        known = ", ".join(builtin_model_names()) or "none installed"
        raise ModelFileError(f"no built-in model called {text!r} (built-in models: {known}) and no such file")
    return AnomalyModel.from_file(path)
