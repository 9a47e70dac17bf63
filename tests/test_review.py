"""Review without Qt: statuses, parasitemia intervals, summarize (old folders, bad CSVs), re-ranking."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from napari_supn_anomaly.cli import main
from napari_supn_anomaly.review.parasitemia import Counts, clopper_pearson, count
from napari_supn_anomaly.review.session import ReviewSession


def grid_result(n_side=6, seed=0, planes=0):
    """A result of square cells on a grid; a third of them hot (candidates)."""
    from napari_supn_anomaly.pipeline.candidates import cell_table
    from napari_supn_anomaly.pipeline.result import DetectionResult

    rng = np.random.default_rng(seed)
    labels = np.zeros((n_side * 12, n_side * 12), np.int32)
    for k in range(n_side * n_side):
        y, x = divmod(k, n_side)
        labels[y * 12 + 1:y * 12 + 11, x * 12 + 1:x * 12 + 11] = k + 1
    heat = rng.random(labels.shape).astype(np.float32)
    hot = rng.choice(n_side * n_side, n_side * n_side // 3, replace=False) + 1
    heat[np.isin(labels, hot)] += 2.0
    if planes:
        labels, heat = np.stack([labels] * planes), np.stack([heat] * planes)
        tables = []
        for p in range(planes):
            t = cell_table(heat[p], labels[p])
            t.insert(0, "plane", p)
            tables.append(t)
        table = pd.concat(tables, ignore_index=True)
    else:
        table = cell_table(heat, labels)
    base = DetectionResult(heat, labels, table, pd.DataFrame(), 1.5, {"model": "grid", "threshold": 1.5},
                           "T" if planes else "")
    return base.with_threshold(1.5)


def write_folder(tmp_path, result, stem="field"):
    from napari_supn_anomaly.io import write_result

    write_result(result, tmp_path, stem)
    return tmp_path


def test_new_tables_carry_status():
    result = grid_result()
    cells = result.cell_table
    assert set(cells.loc[cells["candidate"], "status"]) == {"candidate"}
    assert set(cells.loc[~cells["candidate"], "status"]) == {""}
    decided = result.cell_table.assign(status=np.where(cells["candidate"], "accepted", ""))
    again = result.__class__(**{**result.__dict__, "cell_table": decided}).with_threshold(10.0)
    assert (again.cell_table["status"] == "accepted").sum() == cells["candidate"].sum()  # decisions survive


def test_clopper_pearson_and_undecided_widen_the_interval():
    low, high = clopper_pearson(5, 100)
    assert 0.016 < low < 0.017 and 0.11 < high < 0.114   # the published exact interval 1.64%-11.28%
    decided = Counts(cells=100, candidate_cells=10, accepted=5, rejected=5)
    undecided = Counts(cells=100, candidate_cells=10, accepted=5, rejected=2)
    assert decided.interval == pytest.approx((low, high))
    assert undecided.interval[0] == pytest.approx(low) and undecided.interval[1] > high
    assert np.isnan(Counts().parasitemia)


def test_interval_contains_the_truth_on_synthetic_slides():
    """Slides of known parasitemia: every infected cell is flagged, with false candidates too; a
    reviewer decides a random part of the candidates correctly. The 95% interval must hold the
    true parasitemia in at least ~95% of slides."""
    rng = np.random.default_rng(1)
    hits, trials = 0, 400
    for _ in range(trials):
        truth = rng.uniform(0.002, 0.08)
        n = int(rng.integers(300, 3000))
        infected = rng.random(n) < truth
        flagged = infected | (rng.random(n) < 0.05)
        reviewed = flagged & (rng.random(n) < rng.uniform(0, 1))
        status = np.where(~flagged, "", np.where(~reviewed, "candidate", np.where(infected, "accepted", "rejected")))
        low, high = count(pd.DataFrame({"status": status})).interval
        hits += low <= truth <= high
    assert hits / trials >= 0.94


def test_only_red_cells_are_counted():
    table = pd.DataFrame({"status": ["accepted", "", "accepted", "candidate"],
                          "kind": ["red_cell", "red_cell", "white_cell", "platelet"]})
    c = count(table)
    assert (c.cells, c.accepted, c.candidate_cells) == (2, 1, 1)
    assert count(table.drop(columns="kind")).cells == 4   # old tables: every cell is a red cell


def test_detect_folder_summarises_old_and_new(tmp_path, capsys):
    result = grid_result()
    folder = write_folder(tmp_path, result)
    cells = pd.read_csv(folder / "field_cells.csv")
    n, flagged = len(cells), int(cells["candidate"].sum())
    # a folder from before reviews: no status column anywhere
    cells.drop(columns="status").to_csv(folder / "field_cells.csv", index=False)
    assert main(["summarize", str(folder)]) == 0
    summary = pd.read_csv(folder / "summary.csv")
    assert list(summary.columns[:9]) == ["image", "cells", "candidate_cells", "accepted", "rejected", "unreviewed",
                                         "parasitemia", "parasitemia_low", "parasitemia_high"]
    assert summary["image"].tolist() == ["field", "ALL"]
    assert summary.loc[0, "cells"] == n and summary.loc[0, "unreviewed"] == flagged
    assert summary.loc[0, "parasitemia"] == 0 and summary.loc[0, "parasitemia_high"] > flagged / n

    # statuses edited by hand; a second image; per-µL counts and the HTML report
    cells["status"] = np.where(cells["candidate"], "candidate", "")
    cells.loc[cells.index[cells["candidate"]][:3], "status"] = "Accepted "
    cells.loc[cells.index[cells["candidate"]][3:5], "status"] = "rejected"
    cells.to_csv(folder / "field_cells.csv", index=False)
    write_folder(tmp_path, grid_result(seed=3, planes=2), stem="stack")
    report = tmp_path / "report.html"
    assert main(["summarize", str(folder), "--out", str(tmp_path / "s.csv"), "--html", str(report),
                 "--rbc-per-ul", "5000000", "--per-field"]) == 0
    summary = pd.read_csv(tmp_path / "s.csv")
    row = summary.set_index("image").loc["field"]
    assert (row["accepted"], row["rejected"], row["unreviewed"]) == (3, 2, flagged - 5)
    assert row["parasitemia"] == pytest.approx(3 / n)
    assert row["parasites_per_ul"] == pytest.approx(5e6 * 3 / n, rel=1e-4)
    assert "stack field 1" in set(summary["image"]) and summary["image"].iloc[-1] == "ALL"
    pooled = summary.iloc[-1]
    assert pooled["cells"] == row["cells"] + summary.set_index("image").loc["stack", "cells"]
    text = report.read_text()
    assert text.count("data:image/png;base64,") >= 4 and "grid" in text and "<script" not in text


@pytest.mark.parametrize("edit, message", [
    (lambda c: c.assign(status=c["status"].where(c.index != 2, "maybe")), "field_cells.csv row 4: unknown status 'maybe'"),
    (lambda c: c.drop(columns="candidate"), "missing column 'candidate'"),
    (lambda c: c.assign(cell_id=c["cell_id"].where(c.index != 0, 999)), "field_cells.csv row 2: unknown cell id 999"),
    (lambda c: c.assign(cell_id=c["cell_id"].where(c.index != 1, c["cell_id"].iloc[0])), "row 3: cell id 1 appears twice"),
])
def test_hand_edited_tables_are_refused_naming_the_row(tmp_path, capsys, edit, message):
    folder = write_folder(tmp_path, grid_result())
    cells = pd.read_csv(folder / "field_cells.csv", dtype={"status": object}, keep_default_na=False)
    edit(cells).to_csv(folder / "field_cells.csv", index=False)
    assert main(["summarize", str(folder)]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and "\n" not in err and "Traceback" not in err


def test_unknown_cell_in_candidates_and_missing_folder(tmp_path, capsys):
    folder = write_folder(tmp_path, grid_result())
    cand = pd.read_csv(folder / "field_candidates.csv")
    cand.loc[0, "cell_id"] = 4242
    cand.to_csv(folder / "field_candidates.csv", index=False)
    assert main(["summarize", str(folder)]) == 2
    assert "field_candidates.csv row 2: unknown cell id 4242" in capsys.readouterr().err
    assert main(["summarize", str(tmp_path / "nowhere")]) == 2
    assert "results folder not found" in capsys.readouterr().err


def test_session_keys_undo_and_rerank_never_drop_cells():
    rng = np.random.default_rng(0)
    n = 60
    infected = rng.random(n) < 0.4
    cells = pd.DataFrame({"cell_id": np.arange(1, n + 1), "y": 0.0, "x": 0.0, "area": 100,
                          "score": rng.random(n), "candidate": True, "status": "candidate"})
    feature = infected + 0.3 * rng.standard_normal(n)          # what the re-ranker can learn from
    session = ReviewSession(cells, measurements=pd.DataFrame({"f": feature, "score": cells["score"]}))
    order = list(session.queue)
    assert order == list(np.argsort(-cells["score"].to_numpy(), kind="stable"))
    session.decide("accepted")
    assert session.undo() and session.current == order[0] and session.counts().accepted == 0
    while not session.reranked:
        row = session.current
        session.decide("accepted" if infected[row] else "rejected")
    assert sorted(session.queue) == list(range(n))               # reordered, nothing dropped
    assert session.cells["review_score"].notna().all() and len(session.cells) == n
    rest = [r for r in session.queue[session.position:] if session.status[r] == "candidate"]
    p = session.cells["review_score"].to_numpy()[rest]
    assert np.all(np.diff(p) <= 1e-12)                           # undecided cells best first
    assert np.mean(infected[rest[:5]]) > np.mean(infected[rest])  # the queue now starts with likelier ones
    with pytest.raises(ValueError):
        session.decide("maybe")


def test_detect_writes_summary_and_keeps_an_earlier_review(tmp_path, monkeypatch):
    """detect's last step (write_folder_summary) and the copy of a review before results are replaced."""
    from napari_supn_anomaly.cli.detect_cmd import write_folder_summary
    from napari_supn_anomaly.review.results_folder import keep_old_review

    folder = write_folder(tmp_path, grid_result())
    assert keep_old_review(folder, "field") is None          # nothing decided: nothing to keep
    cells = pd.read_csv(folder / "field_cells.csv", dtype={"status": object}, keep_default_na=False)
    cells.loc[cells.index[cells["candidate"]][0], "status"] = "accepted"
    cells.to_csv(folder / "field_cells.csv", index=False)
    kept = keep_old_review(folder, "field")
    assert kept is not None and (pd.read_csv(kept)["status"] == "accepted").sum() == 1
    write_folder_summary(folder)
    assert pd.read_csv(folder / "summary.csv").loc[0, "accepted"] == 1


def test_decisions_are_carried_to_a_new_cut():
    from napari_supn_anomaly.review.statuses import carry_decisions

    result = grid_result(planes=2)
    old = result.cell_table.copy()
    first = old.index[old["candidate"]][0]
    old.loc[first, "status"] = "rejected"
    new = carry_decisions(old, result.with_threshold(50.0).cell_table)   # nothing is a candidate any more
    assert new.loc[first, "status"] == "rejected" and (new["status"] == "").sum() == len(new) - 1
