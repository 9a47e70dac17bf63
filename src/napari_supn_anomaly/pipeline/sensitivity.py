"""The sensitivity a person chooses: the share of healthy cells flagged, its default, and what it
means in words. The widget, ``detect`` and the demo start from the same default.

By default the threshold is set on the slide itself (``pipeline.self_calibration``): the score
that this share of the slide's own healthy cells exceeds, estimated from all its cells (most cells
of a smear are healthy). With too few cells, or with ``calibration="model"``, it is the score that
this share of the model's held-back healthy cells exceeds. docs/benchmarks/self_calibration.md
measures both on slides of other labs; docs/benchmarks/sensitivity.md what each rate finds.
"""
from __future__ import annotations

# 5%, chosen on held-out data (docs/benchmarks/self_calibration.md). What it finds on the demo's
# sample and on real cells is in docs/benchmarks/sensitivity.md, on held-out MalariaNet slides in
# stain.md, and on uninfected Chula fields in chula_candidates.md: there it flags about 7-8 red cells
# in 100 per field (2026-12-01), so the 1 in 100 is not met. Lower it where false candidates
# cost more than misses.
DEFAULT_FPR = 0.05


def describe_fpr(fpr: float) -> str:
    """The rate in words a biologist uses, e.g. 'about 5 false candidates per 100 healthy cells'."""
    number = f"{100 * fpr:.2g}"
    return f"about {number} false candidate{'' if number == '1' else 's'} per 100 healthy cells"
