"""Whether a window can open here. ``demo --gui`` asks before it spends time on detection, so that
a missing display is one line and exit code 2, not Qt aborting the process (exit 134)."""
from __future__ import annotations

import ctypes
import importlib.util
import os
import sys
from pathlib import Path

from ..errors import InputError

HOW_TO_GET_ONE = ("run it in a desktop session, or give it a virtual display: xvfb-run -a supn-anomaly demo --gui "
                  "(Debian/Ubuntu: sudo apt-get install xvfb)")
QT_BINDINGS = ("PyQt6", "PySide6", "PyQt5", "PySide2")


def require_napari() -> None:
    if importlib.util.find_spec("napari") is None or not any(importlib.util.find_spec(q) for q in QT_BINDINGS):
        raise InputError("--gui needs napari and Qt: pip install 'napari-supn-anomaly[napari,qt]'")


def require_display(environ=os.environ, platform: str = sys.platform) -> None:
    """InputError, with how to get a display, when Qt could not open a window here."""
    if platform in ("darwin", "win32") or environ.get("QT_QPA_PLATFORM") or environ.get("WAYLAND_DISPLAY"):
        return
    display = environ.get("DISPLAY", "")
    if not display:
        raise InputError(f"--gui opens a window, but there is no display (DISPLAY is not set): {HOW_TO_GET_ONE}")
    if display.startswith(":"):
        number = display[1:].split(".")[0]
        if not Path("/tmp/.X11-unix", f"X{number}").exists():
            raise InputError(f"--gui opens a window, but the display {display} is not running: {HOW_TO_GET_ONE}")
    if not any(importlib.util.find_spec(q) for q in ("PyQt6", "PySide6")):
        return
    try:
        ctypes.CDLL("libxcb-cursor.so.0")  # Qt 6 aborts on X11 without it
    except OSError:
        raise InputError("--gui: Qt needs the system library libxcb-cursor0 to open a window on X11: "
                         "sudo apt-get install libxcb-cursor0 (scripts/test.sh installs it)") from None
