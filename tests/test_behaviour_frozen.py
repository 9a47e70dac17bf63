"""Behaviour frozen before the scoring-layer refactor: `detect` and `score-cells` on crops of the
built-in samples must write the tables stored in tests/frozen/ (floats to rtol = atol = 1e-4; the
step-accepting energy projection to rtol 2e-3, see _frozen_cases.py).

The cases (models, scorers, options) are listed in tests/frozen/cases.json; a deliberate change
of behaviour is recorded with tests/frozen/regenerate.py.
"""
from __future__ import annotations

import pytest

from _frozen_cases import (detect_differences, load_cases, run_detect, run_score_cells, score_cells_differences,
                           write_crop_sets, write_field)

CASES = load_cases()


@pytest.fixture(scope="module")
def fields(tmp_path_factory):
    folder = tmp_path_factory.mktemp("fields")
    return {name: write_field(name, folder) for name in {c["field"] for c in CASES["detect"]}}


@pytest.fixture(scope="module")
def crop_sets(tmp_path_factory):
    root = tmp_path_factory.mktemp("crops")
    return {name: write_crop_sets(name, root) for name in {c["crops"] for c in CASES["score_cells"]}}


@pytest.mark.parametrize("case", CASES["detect"], ids=lambda c: c["id"])
def test_detect_tables_match_frozen(case, fields, tmp_path):
    differences = detect_differences(case, run_detect(case, fields[case["field"]], tmp_path))
    assert not differences, "\n".join(differences)


@pytest.mark.parametrize("case", CASES["score_cells"], ids=lambda c: c["id"])
def test_score_cells_table_matches_frozen(case, crop_sets, tmp_path):
    differences = score_cells_differences(case, run_score_cells(case, *crop_sets[case["crops"]], tmp_path))
    assert not differences, "\n".join(differences)
