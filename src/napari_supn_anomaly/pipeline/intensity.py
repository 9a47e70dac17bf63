"""Bring a field's intensities to the range of the data the model was trained on.

A 12- or 16-bit camera, another exposure or another lamp puts the same cells at quite different
grey levels, and a model would then call every cell abnormal. Matching measures the 1st and
99.8th percentiles over the pixels a crop around each cell would hold, and maps them linearly
onto the model's data range (``AnomalyModel.data_range``: measured with the same function on
its training cells; older files: its normalisation range). In ``auto`` mode this happens only
when the field does not fit that range, so fields from the microscope a model was trained or
fine-tuned on are scored unchanged. The functions live in ``models.data_range`` so that the
fine-tuning check (``training.guard``) maps cells exactly as detection does.
"""
from __future__ import annotations

from ..models.data_range import (FIT_TOLERANCE, MODES, PERCENTILES, IntensityMatch, apply_match, check_mode,
                                 field_range, plan_match)

AUTO_TOLERANCE = FIT_TOLERANCE
__all__ = ["MODES", "PERCENTILES", "AUTO_TOLERANCE", "IntensityMatch", "check_mode", "field_range", "plan_match",
           "apply_match"]
