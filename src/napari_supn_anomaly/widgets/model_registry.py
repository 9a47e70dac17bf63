"""Models of this napari session, listed in the Detect widget next to the built-in models.

The Fine-tune widget (or a script) calls :func:`register_model`; every open Detect widget updates
its model list at once through the ``changed`` signal. No Qt here: a psygnal signal only.
"""
from __future__ import annotations

from pathlib import Path

from psygnal import Signal

from ..models import AnomalyModel, builtin_model_names, load_model


class ModelRegistry:
    """Ordered {display name: AnomalyModel or path to a model file}."""

    changed = Signal(str)  # the name that was added, replaced or removed

    def __init__(self):
        self._models: dict[str, AnomalyModel | Path] = {}

    def register(self, name: str, model: AnomalyModel | str | Path) -> str:
        name = str(name).strip()
        if not name:
            raise ValueError("a model needs a name to be listed")
        if name in builtin_model_names():
            raise ValueError(f"{name!r} is the name of a built-in model; choose another name")
        if not isinstance(model, AnomalyModel):
            model = Path(model).expanduser()
        self._models[name] = model
        self.changed.emit(name)
        return name

    def unregister(self, name: str) -> None:
        if self._models.pop(name, None) is not None:
            self.changed.emit(name)

    def names(self) -> list[str]:
        return list(self._models)

    def __contains__(self, name: str) -> bool:
        return name in self._models

    def get(self, name: str) -> AnomalyModel:
        """The model (loading it from its file the first time)."""
        entry = self._models[name]
        if isinstance(entry, Path):
            entry = load_model(entry)
            self._models[name] = entry
        return entry

    def clear(self) -> None:
        names = list(self._models)
        self._models.clear()
        for name in names:
            self.changed.emit(name)


REGISTRY = ModelRegistry()


def register_model(name: str, model: AnomalyModel | str | Path) -> str:
    """List ``model`` (an AnomalyModel or a model file) under ``name`` in every Detect widget."""
    return REGISTRY.register(name, model)


def unregister_model(name: str) -> None:
    REGISTRY.unregister(name)


def registered_model_names() -> list[str]:
    return REGISTRY.names()


def get_registered_model(name: str) -> AnomalyModel:
    return REGISTRY.get(name)
