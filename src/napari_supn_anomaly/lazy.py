"""A package's exported names, each imported from its submodule on first use (PEP 562).

The packages whose modules need torch or scikit-image (``supn``, ``cells``, ``scoring``) export
their names this way, so that their light parts (the device, modality and scorer names that
the command line offers) load without them and ``supn-anomaly --help`` starts at once.
"""
from __future__ import annotations

import sys
from importlib import import_module
from typing import Callable


def exports_on_first_use(package: str, exports: dict[str, str]) -> Callable[[str], object]:
    """The ``__getattr__`` of ``package``: ``exports`` maps each exported name to its submodule."""

    def __getattr__(name: str):
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        home = exports[name]
        module = import_module(f".{home}", package)
        namespace = vars(sys.modules[package])
        # Bind every name of that submodule at once: importing it set the package attribute of
        # its own name (scoring.resolve) to the submodule, which the exported function replaces.
        for exported, where in exports.items():
            if where == home:
                namespace[exported] = getattr(module, exported)
        return namespace[name]

    return __getattr__
