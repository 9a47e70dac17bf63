#!/usr/bin/env bash
# From nothing to a result: installs napari-supn-anomaly with napari into .venv and runs the demo on
# the built-in synthetic sample, which writes its results and one overlay picture per plane.
#
#   bash scripts/demo.sh [OUTPUT_FOLDER]          (default: demo-output)
#
# PyTorch: see SUPN_TORCH in scripts/_setup.sh (CPU-only on Linux unless SUPN_TORCH=default).
. "$(dirname "$0")/_setup.sh"

make_venv
install_torch
install_package "napari,qt"
"$VENV/bin/supn-anomaly" demo --out "${1:-demo-output}"
say "Look at the *_overlay.png pictures in ${1:-demo-output}/; open the same in napari with: $VENV/bin/supn-anomaly demo --gui"
