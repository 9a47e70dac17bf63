"""The sensitivity a person chooses: the share of healthy cells flagged, its default, and what it
means in words. The widget, ``detect``, ``score-cells`` and the demo start from the same default.

By default the threshold is set on the slide itself (``pipeline.self_calibration``): the score
that this share of the slide's own healthy cells exceeds, estimated from all its cells (most cells
of a smear are healthy). With too few cells, or with ``calibration="model"``, it is the score that
this share of the model's held-back healthy cells exceeds. docs/benchmarks/self_calibration.md
measures both on slides of other labs; docs/benchmarks/sensitivity.md what each rate finds.
"""
from __future__ import annotations

# Fluorescence and unstained bright-field: 5%, chosen on held-out data
# (docs/benchmarks/self_calibration.md). Parasites there are faint, and at 1% the demo's sample
# shows 24 of its 45 parasites (5%: 39). docs/benchmarks/sensitivity.md has what each rate finds.
DEFAULT_FPR = 0.05
# Stained smears: 1%, the goal of at most 1 false candidate per 100 cells on another lab's
# uninfected smear (not met there: 1.9 per 100 on Chula fields). The stain makes a parasite stand out, so a low rate loses few of them: giemsa-rbc
# finds 97% of the infected cells of its own slide's held-out fields at 1% (5%: 99%). On other
# labs' slides it costs more (MalariaNet test slides, 3 model seeds: 73% of parasites at 1.6 false
# candidates per 100 healthy cells, against 84% at 5.4 at 5%; docs/benchmarks/generalisation.md).
STAINED_DEFAULT_FPR = 0.01


def default_fpr(modality: str) -> float:
    """The sensitivity a model of this modality starts at (the share of healthy cells flagged)."""
    from ..cells.modality import stained  # here, not above: the command line's help imports this module

    return STAINED_DEFAULT_FPR if stained(modality) else DEFAULT_FPR


def describe_default_fprs() -> str:
    """Both defaults in words, for help texts that are written before a model is chosen."""
    return (f"{100 * STAINED_DEFAULT_FPR:g} in 100 healthy cells for a stained-smear model, {100 * DEFAULT_FPR:g} in "
            "100 for fluorescence and unstained models")


def describe_fpr(fpr: float) -> str:
    """The rate in words a biologist uses, e.g. 'about 5 false candidates per 100 healthy cells'."""
    number = f"{100 * fpr:.2g}"
    return f"about {number} false candidate{'' if number == '1' else 's'} per 100 healthy cells"
