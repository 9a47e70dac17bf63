"""Saving the whole napari window (dock widgets included) as a PNG, once Qt has drawn it."""
from __future__ import annotations

import time
from pathlib import Path


def save_window(viewer, app, out: Path) -> None:
    for _ in range(10):
        app.processEvents()
        time.sleep(0.05)
    out.parent.mkdir(parents=True, exist_ok=True)
    viewer.window._qt_window.grab().save(str(out))
    print(f"wrote {out}")
