"""Where tasks run: in this process, one after another, or on a Dask cluster (local or remote).

Both runners offer the same three calls - ``submit``, ``as_completed``, ``cancel`` - so a run is
written once; the iterator ``as_completed`` returns takes more futures with ``add`` while it runs.
Dask retries a task whose worker died (``distributed.scheduler.allowed-failures``).
"""
from __future__ import annotations

import logging
from collections import deque
from pathlib import Path

from ..errors import InputError


class _Done:
    """A task of :class:`InProcessRunner`: run when its result is first asked for."""

    def __init__(self, fn, args):
        self._fn, self._args = fn, args
        self._value = self._error = None
        self.ran = False

    def run(self):
        if not self.ran:
            self.ran = True
            try:
                self._value = self._fn(*self._args)
            except Exception as exc:  # noqa: BLE001 - handed to whoever reads the result, as Dask does
                self._error = exc

    def result(self):
        self.run()
        if self._error is not None:
            raise self._error
        return self._value


class _InOrder:
    """The futures of :class:`InProcessRunner`, each run as it is reached; ``add`` queues one more."""

    def __init__(self, futures):
        self._queue = deque(futures)

    def add(self, future) -> None:
        self._queue.append(future)

    def __iter__(self):
        return self

    def __next__(self):
        if not self._queue:
            raise StopIteration
        future = self._queue.popleft()
        future.run()
        return future


class InProcessRunner:
    """Runs every task in this process, in the order submitted (no cluster, no extra memory)."""

    workers = 1
    where = "this process"

    def submit(self, fn, *args):
        return _Done(fn, args)

    def as_completed(self, futures):
        return _InOrder(futures)

    def cancel(self, futures) -> None:
        pass

    def close(self) -> None:
        pass


class DaskRunner:
    """Tasks on a ``distributed`` cluster: ``workers`` local processes, or an existing scheduler."""

    def __init__(self, workers: int | None = None, scheduler: str | None = None):
        from distributed import Client, LocalCluster

        self.cluster = None
        try:
            if scheduler:
                if Path(scheduler).is_file():
                    self.client = Client(scheduler_file=scheduler, timeout="20s")
                else:
                    self.client = Client(scheduler, timeout="20s")
                self.where = f"the cluster at {self.client.scheduler.address}"
            else:
                self.cluster = LocalCluster(n_workers=int(workers), threads_per_worker=1, processes=True,
                                            dashboard_address=None, silence_logs=logging.ERROR)
                self.client = Client(self.cluster)
                self.where = f"{workers} local worker process(es)"
        except (OSError, TimeoutError) as exc:
            self.close()
            raise InputError(f"cannot reach the Dask scheduler {scheduler!r} ({exc})") from None
        self.workers = max(1, len(self.client.scheduler_info(n_workers=-1).get("workers", {})) if scheduler
                           else int(workers))

    def submit(self, fn, *args):
        return self.client.submit(fn, *args, pure=False)

    def as_completed(self, futures):
        from distributed import as_completed

        return as_completed(futures)

    def cancel(self, futures) -> None:
        if futures:
            self.client.cancel(list(futures), force=True)

    def close(self) -> None:
        client = getattr(self, "client", None)
        if client is not None:
            client.close()
        if self.cluster is not None:
            self.cluster.close()
