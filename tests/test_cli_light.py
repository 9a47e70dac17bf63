"""The command line fails in one line, and its help loads no heavy library (speed: benchmarks/cli_startup.py)."""
from __future__ import annotations

import os
import subprocess
import sys

import pytest

from napari_supn_anomaly.cli.display import require_display
from napari_supn_anomaly.errors import InputError

RUN_CLI = "import sys; from napari_supn_anomaly.cli import main; sys.exit(main())"
HEAVY = ("torch", "napari", "qtpy", "scipy", "skimage", "pandas", "matplotlib", "tifffile", "bioio")


def test_building_the_parser_imports_no_heavy_library():
    code = ("import sys; from napari_supn_anomaly.cli import build_parser; build_parser(); "
            f"print(' '.join(m for m in {HEAVY!r} if m in sys.modules))")
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert loaded == []


def test_demo_gui_without_a_display_is_one_line_and_exit_2(tmp_path):
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM")}
    out = tmp_path / "demo"
    proc = subprocess.run([sys.executable, "-c", RUN_CLI, "demo", "--gui", "--out", str(out)], env=env,
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no display" in lines[0] and "xvfb-run" in lines[0], proc.stderr
    assert not out.exists()  # refused before any detection ran


def test_a_display_that_is_not_running_is_refused():
    with pytest.raises(InputError, match="not running.*xvfb-run"):
        require_display({"DISPLAY": ":98765"}, "linux")
    require_display({}, "darwin")  # macOS and Windows always have one
    require_display({"QT_QPA_PLATFORM": "offscreen"}, "linux")


def test_every_command_prints_its_help(capsys):
    import argparse

    from napari_supn_anomaly.cli import build_parser

    parser = build_parser()
    commands = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction)).choices
    for name, sub in commands.items():
        assert sub.format_help(), name  # a stray % in a help text fails here, as --help would
    assert "1 in 100 healthy cells for a stained-smear model" in " ".join(commands["detect"].format_help().split())


def test_a_usage_error_is_one_line():
    proc = subprocess.run([sys.executable, "-c", RUN_CLI, "detect", "--model", "fluorescence-rbc"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "required" in lines[0] and "supn-anomaly detect --help" in lines[0]


def test_the_package_runs_as_a_module_like_the_command():
    proc = subprocess.run([sys.executable, "-m", "napari_supn_anomaly.cli", "models"],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "giemsa-rbc" in proc.stdout and "fluorescence-rbc" in proc.stdout


@pytest.mark.parametrize("package", ["supn", "cells", "scoring"])
def test_every_name_a_package_exports_on_first_use_exists(package):
    import importlib

    module = importlib.import_module(f"napari_supn_anomaly.{package}")
    missing = [name for name in module.__all__ if not hasattr(module, name)]
    assert not missing, f"napari_supn_anomaly.{package} lists names its submodules do not define: {missing}"
