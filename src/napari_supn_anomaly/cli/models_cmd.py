"""supn-anomaly models: list the built-in models."""
from __future__ import annotations

from ..models import describe_builtin_models


def add_parser(sub, name):
    return sub.add_parser(name, help="list the built-in models")


def run(args) -> int:
    rows = describe_builtin_models()
    if not rows:
        print("no built-in models are installed")
        return 0
    widths = {key: max(len(r[key]) for r in rows) for key in ("name", "modality", "channels")}
    for r in rows:
        print("  ".join(f"{r[key]:<{widths[key]}}" for key in widths) + "  " + r["description"])
    return 0
