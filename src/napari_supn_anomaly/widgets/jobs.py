"""Starting a long job in a napari thread worker, the same way in every widget."""
from __future__ import annotations

from typing import Callable


def start_job(job: Callable, description: str, *, run_button, cancel_button, progress_bar, status,
              on_progress: Callable, on_returned: Callable, on_error: Callable, on_finished: Callable,
              on_aborted: Callable | None = None):
    """Run the generator function ``job`` in a worker with a progress entry in napari's activity dock.

    Errors go to ``on_error`` only (never re-raised in the GUI thread); the Run button is disabled
    and Cancel enabled until ``on_finished`` puts them back. Returns the started worker.
    """
    from napari.qt.threading import thread_worker

    worker = thread_worker(job, start_thread=False, ignore_errors=True, progress={"desc": description})()
    worker.yielded.connect(on_progress)
    worker.returned.connect(on_returned)
    worker.errored.connect(on_error)
    if on_aborted is not None:
        worker.aborted.connect(on_aborted)
    worker.finished.connect(on_finished)
    run_button.enabled = False
    cancel_button.enabled = True
    progress_bar.value = 0
    status.value = "starting…"
    worker.start()
    return worker
