"""The sensitivity a person chooses: the share of healthy cells flagged, its default, and what it
means in words. The widget, ``detect`` and the demo start from the same default.

The threshold is the score that this share of a model's held-back healthy cells exceeds, so on
healthy cells like the model's own the share of them flagged is this rate; docs/benchmarks/
sensitivity.md measures it on healthy cells the models never saw, and what each rate finds.
"""
from __future__ import annotations

# 5% (docs/benchmarks/sensitivity.md): on the held-back healthy cells of both built-in models about
# 5 false candidates per 100 healthy cells (5.3 and 6.1); the synthetic fluorescence sample shows 35
# of its 45 parasites with no false candidate (at 1%: 16 of 45); unseen Giemsa fields 98% of
# infected cells with 7.7 false candidates per 100 healthy cells. 10% finds more faint fluorescence
# parasites (42 of 45) but doubles the false candidates on real cells and gives 17 on the Giemsa
# sample's 18 healthy cells.
DEFAULT_FPR = 0.05


def describe_fpr(fpr: float) -> str:
    """The rate in words a biologist uses, e.g. 'about 5 false candidates per 100 healthy cells'."""
    return f"about {100 * fpr:.2g} false candidates per 100 healthy cells"
