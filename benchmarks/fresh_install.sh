#!/usr/bin/env bash
# The README's two commands in a fresh copy of the repository: how long each takes and how big the
# environment gets, for one choice of PyTorch. Results go into docs/benchmarks.md.
#
#   bash benchmarks/fresh_install.sh cpu|default [WORK_FOLDER]
#
# The copy holds what a clone of the working tree would (tracked and new files, nothing ignored);
# pip's cache is off, so every package is fetched as on a fresh machine.
set -euo pipefail
choice="${1:?cpu or default}"
work="${2:-$(mktemp -d /tmp/supn-fresh-XXXX)}"
repo="$(cd "$(dirname "$0")/.." && pwd)"

mkdir -p "$work/repo"
(cd "$repo" && git ls-files -co --exclude-standard -z | tar --null -T - -cf - | tar -xf - -C "$work/repo")
cd "$work/repo"
export PIP_NO_CACHE_DIR=1 SUPN_TORCH="$choice"

timed() {  # timed NAME COMMAND...: runs it, keeps its output in $work/NAME.log, prints the seconds
    local start=$SECONDS
    "${@:2}" >"$work/$1.log" 2>&1 || { echo "$1 failed; see $work/$1.log" >&2; tail -5 "$work/$1.log" >&2; exit 1; }
    echo "$1: $((SECONDS - start)) s"
}

echo "date: $(date -u +%F), machine: $(uname -m), $(nproc) CPUs, python3 $(python3 -c 'import platform; print(platform.python_version())'), SUPN_TORCH=$choice"
timed demo bash scripts/demo.sh
echo "environment after the demo: $(du -sh .venv | cut -f1)"
timed tests bash scripts/test.sh
echo "environment after the tests: $(du -sh .venv | cut -f1), of which NVIDIA and triton packages: $(du -shc .venv/lib/python3*/site-packages/nvidia .venv/lib/python3*/site-packages/triton 2>/dev/null | tail -1 | cut -f1)"
.venv/bin/python -c 'import torch; print("torch", torch.__version__, "CUDA", torch.version.cuda)'
grep -E "true parasites|passed|failed" "$work/demo.log" "$work/tests.log" | sed "s|$work/||"
