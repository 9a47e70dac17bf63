"""Scoring one batch per CPU thread (supn.batch_threads): same results, in order, and a stop stays prompt."""
import threading
import time

import numpy as np
import torch

import napari_supn_anomaly.models.anomaly_model as anomaly_model
from napari_supn_anomaly.models import load_model
from napari_supn_anomaly.scoring import resolve
from napari_supn_anomaly.supn.batch_threads import batch_threads, in_order


def test_results_come_back_in_order_whatever_finishes_first():
    def slow_first(start):
        time.sleep(0.05 if start == 0 else 0.001)
        return start * 10

    assert list(in_order(slow_first, range(0, 50, 5), threads=3)) == [(s, s * 10) for s in range(0, 50, 5)]


def test_a_stopped_run_starts_no_more_than_the_batches_in_flight_and_restores_torch_threads():
    started, lock = [], threading.Lock()
    saved = torch.get_num_threads()

    def score(start):
        with lock:
            started.append(start)
        assert torch.get_num_threads() == 1  # each batch's operations on one core
        time.sleep(0.02)
        return start

    run = in_order(score, range(100), threads=2)
    assert next(run) == (0, 0)
    run.close()  # the caller stops after the first batch (a cancel)
    assert len(started) <= 3
    assert torch.get_num_threads() == saved


def test_an_error_in_a_batch_reaches_the_caller():
    def score(start):
        if start == 3:
            raise ValueError("batch 3 is broken")
        return start

    got = []
    try:
        for start, value in in_order(score, range(10), threads=2):
            got.append(value)
    except ValueError as exc:
        assert "batch 3" in str(exc)
    else:
        raise AssertionError("the error was swallowed")
    assert got == [0, 1, 2]


def test_scores_are_the_same_one_batch_per_thread_or_one_after_another(monkeypatch):
    model = load_model("fluorescence-rbc")
    rng = np.random.default_rng(0)
    crops = rng.uniform(0, 200, (40, model.channels, model.crop_size, model.crop_size)).astype(np.float32)
    masks = np.zeros((40, model.crop_size, model.crop_size), bool)
    masks[:, 16:48, 16:48] = True
    scorer = resolve(model)
    monkeypatch.setattr(anomaly_model, "batch_threads", lambda device: 3)
    threaded = scorer.score(crops, masks, batch_size=7)
    monkeypatch.setattr(anomaly_model, "batch_threads", lambda device: 1)
    sequential = scorer.score(crops, masks, batch_size=7)
    np.testing.assert_allclose(threaded.scores, sequential.scores, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(threaded.maps, sequential.maps, rtol=1e-4, atol=1e-4)


def test_only_the_cpu_scores_batches_side_by_side():
    assert batch_threads(torch.device("cpu")) == max(1, torch.get_num_threads())
    assert batch_threads(torch.device("cuda")) == 1
    assert batch_threads(torch.device("meta")) == 1
