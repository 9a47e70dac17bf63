"""Rewrite the stored values of tests/test_behaviour_frozen.py.

Run only on purpose; these values freeze the behaviour before the scoring-layer refactor.
Rewriting them after a change hides whatever that change did to the scores.

    PYTHONPATH=src python tests/frozen/regenerate.py               # cases from the package, then values
    PYTHONPATH=src python tests/frozen/regenerate.py --keep-cases  # values only, for the stored cases

Without --keep-cases the scorers are listed from the package as it is now (every scorer each
built-in model can run in `detect`; every registry scorer for `score-cells`, less the ssl-*
ones whose network does not ship with the model) and written to cases.json.
"""
from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import _frozen_cases as fc  # noqa: E402

DETECT_FPR = 0.1
PAIRS = (("fluorescence", "fluorescence-rbc"), ("giemsa", "giemsa-rbc"))


def detect_cases() -> list[dict]:
    from napari_supn_anomaly.models import load_model
    from napari_supn_anomaly.scoring import available_scorers

    cases = []
    for field, model in PAIRS:
        cases.append({"id": f"{field}_default", "field": field, "model": model, "scorer": None, "fpr": None})
        cases += [{"id": f"{field}_{s}_fpr{DETECT_FPR:g}", "field": field, "model": model, "scorer": s,
                   "fpr": DETECT_FPR} for s in available_scorers(load_model(model))]
    return cases


def score_cells_cases() -> tuple[list[dict], list[dict]]:
    from napari_supn_anomaly.models import load_model
    from napari_supn_anomaly.scoring import scorer_info, scorer_names, shipped_network_path

    cases, skipped = [], []
    for crops, name in PAIRS:
        model = load_model(name)
        calibrated = model.metadata.get("calibration", {})
        for s in scorer_names():
            if scorer_info(s).needs_network and shipped_network_path(model, s) is None:
                skipped.append({"model": name, "scorer": s, "reason": "no network ships with the model"})
                continue
            if scorer_info(s).rgb_only and model.channels != 3:
                skipped.append({"model": name, "scorer": s, "reason": "reads a stain's colour; the model is not RGB"})
                continue
            cases.append({"id": f"{crops}_{s}", "crops": crops, "model": name, "scorer": s,
                          "healthy": s not in calibrated})
    return cases, skipped


def fresh_cases() -> dict:
    score_cells, skipped = score_cells_cases()
    return {"about": "behaviour frozen before the scoring-layer refactor; see regenerate.py",
            "detect": detect_cases(), "score_cells": score_cells, "score_cells_skipped": skipped}


def regenerate(cases: dict, work: Path) -> None:
    for folder in ("detect", "score_cells"):
        shutil.rmtree(fc.FROZEN / folder, ignore_errors=True)
    fields = {name: fc.write_field(name, work / "fields") for name in {c["field"] for c in cases["detect"]}}
    for case in cases["detect"]:
        fc.store_detect(case, fc.run_detect(case, fields[case["field"]], work / "detect" / case["id"]))
    crop_sets = {name: fc.write_crop_sets(name, work / "crops") for name in {c["crops"] for c in cases["score_cells"]}}
    for case in cases["score_cells"]:
        fc.store_score_cells(case, fc.run_score_cells(case, *crop_sets[case["crops"]], work / "score_cells"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep-cases", action="store_true", help="reuse the cases in cases.json")
    args = parser.parse_args()
    torch.set_num_threads(1)
    cases = fc.load_cases() if args.keep_cases else fresh_cases()
    with tempfile.TemporaryDirectory() as work:
        regenerate(cases, Path(work))
    fc.CASES_FILE.write_text(json.dumps(cases, indent=1) + "\n")
    print(f"{len(cases['detect'])} detect and {len(cases['score_cells'])} score-cells cases written to {fc.FROZEN}")


if __name__ == "__main__":
    main()
