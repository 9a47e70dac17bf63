# Shared by scripts/demo.sh and scripts/test.sh (sourced, not run): a virtual environment in .venv
# with PyTorch and this package. Works from a fresh clone on Debian/Ubuntu with only python3.
#
# SUPN_TORCH chooses PyTorch:
#   cpu      (the default on Linux) the CPU-only build, about 0.2 GB to download instead of the
#            ~3.5 GB of NVIDIA libraries that PyPI's Linux build brings
#   default  (the default on macOS and Windows) what plain pip gives: on Linux x86_64 a CUDA build
#            (NVIDIA GPUs), on macOS a build that uses the Apple GPU (MPS), on Windows a CPU build
#   anything else is handed to pip as it is, e.g. SUPN_TORCH="torch==2.13.0" or a wheel file
# SUPN_VENV puts the environment elsewhere (default: .venv in the repository).
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${SUPN_VENV:-$REPO/.venv}"
PY="$VENV/bin/python"
TORCH_RANGE="torch>=2.1,<2.15"   # as in pyproject.toml
CPU_INDEX="https://download.pytorch.org/whl/cpu"

say() { printf '%s\n' "$*" >&2; }

# apt-get as root, or through sudo when it needs no password prompt
apt_prefix() {
    if [ "$(id -u)" = 0 ]; then echo ""; elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then echo "sudo"
    else return 1; fi
}

apt_install() {
    local prefix
    if ! command -v apt-get >/dev/null || ! prefix="$(apt_prefix)"; then
        say "Please install these system packages (as root), then run this again: $*"
        exit 1
    fi
    say "Installing system packages: $*"
    export DEBIAN_FRONTEND=noninteractive
    $prefix apt-get update -qq
    $prefix apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

make_venv() {
    [ -x "$PY" ] && return
    command -v python3 >/dev/null || { say "python3 is needed (Debian/Ubuntu: apt-get install python3)"; exit 1; }
    if ! python3 -m venv "$VENV" 2>/dev/null; then
        rm -rf "$VENV"
        apt_install python3-venv   # stock Debian/Ubuntu python3 comes without venv
        python3 -m venv "$VENV"
    fi
    "$PY" -m pip install -q --upgrade pip
}

pip_install() { "$PY" -m pip install -q "$@"; }

# The newest CPU-only build in the range that pip can reach: from PyTorch's CPU index, else one the
# configured indexes offer (a +cpu version); prints the requirement, or nothing.
cpu_torch() {
    local tmp
    tmp="$(mktemp -d)"
    if "$PY" -m pip download -q --no-deps --retries 1 --timeout 20 -d "$tmp" --index-url "$CPU_INDEX" \
            "$TORCH_RANGE" 2>/dev/null && ls "$tmp"/torch-*+cpu-*.whl >/dev/null 2>&1; then
        ls "$tmp"/torch-*+cpu-*.whl
        return
    fi
    rm -rf "$tmp"
    "$PY" -m pip index versions torch 2>/dev/null | "$PY" -c '
import re, sys
from pip._vendor.packaging.specifiers import SpecifierSet
found = re.search(r"Available versions: (.*)", sys.stdin.read())
wanted = SpecifierSet(sys.argv[1].removeprefix("torch"))
cpu = [v for v in (found.group(1).split(", ") if found else []) if v.endswith("+cpu") and wanted.contains(v)]
print(f"torch=={cpu[0]}" if cpu else "")' "$TORCH_RANGE"
}

install_torch() {
    if "$PY" -c "import torch" 2>/dev/null; then return; fi
    local choice="${SUPN_TORCH:-}" wanted
    if [ -z "$choice" ]; then
        if [ "$(uname -s)" = Linux ]; then choice=cpu; else choice=default; fi
    fi
    case "$choice" in
        default) say "Installing PyTorch as pip chooses it ($TORCH_RANGE)"; pip_install "$TORCH_RANGE" ;;
        cpu)
            wanted="$(cpu_torch)"
            if [ -n "$wanted" ]; then
                say "Installing the CPU-only PyTorch: $(basename "$wanted")"
                pip_install "$wanted"
                [ ! -f "$wanted" ] || rm -rf "$(dirname "$wanted")"
            else
                say "No CPU-only PyTorch build is reachable here; installing pip's default (on Linux a CUDA build, about 4 GB more)"
                pip_install "$TORCH_RANGE"
            fi ;;
        *) say "Installing PyTorch: $choice"; pip_install "$choice" ;;
    esac
}

# install_package EXTRAS: this package, editable, with the given extras (e.g. "napari,qt" or "testing")
install_package() {
    say "Installing napari-supn-anomaly[$1]"
    pip_install -e "$REPO[$1]"
}
