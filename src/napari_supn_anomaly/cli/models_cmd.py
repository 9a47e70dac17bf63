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
    width = max(len(r["name"]) for r in rows)
    for r in rows:
        print(f"{r['name']:<{width}}  {r['modality']:<12}  {r['channels']:<20}  {r['description']}")
    return 0
