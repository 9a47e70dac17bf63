"""The package's layers: every import points down (docs/design.md, 'Layers of the code')."""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "napari_supn_anomaly"

# A unit may import units of a lower rank only (and itself). Units of equal rank are independent.
RANKS = {
    "__init__": 0, "errors": 0, "progress": 0, "lazy": 0, "process_memory": 0,
    "supn": 1, "cells": 1, "files": 1,
    "models": 2,
    "scoring": 3,
    "pipeline": 4, "training": 4,
    "io": 5, "overlay": 5, "crop_folders": 5, "evaluation": 5, "synthetic": 5,
    "sample_data": 6, "cluster": 6, "review": 6,
    "widgets": 7,
    "cli": 8,
}
BOTTOM = {"errors", "progress", "lazy", "process_memory", "supn", "cells"}  # they import nothing else of the package but each other
NO_GUI_OR_FILES = {"supn", "cells", "scoring", "pipeline"}
GUI_AND_FILE_LIBRARIES = {"napari", "qtpy", "PyQt5", "PyQt6", "PySide2", "PySide6", "magicgui", "vispy",
                          "tifffile", "bioio", "imageio", "PIL", "zarr"}


def _unit(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes inside ``if TYPE_CHECKING:`` blocks (not imported at run time)."""
    inside = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            inside.update(id(n) for stmt in node.body for n in ast.walk(stmt))
    return inside


def _imports(path: Path, source: str | None = None):
    """(imported unit or third-party top-level name, is a package import, only for type checking)."""
    tree = ast.parse(path.read_text() if source is None else source)
    typing_only = _type_checking_nodes(tree)
    rel = path.relative_to(PACKAGE).with_suffix("")
    here = ["napari_supn_anomaly", *rel.parts[:-1]]
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                module = here[: len(here) - node.level + 1] + (node.module.split(".") if node.module else [])
            else:
                module = (node.module or "").split(".")
            if module[0] != "napari_supn_anomaly":
                yield module[0], False, id(node) in typing_only
            elif len(module) == 1:
                for alias in node.names:
                    yield alias.name if alias.name in RANKS else "__init__", True, id(node) in typing_only
            else:
                yield module[1], True, id(node) in typing_only
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "napari_supn_anomaly":
                    yield (parts[1] if len(parts) > 1 else "__init__"), True, id(node) in typing_only
                else:
                    yield parts[0], False, id(node) in typing_only


MODULES = sorted(PACKAGE.rglob("*.py"))


def test_every_unit_has_a_rank():
    units = {_unit(p) for p in MODULES}
    assert units <= set(RANKS), f"give these a rank in RANKS and in docs/design.md: {units - set(RANKS)}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    unit = _unit(path)
    for name, ours, typing_only in _imports(path):
        if ours and name != unit:
            assert RANKS[name] < RANKS[unit], f"{unit} (rank {RANKS[unit]}) imports {name} (rank {RANKS[name]})"
            if unit in BOTTOM:
                assert name in BOTTOM, f"{unit} may import only {sorted(BOTTOM)}, not {name}"
            if unit == "pipeline" and name == "scoring":
                assert typing_only, "the pipeline receives a Scorer and never imports the scoring registry"
        if not ours and unit in NO_GUI_OR_FILES:
            assert name not in GUI_AND_FILE_LIBRARIES, f"{unit} must not know of napari, Qt or files ({name})"


def test_the_reader_resolves_relative_imports():
    probe = PACKAGE / "cells" / "probe.py"
    found = set(_imports(probe, "from ..pipeline.stacks import detect\nfrom .measure import cell_centres\n"
                                "from .. import errors\nimport tifffile\n"))
    assert found == {("pipeline", True, False), ("cells", True, False), ("errors", True, False),
                     ("tifffile", False, False)}
    typed = set(_imports(probe, "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..scoring import Scorer\n"))
    assert ("scoring", True, True) in typed
