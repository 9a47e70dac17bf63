"""Scoring on several CPU cores: one batch per thread, each thread's torch operations on one core.

torch's own (intra-op) threads split every operation across the cores and meet after each one.
The crops scored here are small, so the meeting costs about as much as the split gains, and it
collapses when another program takes a core: on this project's 2-core machine, with other jobs
running, 400-600 crops per second against 1,300-1,650 with one batch per thread
(docs/benchmarks/scorer_speed.md). Batches are independent of each other, so scoring one per core
scales instead. On a GPU batches stay one after another.
"""
from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import torch

T = TypeVar("T")


def batch_threads(device: torch.device) -> int:
    """How many batches to score at once: as many as torch may use CPU threads, on the CPU; 1 elsewhere."""
    import torch

    return max(1, torch.get_num_threads()) if device.type == "cpu" else 1


@contextmanager
def one_core_per_operation() -> Iterator[None]:
    import torch

    saved = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(saved)


def in_order(score: Callable[[int], T], starts: Iterable[int], threads: int) -> Iterator[tuple[int, T]]:
    """(start, score(start)) for every start, in order, scoring up to ``threads`` batches at once.

    At most ``threads`` batches are in flight, so a caller that stops after any batch (closing
    this generator) waits for those only: a cancel still takes effect within about one batch.
    """
    starts = list(starts)
    if threads <= 1 or len(starts) <= 1:  # one batch: torch's own threads share it out
        for start in starts:
            yield start, score(start)
        return
    todo = iter(starts)
    with one_core_per_operation(), ThreadPoolExecutor(threads, thread_name_prefix="supn-batch") as pool:
        pending = deque((start, pool.submit(score, start)) for _, start in zip(range(threads), todo))
        try:
            while pending:
                start, future = pending.popleft()
                result = future.result()
                following = next(todo, None)
                if following is not None:
                    pending.append((following, pool.submit(score, following)))
                yield start, result
        finally:
            for _, future in pending:
                future.cancel()
