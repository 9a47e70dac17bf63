#!/usr/bin/env bash
# Installs what the tests need and runs them: the system packages for a virtual display and Qt
# (Debian/Ubuntu, as root or with sudo), the test requirements in .venv, then pytest under xvfb-run.
# .ci/run calls this same script.
#
#   bash scripts/test.sh [PYTEST ARGUMENTS]
#
# PyTorch: see SUPN_TORCH in scripts/_setup.sh (CPU-only on Linux unless SUPN_TORCH=default).
. "$(dirname "$0")/_setup.sh"

# xvfb-run and the libraries Qt 6 needs to open a window on it
SYSTEM_PACKAGES=(xvfb xauth libgl1-mesa-dri libegl1 libxkbcommon-x11-0 libxcb-cursor0 libxcb-icccm4
                 libxcb-keysyms1 libxcb-shape0 libxcb-xinerama0 libxcb-randr0 libxcb-render-util0 libxcb-image0
                 libdbus-1-3 libfontconfig1)
if command -v dpkg-query >/dev/null; then
    missing=()
    for package in "${SYSTEM_PACKAGES[@]}"; do
        dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
    done
    [ ${#missing[@]} -eq 0 ] || apt_install "${missing[@]}"
elif ! command -v xvfb-run >/dev/null; then
    say "The tests need xvfb-run (Xvfb) and Qt's X11 libraries; install them with your system's package manager"
    exit 1
fi

make_venv
install_torch
install_package "testing"
"$PY" -c 'import torch; print(f"torch {torch.__version__}", "(CPU-only build)" if torch.version.cuda is None else f"(CUDA {torch.version.cuda} build)")' >&2
xvfb-run -a "$PY" -m pytest -q "$@"
